/**
 * regex-safety - can a config regex backtrack catastrophically?
 *
 * JavaScript's regex engine backtracks: `(a+)+$` takes exponential time on
 * "aaaa…!", and `=.*=.*=.*;` a minute on 1 KiB of "=". The values tested
 * against config regexes come from the internet, so every regex is checked
 * when the config is loaded, in two ways, both static (the answer depends on
 * the regex alone, never on the machine's speed):
 *
 * 1. scslre (the analysis behind eslint-plugin-regexp's
 *    no-super-linear-backtracking) finds quantifiers that can trade
 *    characters with each other or with themselves: nested quantifiers such
 *    as (a+)+ or (\w+\s?)*, and chains such as .*=.*=.*. It also offers an
 *    equivalent rewrite for simple cases, which the message shows.
 * 2. scslre does not look at alternation, so an unbounded loop whose body can
 *    match the same text in two ways, (a|a)*, (\w|\d)+, (a|aa)+, is found
 *    here with refa's automata: an alternative of the loop body must not
 *    share a string with the other alternatives, nor with two or more
 *    iterations of the body; and no alternation inside a loop may have two
 *    alternatives that share a string.
 *
 * Refused: any exponential backtracking, and polynomial backtracking between
 * more than MAX_TRADING_QUANTIFIERS quantifiers (`=.*=.*=.*;`). Accepted: a
 * single pair such as `^(.*),(.*)$` or `a.*b.*c`, whose cost on the at most
 * MAX_TESTED_LENGTH (1024) characters a regex sees stays in the tens of
 * milliseconds at worst.
 *
 * LIMITATIONS: (2) compares two iterations with one; a body that splits two
 * ways only across three or more, such as (a|ab|ba)*, is not found, and
 * look-around assertions are treated as always true. The input bound limits
 * what such a regex can cost.
 */

import { createRequire } from 'node:module';
import type { Report } from 'scslre';
import type { JS, NFA } from 'refa';

/**
 * The checkers are loaded on the first regex checked, not at start: refa and
 * scslre hold about 24 MiB, which a config without regular expressions (and
 * every rule evaluation) never needs. Both ship CommonJS, so a synchronous
 * require keeps config loading synchronous.
 */
const requireLazily = createRequire(import.meta.url);
let refaModule: typeof import('refa') | undefined;
let scslreModule: typeof import('scslre') | undefined;
const refa = (): typeof import('refa') => (refaModule ??= requireLazily('refa') as typeof import('refa'));
const analyse: (typeof import('scslre'))['analyse'] = (...args) => (scslreModule ??= requireLazily('scslre') as typeof import('scslre')).analyse(...args);
const isDisjointWith: (typeof import('refa'))['isDisjointWith'] = (...args) => refa().isDisjointWith(...args);

/** More quantifiers than this backtracking against each other is refused (a pair is accepted). */
export const MAX_TRADING_QUANTIFIERS = 2;

/** Automaton size limit for the alternation check; a regex needing more is too complex to accept. */
const MAX_NODES = 20_000;

/** The regexpp AST nodes the alternation check walks (a structural subset). */
interface AstNode {
  readonly type: string;
  readonly raw: string;
  readonly alternatives?: readonly AstNode[];
  readonly elements?: readonly AstNode[];
  readonly element?: AstNode;
  readonly max?: number;
}

function children(node: AstNode): readonly AstNode[] {
  return [...(node.alternatives ?? []), ...(node.elements ?? []), ...(node.element === undefined ? [] : [node.element])];
}

/** A regex literal for a message: `/source/flags`. */
function shown(source: string, flags: string): string {
  return `/${source}/${flags}`;
}

/** The language of one alternative (without the empty word: an empty iteration ends a JavaScript loop). */
function alternativeNfa(parser: JS.Parser, alternative: AstNode): NFA {
  const { expression, maxCharacter } = parser.parseElement(alternative as unknown as Parameters<JS.Parser['parseElement']>[0], {
    assertions: 'ignore',
    backreferences: 'disable',
    maxNodes: MAX_NODES,
  });
  const nfa = refa().NFA.fromRegex(expression, { maxCharacter }, { assertions: 'ignore' });
  nfa.withoutEmptyWord();
  return nfa;
}

function unionOf(nfas: readonly NFA[], maxCharacter: number): NFA {
  const out = refa().NFA.empty({ maxCharacter });
  for (const n of nfas) out.union(n);
  return out;
}

/** Why this unbounded loop's body can match the same text in two ways, or undefined. */
function ambiguousLoop(parser: JS.Parser, body: AstNode, maxCharacter: number): string | undefined {
  const alternatives = body.alternatives ?? [];
  if (alternatives.length === 0) return undefined;
  const nfas = alternatives.map((a) => alternativeNfa(parser, a));
  const twoOrMore = unionOf(nfas, maxCharacter);
  twoOrMore.quantify(2, Number.POSITIVE_INFINITY);
  for (let i = 0; i < nfas.length; i++) {
    const rest = twoOrMore.copy();
    for (let j = 0; j < nfas.length; j++) if (j !== i) rest.union(nfas[j] as NFA);
    if (!isDisjointWith(nfas[i] as NFA, rest, MAX_NODES)) {
      return `the repeated ${body.raw} can match the same text in more than one way (through "${alternatives[i]?.raw ?? ''}")`;
    }
  }
  return undefined;
}

/** Why an alternation inside a loop has two alternatives sharing a string, or undefined. */
function overlappingAlternatives(parser: JS.Parser, group: AstNode): string | undefined {
  const alternatives = group.alternatives ?? [];
  if (alternatives.length < 2) return undefined;
  const nfas = alternatives.map((a) => alternativeNfa(parser, a));
  for (let i = 0; i < nfas.length; i++) {
    for (let j = i + 1; j < nfas.length; j++) {
      if (!isDisjointWith(nfas[i] as NFA, nfas[j] as NFA, MAX_NODES)) {
        return `inside a repetition, "${alternatives[i]?.raw ?? ''}" and "${alternatives[j]?.raw ?? ''}" can match the same text`;
      }
    }
  }
  return undefined;
}

/** The first ambiguous loop or alternation under an unbounded quantifier, walking the whole pattern. */
function ambiguity(parser: JS.Parser, node: AstNode, inLoop: boolean, maxCharacter: number): string | undefined {
  const isGroup = node.type === 'Group' || node.type === 'CapturingGroup';
  if (isGroup && inLoop) {
    const overlap = overlappingAlternatives(parser, node);
    if (overlap !== undefined) return overlap;
  }
  const loops = node.type === 'Quantifier' && node.max === Number.POSITIVE_INFINITY;
  if (loops && node.element !== undefined && (node.element.type === 'Group' || node.element.type === 'CapturingGroup')) {
    const ambiguous = ambiguousLoop(parser, node.element, maxCharacter);
    if (ambiguous !== undefined) return ambiguous;
  }
  for (const child of children(node)) {
    const found = ambiguity(parser, child, inLoop || loops, maxCharacter);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The quantifiers a backtracking report involves. */
function quantifiersOf(r: Report): readonly unknown[] {
  if (r.type === 'Trade') return [r.startQuant, r.endQuant];
  if (r.type === 'Self') return [r.quant, r.parentQuant];
  return [];
}

/** ", e.g. /fixed/" when scslre knows an equivalent regex without the problem. */
function fixHint(r: Report): string {
  const fixed = r.fix();
  return fixed === undefined ? '' : `; an equivalent regex without it: /${fixed.source}/${fixed.flags}`;
}

/**
 * Why the regex `source` (already known to compile with `flags`) may
 * backtrack catastrophically, or undefined when it is accepted.
 */
export function regexBacktrackingProblem(source: string, flags: string): string | undefined {
  try {
    const backtracking = analyse({ source, flags }, { maxReports: 20, reportTypes: { Move: false } }).reports;
    const exponential = backtracking.find((r) => r.exponential);
    if (exponential !== undefined) {
      return `can backtrack catastrophically: exponential time on a long run of ${JSON.stringify(exponential.character.pick)}; avoid nested repetition such as (a+)+${fixHint(exponential)}`;
    }
    const parser = refa().JS.Parser.fromLiteral({ source, flags });
    const ambiguous = ambiguity(parser, parser.ast.pattern as unknown as AstNode, false, parser.maxCharacter);
    if (ambiguous !== undefined) return `can backtrack catastrophically: exponential time, ${ambiguous}`;
    const trading = new Set(backtracking.flatMap(quantifiersOf));
    if (trading.size > MAX_TRADING_QUANTIFIERS) {
      const pick = backtracking[0] === undefined ? '' : ` on a long run of ${JSON.stringify(backtracking[0].character.pick)}`;
      return `can backtrack catastrophically: ${trading.size} quantifiers backtrack against each other (time grows with the length to the power ${trading.size} or more${pick}); at most ${MAX_TRADING_QUANTIFIERS} may: make the parts between them exclusive, e.g. [^=]* instead of .*`;
    }
    return undefined;
  } catch (error) {
    return `is too complex to check for catastrophic backtracking (${error instanceof Error ? error.message : String(error)}): simplify ${shown(source, flags)}`;
  }
}
