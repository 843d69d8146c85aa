/**
 * config-load - levee.yaml text to a checked `LeveeConfig`, or a list of
 * issues each pointing at `file:line:col`.
 *
 * YAML syntax errors and duplicate keys come from the yaml parser with their
 * own positions; schema issues are mapped back to the YAML node their path
 * names (for an unknown key: the key itself; for a missing key: the nearest
 * enclosing node that exists). Issues are sorted by position.
 *
 * Pure: the caller reads the file and passes its text and name.
 */

import { configWarnings } from './config-warnings.js';
import { isMap, isNode, isPair, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { configSchema, type LeveeConfig } from './config-schema.js';

export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Dotted path such as `rules.2.limit.window`; "" for YAML syntax errors. */
  readonly path: string;
  readonly message: string;
}

export type ConfigLoadResult =
  /** `warnings`: valid but probably wrong (see config-warnings.ts), with positions. */
  | { readonly ok: true; readonly config: LeveeConfig; readonly warnings: readonly ConfigIssue[] }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

/** `file:line:col: path: message` (path omitted when empty). */
export function formatConfigIssue(i: ConfigIssue): string {
  return i.path === '' ? `${i.file}:${i.line}:${i.col}: ${i.message}` : `${i.file}:${i.line}:${i.col}: ${i.path}: ${i.message}`;
}

type PathKey = string | number;

/** Distance for "did you mean": small strings only, so the quadratic cost is nothing. */
function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

function suggestion(key: string, known: readonly string[]): string {
  // A known key that the typo extends or abbreviates (`sender_address`, `buck`) is the likeliest meaning.
  const affix = known
    .filter((k) => Math.min(k.length, key.length) >= 3 && (key.startsWith(k) || k.startsWith(key)))
    .sort((a, b) => b.length - a.length)[0];
  if (affix !== undefined) return ` (did you mean "${affix}"?)`;
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(key, k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean "${best}"?)` : '';
}

/** Position of the YAML node at `path`, or of its nearest existing ancestor (`depth` = path elements found). */
function nodeOffset(doc: Document, path: readonly PathKey[]): { offset: number; depth: number; node: unknown } {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return { offset: node.range[0], depth: n, node };
  }
  return { offset: 0, depth: 0, node: undefined };
}

/** Position of the key `key` inside the map at `path`. */
function keyOffset(doc: Document, path: readonly PathKey[], key: string): number | undefined {
  const map = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (!isMap(map)) return undefined;
  for (const pair of map.items) {
    if (isPair(pair) && isScalar(pair.key) && pair.key.value === key && pair.key.range) return pair.key.range[0];
  }
  return undefined;
}

/** Keys the schema object at `path` accepts, for suggestions. */
function knownKeysAt(path: readonly PathKey[]): readonly string[] {
  let s: unknown = configSchema;
  for (const p of [...path, '']) {
    // Unwrap pipes, defaults, optionals and preprocessors down to the object or array.
    for (let guard = 0; guard < 10; guard++) {
      const def = (s as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
      if (def === undefined) return [];
      if (def.type === 'pipe') {
        // z.preprocess is pipe(transform, schema): the schema is the output side.
        const inner = (def.in as { _zod?: { def?: { type?: string } } })._zod?.def;
        s = inner?.type === 'transform' ? def.out : def.in;
      }
      else if (def.type === 'default' || def.type === 'prefault' || def.type === 'optional') s = def.innerType;
      else break;
    }
    if (p === '') break;
    const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (def.type === 'object') s = (def.shape as Record<string, unknown>)[String(p)];
    else if (def.type === 'array') s = def.element;
    else return [];
  }
  const def = (s as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
  return def?.type === 'object' ? Object.keys(def.shape as Record<string, unknown>) : [];
}

function firstLine(message: string): string {
  const line = message.split('\n', 1)[0] ?? message;
  // The yaml package appends " at line L, column C:" with prettyErrors; we print our own position.
  return line.replace(/ at line \d+, column \d+:?$/, '');
}

function zodIssues(doc: Document, lc: LineCounter, file: string, issues: z.ZodError['issues']): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const at = (offset: number, path: readonly PathKey[], message: string): void => {
    const { line, col } = lc.linePos(offset);
    out.push({ file, line, col, path: path.join('.'), message });
  };
  for (const issue of issues) {
    const path = issue.path.filter((p): p is PathKey => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(path);
      for (const key of issue.keys) {
        at(keyOffset(doc, path, key) ?? nodeOffset(doc, path).offset, [...path, key], `unknown key "${key}"${suggestion(key, known)}`);
      }
      continue;
    }
    const where = nodeOffset(doc, path);
    let offset = where.offset;
    let message = issue.message;
    let shownPath = path;
    if (where.depth < path.length) {
      if (isMap(where.node) && where.depth === path.length - 1) {
        message = `missing required key "${String(path[path.length - 1])}"`;
      } else {
        // A single value written where a list is accepted: the schema's path has an index the YAML lacks.
        shownPath = path.slice(0, where.depth);
      }
    } else if (issue.code === 'custom' && typeof issue.params?.offset === 'number' && isScalar(where.node)) {
      // Point inside the string; quoted scalars start one character earlier than their text.
      const quoted = where.node.type === 'QUOTE_DOUBLE' || where.node.type === 'QUOTE_SINGLE';
      if (where.node.type !== 'BLOCK_LITERAL' && where.node.type !== 'BLOCK_FOLDED') offset += issue.params.offset + (quoted ? 1 : 0);
    }
    at(offset, shownPath, message);
  }
  return out;
}

/** Parse and check levee.yaml text. `file` is only used in issues. */
export function loadConfig(text: string, file: string): ConfigLoadResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e): ConfigIssue => {
      const pos = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      return { file, line: pos.line, col: pos.col, path: '', message: firstLine(e.message) };
    });
    return { ok: false, issues };
  }
  // An empty file means "all defaults", like an empty mapping.
  const input: unknown = doc.contents === null ? {} : doc.toJS({ maxAliasCount: 100 });
  const parsed = configSchema.safeParse(input);
  if (parsed.success) {
    const warnings = configWarnings(parsed.data).map((w): ConfigIssue => {
      const node = doc.getIn(w.path, true);
      const pos = lc.linePos(isNode(node) && node.range !== undefined && node.range !== null ? node.range[0] : 0);
      return { file, line: pos.line, col: pos.col, path: w.path.join('.'), message: `warning: ${w.message}` };
    });
    return { ok: true, config: parsed.data, warnings };
  }
  const issues = zodIssues(doc, lc, file, parsed.error.issues);
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: false, issues };
}
