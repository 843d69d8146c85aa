/**
 * config-reference - docs/configuration-reference.md, generated from the zod
 * schema so the reference cannot drift from what the loader accepts.
 *
 * The schema is turned into JSON Schema by zod (`z.toJSONSchema`, input side:
 * what a levee.yaml may contain, defaults included); descriptions and the
 * value types JSON Schema cannot express (durations, sizes, listen
 * addresses, patterns) come from `.meta()` in config-schema.ts, under the
 * keys of `OptionMeta`. Every option becomes one row: path, type, default,
 * allowed values, description. Schemas with an `id` (the rule conditions)
 * are documented once, in their own section, and referred to by link.
 *
 * Pure: schema in, Markdown out. `pnpm docs:config` writes the file; a test
 * fails when the committed file differs from what this module generates.
 */

import { z } from 'zod';
import { configSchema } from './config-schema.js';

/** The `.meta()` keys config-schema.ts uses besides `description`. */
// A type, not an interface: zod's .meta() wants an index signature, which only type aliases satisfy.
export type OptionMeta = {
  readonly description?: string;
  /** What the value looks like when JSON Schema cannot say: "duration", "listen address", ... */
  readonly valueType?: string;
  /** A string that may also be given as a list of strings (and always becomes a list). */
  readonly oneOrList?: boolean;
  /** The allowed values or range in words, when the schema's own bounds do not say it (checks in code). */
  readonly allowed?: string;
  /** The effective default when it is filled in after parsing (e.g. "all stages"). */
  readonly defaultText?: string;
  /** Heading of a section documented once (schemas with an `id`). */
  readonly title?: string;
};

/** The parts of a JSON Schema node this module reads. */
export interface JsonNode extends OptionMeta {
  readonly type?: string;
  readonly properties?: Readonly<Record<string, JsonNode>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: JsonNode | boolean;
  readonly items?: JsonNode;
  readonly enum?: readonly unknown[];
  readonly default?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minItems?: number;
  readonly maxLength?: number;
  readonly $ref?: string;
  readonly $defs?: Readonly<Record<string, JsonNode>>;
}

export interface ConfigOption {
  /** Dotted YAML path; `[]` marks "every item of this list": `rules[].limit.key`. */
  readonly path: string;
  readonly type: string;
  readonly required: boolean;
  /** Markdown for the default column: a literal in backticks, words, or "" for none. */
  readonly defaultText: string;
  readonly allowed: string;
  /** "" when the schema has none (the reference test rejects that). */
  readonly description: string;
  /** Has options of its own (documented in the following rows). */
  readonly isSection: boolean;
}

export interface ConfigSection {
  /** The top-level key, or the id of a shared schema (`conditions`). */
  readonly name: string;
  readonly title: string;
  readonly description: string;
  readonly options: readonly ConfigOption[];
}

/** The config schema as JSON Schema, input side (what a file may say), with the `.meta()` documentation merged in. */
export function configJsonSchema(): JsonNode {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonNode;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function refName(ref: string): string {
  return ref.slice(ref.lastIndexOf('/') + 1);
}

function code(text: string): string {
  return text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``;
}

/** A value as it would be written in YAML (flow style, one line). */
function yamlLiteral(value: unknown): string {
  if (typeof value === 'string') return /^[A-Za-z0-9_./:@-]*$/.test(value) && value !== '' ? value : JSON.stringify(value);
  // Inside a flow list, strings are quoted: `inet:127.0.0.1:10031` reads better as one value.
  if (Array.isArray(value)) return `[${value.map((v) => (typeof v === 'string' ? JSON.stringify(v) : yamlLiteral(v))).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    return entries.length === 0 ? '{}' : `{ ${entries.map(([k, v]) => `${k}: ${yamlLiteral(v)}`).join(', ')} }`;
  }
  return String(value);
}

/** An object with options of its own (not a map of free keys, nor a value like `{ min, max }` documented as a whole). */
function isObjectWithProperties(node: JsonNode): boolean {
  return node.type === 'object' && node.properties !== undefined && node.valueType === undefined;
}

/** The value type in words. */
export function typeText(node: JsonNode): string {
  if (node.valueType !== undefined) return node.valueType;
  if (node.$ref !== undefined) return `[${refName(node.$ref)}](#${refName(node.$ref)})`;
  if (node.type === 'array' && node.items !== undefined) {
    const item = typeText(node.items);
    return node.oneOrList === true ? `${item}, or a list of them` : `list of ${item}`;
  }
  if (node.type === 'object') {
    if (isObjectWithProperties(node)) return 'section';
    if (typeof node.additionalProperties === 'object') return `map of name to ${typeText(node.additionalProperties)}`;
    return 'map';
  }
  if (node.enum !== undefined) return 'string';
  if (node.type === 'integer') return 'whole number';
  return node.type ?? 'any';
}

/** Bounds in words: "1 to 1000", "greater than 0", "at most 64 characters". */
function boundsText(node: JsonNode): string[] {
  const low = node.minimum !== undefined ? `${node.minimum}` : node.exclusiveMinimum !== undefined ? `more than ${node.exclusiveMinimum}` : undefined;
  const highValue = node.maximum !== undefined && node.maximum < MAX_SAFE ? node.maximum : undefined;
  const high = highValue !== undefined ? `${highValue}` : node.exclusiveMaximum !== undefined ? `less than ${node.exclusiveMaximum}` : undefined;
  const parts: string[] = [];
  if (node.minimum !== undefined && highValue !== undefined) parts.push(`${low} to ${high}`);
  else {
    if (low !== undefined) parts.push(node.minimum !== undefined ? `at least ${low}` : low);
    if (high !== undefined) parts.push(highValue !== undefined ? `at most ${high}` : high);
  }
  if (node.maxLength !== undefined) parts.push(`at most ${node.maxLength} characters`);
  return parts;
}

/** The allowed values or range in words; "" when anything of the type goes. */
export function allowedText(node: JsonNode): string {
  if (node.allowed !== undefined) return node.allowed;
  if (node.enum !== undefined) return node.enum.map((v) => code(String(v))).join(', ');
  if (node.type === 'array' && node.items !== undefined) {
    const item = allowedText(node.items);
    const parts = item === '' ? [] : [item];
    if ((node.minItems ?? 0) > 0) parts.push('not empty');
    return parts.join('; ');
  }
  if (node.type === 'object' && typeof node.additionalProperties === 'object') return allowedText(node.additionalProperties);
  return boundsText(node).join(', ');
}

function defaultText(node: JsonNode, required: boolean): string {
  if (node.defaultText !== undefined) return node.defaultText;
  if (node.default !== undefined) {
    // An empty section default is "all of its own defaults", which its rows say.
    if (isObjectWithProperties(node)) return '';
    return code(yamlLiteral(node.default));
  }
  return required ? '**required**' : '';
}

/** Sections may be left out when none of their own options is required (their defaults apply). */
function hasRequiredOption(node: JsonNode): boolean {
  return (node.required ?? []).some((key) => {
    const child = node.properties?.[key];
    return child !== undefined && child.default === undefined && (!isObjectWithProperties(child) || hasRequiredOption(child));
  });
}

/** Every option below `node`, depth first in schema order; `[]` steps into list items. */
export function flattenOptions(node: JsonNode, prefix: string): ConfigOption[] {
  const rows: ConfigOption[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    const listed = node.required?.includes(key) === true;
    const inner = child.type === 'array' && child.items !== undefined && isObjectWithProperties(child.items) ? child.items : undefined;
    const isSection = isObjectWithProperties(child) || inner !== undefined;
    const required = listed && child.default === undefined && (!isObjectWithProperties(child) || hasRequiredOption(child));
    rows.push({
      path,
      type: inner !== undefined ? 'list' : typeText(child),
      required,
      defaultText: defaultText(child, required),
      allowed: allowedText(child),
      description: child.description ?? inner?.description ?? '',
      isSection,
    });
    if (isObjectWithProperties(child)) rows.push(...flattenOptions(child, path));
    if (inner !== undefined) rows.push(...flattenOptions(inner, `${path}[]`));
  }
  return rows;
}

/** The reference's sections: one per top-level key, then one per shared schema ($defs). */
export function configSections(schema: JsonNode): ConfigSection[] {
  const sections: ConfigSection[] = [];
  for (const [name, node] of Object.entries(schema.properties ?? {})) {
    const items = node.type === 'array' ? node.items : undefined;
    sections.push({
      name,
      title: code(name),
      description: node.description ?? '',
      options: items !== undefined && isObjectWithProperties(items) ? flattenOptions(items, `${name}[]`) : flattenOptions(node, name),
    });
  }
  for (const [name, node] of Object.entries(schema.$defs ?? {})) {
    sections.push({ name, title: node.title ?? name, description: node.description ?? '', options: flattenOptions(node, '') });
  }
  return sections;
}

function cell(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

/** The Markdown of docs/configuration-reference.md. */
export function formatConfigReference(sections: readonly ConfigSection[]): string {
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated from packages/rules/src/config-schema.ts by `pnpm docs:config`. Do not edit: change the schema and regenerate. -->',
    '',
    'Every option of `levee.yaml`, generated from the schema the loader checks files against, so it',
    'is complete and current. [configuration.md](configuration.md) explains how rules are evaluated',
    'and how the pieces fit; [deploy/examples/levee.yaml](../deploy/examples/levee.yaml) shows every',
    'option in a commented file; `levee check-config FILE` checks a file against this schema.',
    '',
    'Paths are dotted YAML keys; `rules[]` stands for every item of the `rules` list. An option',
    'left out takes its default; a section left out (or left empty) takes all of its defaults. Any',
    'key not listed here is an error.',
    '',
    'Value types: a **duration** is `500ms`, `60s`, `5m`, `1h`, `1d` or a number of milliseconds;',
    'a **size** is `500MB`, `2GB`, `10k` or a number of bytes; a **listen address** is',
    '`inet:HOST:PORT`, `inet:[IPv6]:PORT` or `unix:/absolute/path`; **patterns** are explained in',
    '[configuration.md](configuration.md#conditions-match-unless).',
    '',
    ...sections.map((s) => `- [${s.title}](#${s.name})`),
    '',
  ];
  for (const section of sections) {
    out.push(`## ${section.title}`, '');
    if (section.description !== '') out.push(section.description, '');
    out.push('| option | type | default | allowed | description |', '|---|---|---|---|---|');
    for (const o of section.options) {
      const path = o.isSection ? `**${code(o.path)}**` : code(o.path);
      out.push(`| ${path} | ${cell(o.type)} | ${cell(o.defaultText)} | ${cell(o.allowed)} | ${cell(o.description)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** configReferenceMarkdown - the whole generated reference, from the schema as compiled. */
export function configReferenceMarkdown(): string {
  return formatConfigReference(configSections(configJsonSchema()));
}
