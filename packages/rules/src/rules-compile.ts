/**
 * rules-compile - a checked config's rules turned into a `Ruleset`: condition
 * checks as closures over precompiled matchers (CIDR range tables, pattern
 * Sets, RegExps built once), parsed key templates, window specs, the complete
 * verdict of each rule and the trail entries that do not depend on the
 * request. Deciding then builds no regex, parses no template and, for rules
 * that do not apply, allocates nothing.
 *
 * Conditions run cheapest first (booleans, numbers, then the CIDR table, then
 * string patterns); since all must hold, the order changes only the speed and
 * which failing condition the trail names.
 *
 * String conditions never match an absent value; sender/recipient patterns
 * never match the null sender `<>` (use `null_sender: true`). `null_sender`
 * holds only once the sender is known (from MAIL on). `authenticated` is
 * true when a SASL user name is present and non-empty. `stress` absent counts
 * as false. Ranges are inclusive and never match an absent size or count.
 *
 * Expects a config that passed `loadConfig`; a template that does not parse
 * is a programming error here and throws.
 */

import { STAGES, type Facts, type Stage } from './facts.js';
import type { Action, Verdict, WouldHaveActed } from './verdict.js';
import type { Conditions, CountMode, NumberRange, RuleConfig, RuleMode, LeveeConfig, StoreErrorAction } from './config-schema.js';
import { compileCidrList } from './ip.js';
import { compilePatterns } from './string-pattern.js';
import { parseKeyTemplate, templateNeeds, type KeyTemplate } from './key-template.js';
import { noNeeds, type RequestView, type ViewNeeds } from './request-view.js';
import { completeReply, defaultReasonText } from './reply.js';
import type { CounterEvidence } from './verdict.js';
import type { WindowSpec } from './sliding-window.js';
import type { ContainPolicy } from './containment.js';

/** What happened to one rule for one request, for `levee explain` and debug logs. */
export type RuleOutcome =
  /** The rule is not active at this request's stage. */
  | 'stage'
  /** A `match` condition did not hold (`condition` names it). */
  | 'no-match'
  /** All `unless` conditions held. */
  | 'exempt'
  /** A key placeholder's fact is absent (`condition` names it), so the limit does not apply. */
  | 'no-key'
  /** The limit counted this request and the total is within max. */
  | 'under-limit'
  /** Warn mode: the rule would have acted; evaluation went on. */
  | 'warned'
  /** This rule decided the verdict. */
  | 'decided'
  /** A `continue` rule with add_header applied: its headers are added and evaluation went on. */
  | 'tagged'
  /** The limit counted this request, but an earlier rule had already decided. */
  | 'counted';

export interface RuleTrace {
  readonly rule: string;
  /** Position of the rule in the config. */
  readonly index: number;
  readonly outcome: RuleOutcome;
  /** One human sentence. */
  readonly detail: string;
  /** `match.sender`, `unless`, `limit.key {sasl_username}`, ... */
  readonly condition?: string;
  readonly action?: Action;
  readonly counter?: CounterEvidence;
}

export type ConditionCheck = (v: RequestView) => boolean;

export interface CompiledCondition {
  /** `match.sender`, `unless.client_address`, ... */
  readonly name: string;
  readonly check: ConditionCheck;
  /** Trail entry when this `match` condition fails (unused for `unless`). */
  readonly failTrace: RuleTrace;
}

export interface CompiledLimit {
  readonly template: KeyTemplate;
  /** `<rule name>|`: two rules never share a counter. */
  readonly keyPrefix: string;
  readonly max: number;
  readonly window: WindowSpec;
  readonly count: CountMode;
  /** While the shared store fails: decide on the local count (fail_open) or tempfail (fail_closed). */
  readonly onStoreError: StoreErrorAction;
  /** limit.count_if: only requests meeting all of these add to the counter (the others read it). */
  readonly countIf: readonly CompiledCondition[];
  /** limit.distinct: count each value of this template once per window instead of every request. */
  readonly distinct?: KeyTemplate;
  /** The rule's `contain`: warn, then hold the key for a while (containment.ts). */
  readonly contain?: ContainPolicy;
}

export interface CompiledRule {
  readonly index: number;
  readonly name: string;
  readonly mode: RuleMode;
  readonly action: Action;
  /** Bit i set when the rule runs at STAGES[i]. */
  readonly stageMask: number;
  readonly match: readonly CompiledCondition[];
  readonly unless: readonly CompiledCondition[];
  readonly limit: CompiledLimit | undefined;
  /** The complete verdict this rule gives (counter evidence is added for limits). */
  readonly verdict: Verdict;
  /** The shadow-mode record of a non-limit warn rule. */
  readonly warning: WouldHaveActed;
  readonly traces: {
    readonly stage: RuleTrace;
    readonly exempt: RuleTrace;
    readonly warned: RuleTrace;
    readonly decided: RuleTrace;
    readonly tagged: RuleTrace;
  };
  readonly config: RuleConfig;
}

export interface Ruleset {
  readonly rules: readonly CompiledRule[];
  /** Whether any limit has `contain` (decideWithStore then reads containment states). */
  readonly hasContain: boolean;
  /**
   * The rules active at each stage, in config order: planCounters walks only
   * these (the rules of other stages appear in a trail only when it is read).
   */
  readonly byStage: Readonly<Record<Stage, readonly CompiledRule[]>>;
  /** The precomputed 'stage' trail entries of each stage's inactive rules (see StageGaps). */
  readonly stageGaps: Readonly<Record<Stage, StageGaps>>;
  /** Which per-request values the rules read. */
  readonly needs: Readonly<ViewNeeds>;
}

/**
 * Where the rules inactive at one stage go in a trail: `before[i]` holds the
 * 'stage' entries of the inactive rules between the previous active rule and
 * active rule i (by rule index), `tail` those after the last active rule.
 */
export interface StageGaps {
  readonly before: readonly (readonly RuleTrace[])[];
  readonly tail: readonly RuleTrace[];
}

const NO_TRACES: readonly RuleTrace[] = Object.freeze([]);

function stageGapsOf(rules: readonly CompiledRule[], bit: number): StageGaps {
  const before: (readonly RuleTrace[])[] = [];
  let gap: RuleTrace[] = [];
  for (const rule of rules) {
    if ((rule.stageMask & bit) === 0) {
      gap.push(rule.traces.stage);
      before.push(NO_TRACES);
    } else {
      before.push(gap.length === 0 ? NO_TRACES : Object.freeze(gap));
      gap = [];
    }
  }
  return { before, tail: gap.length === 0 ? NO_TRACES : Object.freeze(gap) };
}

export const STAGE_BITS: Readonly<Record<Stage, number>> = Object.freeze(
  Object.fromEntries(STAGES.map((s, i) => [s, 1 << i])) as Record<Stage, number>,
);

function inRange(value: number | undefined, r: NumberRange): boolean {
  if (value === undefined) return false;
  return (r.min === undefined || value >= r.min) && (r.max === undefined || value <= r.max);
}

/** Condition checks in evaluation order (cheapest first), recording what the view must hold. */
function compileConditions(c: Conditions, prefix: 'match' | 'unless' | 'limit.count_if', rule: string, index: number, needs: ViewNeeds): CompiledCondition[] {
  const out: CompiledCondition[] = [];
  const add = (key: string, check: ConditionCheck): void => {
    const name = `${prefix}.${key}`;
    out.push({
      name,
      check,
      failTrace: Object.freeze({ rule, index, outcome: 'no-match', detail: `${name} did not hold`, condition: name }),
    });
  };
  if (c.protocol !== undefined) {
    const p = c.protocol;
    add('protocol', (v) => v.facts.protocol === p);
  }
  if (c.stress !== undefined) {
    const want = c.stress;
    add('stress', (v) => (v.facts.stress === true) === want);
  }
  if (c.nullSender !== undefined) {
    const want = c.nullSender;
    add('null_sender', (v) => v.facts.sender !== undefined && (v.facts.sender === '') === want);
  }
  if (c.authenticated !== undefined) {
    const want = c.authenticated;
    add('authenticated', (v) => (v.facts.saslUsername !== undefined && v.facts.saslUsername !== '') === want);
  }
  if (c.size !== undefined) {
    const r = c.size;
    add('size', (v) => inRange(v.facts.size, r));
  }
  if (c.recipientCount !== undefined) {
    const r = c.recipientCount;
    add('recipient_count', (v) => inRange(v.facts.recipientCount, r));
  }
  if (c.clientConcurrency !== undefined) {
    const r = c.clientConcurrency;
    add('client_concurrency', (v) => inRange(v.facts.clientConcurrency, r));
  }
  if (c.batv !== undefined) {
    const wanted = new Set<string>(c.batv);
    add('batv', (v) => v.facts.batv !== undefined && wanted.has(v.facts.batv));
  }
  if (c.tier !== undefined) {
    const wanted = new Set<string>(c.tier);
    add('tier', (v) => wanted.has(v.facts.tier ?? 'normal'));
  }
  if (c.recipientStatus !== undefined) {
    const wanted = new Set<string>(c.recipientStatus);
    add('recipient_status', (v) => v.facts.recipientStatus !== undefined && wanted.has(v.facts.recipientStatus));
  }
  if (c.totalConcurrency !== undefined) {
    const r = c.totalConcurrency;
    add('total_concurrency', (v) => inRange(v.facts.totalConcurrency, r));
  }
  if (c.clientAddress !== undefined) {
    needs.ip = true;
    const m = compileCidrList(c.clientAddress);
    add('client_address', (v) => m(v.ip));
  }
  // The view holds a lowercased value only when the raw one is present and non-empty.
  if (c.clientName !== undefined) {
    needs.clientName = true;
    const m = compilePatterns(c.clientName, 'host');
    add('client_name', (v) => v.clientNameLower !== undefined && m(v.facts.clientName ?? '', v.clientNameLower, v.clientNameLower));
  }
  if (c.heloName !== undefined) {
    needs.heloName = true;
    const m = compilePatterns(c.heloName, 'host');
    add('helo_name', (v) => v.heloLower !== undefined && m(v.facts.heloName ?? '', v.heloLower, v.heloLower));
  }
  if (c.sender !== undefined) {
    needs.sender = true;
    const m = compilePatterns(c.sender, 'address');
    add('sender', (v) => v.senderLower !== undefined && v.senderLower !== '' && m(v.facts.sender ?? '', v.senderLower, v.senderDomain));
  }
  if (c.recipient !== undefined) {
    needs.recipient = true;
    const m = compilePatterns(c.recipient, 'address');
    add(
      'recipient',
      (v) => v.recipientLower !== undefined && v.recipientLower !== '' && m(v.facts.recipient ?? '', v.recipientLower, v.recipientDomain),
    );
  }
  if (c.saslUsername !== undefined) {
    needs.saslUsername = true;
    const m = compilePatterns(c.saslUsername, 'username');
    add('sasl_username', (v) => v.saslLower !== undefined && m(v.facts.saslUsername ?? '', v.saslLower, v.saslDomain));
  }
  // Message conditions last: they walk the headers and attachments.
  for (const [name, patterns] of Object.entries(c.header ?? {})) {
    const wanted = name.toLowerCase();
    const m = compilePatterns(patterns, 'text');
    add(`header.${name}`, (v) => {
      for (const h of v.facts.message?.headers ?? []) if (h.name.toLowerCase() === wanted && m(h.value, h.value.toLowerCase(), undefined)) return true;
      return false;
    });
  }
  if (c.attachmentName !== undefined) {
    const m = compilePatterns(c.attachmentName, 'filename');
    add('attachment_name', (v) => {
      for (const a of v.facts.message?.attachments ?? []) if (a.filename !== undefined && m(a.filename, a.filename.toLowerCase(), undefined)) return true;
      return false;
    });
  }
  if (c.report !== undefined) {
    const m = compilePatterns(c.report, 'text');
    add('report', (v) => v.facts.message?.report !== undefined && m(v.facts.message.report, v.facts.message.report, undefined));
  }
  if (c.returnsHeaders !== undefined) {
    const want = c.returnsHeaders;
    add('returns_headers', (v) => v.facts.message !== undefined && (v.facts.message.returnedReceived !== undefined) === want);
  }
  if (c.returnedReceived !== undefined) {
    const m = compilePatterns(c.returnedReceived, 'text');
    add('returned_received', (v) => {
      for (const line of v.facts.message?.returnedReceived ?? []) if (m(line, line.toLowerCase(), undefined)) return true;
      return false;
    });
  }
  if (c.attachmentType !== undefined) {
    const m = compilePatterns(c.attachmentType, 'text');
    add('attachment_type', (v) => {
      for (const a of v.facts.message?.attachments ?? []) if (m(a.contentType, a.contentType, undefined)) return true;
      return false;
    });
  }
  return out;
}

function compileVerdict(r: RuleConfig): Verdict {
  const isLimit = r.limit !== undefined;
  const headers = {
    ...(r.addHeaders === undefined || r.addHeaders.length === 0 ? {} : { addHeaders: Object.freeze([...r.addHeaders]) }),
    ...(r.delayMs === undefined || r.delayMs === 0 ? {} : { delayMs: r.delayMs }),
  };
  const reply = completeReply(r.action, isLimit, r.code, r.enhancedCode, r.text);
  if (reply !== undefined) {
    return Object.freeze({ action: r.action, code: reply.code, enhancedCode: reply.enhancedCode, text: reply.text, rule: r.name, ...headers });
  }
  const reason = defaultReasonText(r.action, isLimit, r.text);
  return Object.freeze(
    reason !== undefined ? { action: r.action, text: reason, rule: r.name, ...headers } : { action: r.action, rule: r.name, ...headers },
  );
}

/** A non-limit `continue` rule with headers or a delay tags (or tarpits) the request and lets evaluation go on. */
export function isTaggingRule(rule: CompiledRule): boolean {
  return rule.limit === undefined && rule.action === 'continue' && (rule.verdict.addHeaders !== undefined || rule.verdict.delayMs !== undefined);
}

function compileRule(r: RuleConfig, index: number, needs: ViewNeeds): CompiledRule {
  let stageMask = 0;
  for (const s of r.stages) stageMask |= STAGE_BITS[s];
  let limit: CompiledLimit | undefined;
  if (r.limit !== undefined) {
    const parsed = parseKeyTemplate(r.limit.key);
    if (!parsed.ok) throw new Error(`rule ${r.name}: invalid key template: ${parsed.message}`);
    templateNeeds(parsed.template, needs);
    let distinct: KeyTemplate | undefined;
    if (r.limit.distinct !== undefined) {
      const d = parseKeyTemplate(r.limit.distinct);
      if (!d.ok) throw new Error(`rule ${r.name}: invalid distinct template: ${d.message}`);
      templateNeeds(d.template, needs);
      distinct = d.template;
    }
    limit = {
      template: parsed.template,
      keyPrefix: `${r.name}|`,
      max: r.limit.max,
      window: Object.freeze({ windowMs: r.limit.windowMs, buckets: r.limit.buckets }),
      count: r.limit.count,
      onStoreError: r.onStoreError ?? 'fail_open',
      countIf: r.limit.countIf === undefined ? [] : compileConditions(r.limit.countIf, 'limit.count_if', r.name, index, needs),
      ...(distinct === undefined ? {} : { distinct }),
      ...(r.contain === undefined ? {} : { contain: Object.freeze({ ...r.contain, windowMs: r.limit.windowMs }) }),
    };
  }
  const base = { rule: r.name, index };
  const unless = r.unless === undefined ? [] : compileConditions(r.unless, 'unless', r.name, index, needs);
  return {
    index,
    name: r.name,
    mode: r.mode,
    action: r.action,
    stageMask,
    match: r.match === undefined ? [] : compileConditions(r.match, 'match', r.name, index, needs),
    unless,
    limit,
    verdict: compileVerdict(r),
    warning: Object.freeze({ rule: r.name, action: r.action }),
    traces: {
      stage: Object.freeze({ ...base, outcome: 'stage', detail: `not active at this stage (runs at: ${r.stages.join(', ')})` }),
      exempt: Object.freeze({
        ...base,
        outcome: 'exempt',
        detail: `exempt: all of ${unless.map((c) => c.name).join(', ')} held`,
        condition: 'unless',
      }),
      warned: Object.freeze({ ...base, outcome: 'warned', detail: `warn mode: would have answered ${r.action}`, action: r.action }),
      decided: Object.freeze({ ...base, outcome: 'decided', detail: `applied: ${r.action}`, action: r.action }),
      tagged: Object.freeze({ ...base, outcome: 'tagged', detail: `applied: add ${(r.addHeaders ?? []).map((h) => h.name).join(', ')}`, action: r.action }),
    },
    config: r,
  };
}

/** Compile the rules of a checked config. */
export function compileRules(config: Pick<LeveeConfig, 'rules'>): Ruleset {
  const needs = noNeeds();
  const rules = config.rules.map((r, i) => compileRule(r, i, needs));
  const byStage = Object.fromEntries(STAGES.map((s) => [s, rules.filter((r) => (r.stageMask & STAGE_BITS[s]) !== 0)])) as Record<Stage, CompiledRule[]>;
  const stageGaps = Object.fromEntries(STAGES.map((s) => [s, stageGapsOf(rules, STAGE_BITS[s])])) as Record<Stage, StageGaps>;
  return {
    rules,
    byStage: Object.freeze(byStage),
    stageGaps: Object.freeze(stageGaps),
    needs: Object.freeze(needs),
    hasContain: rules.some((r) => r.limit?.contain !== undefined),
  };
}

/** The amount a limit adds for one request. */
export function countAmount(count: CountMode, facts: Facts): number {
  switch (count) {
    case 'requests':
      return 1;
    case 'recipients': {
      // Postfix sends recipient_count=0 at RCPT (it is the total only from DATA on): count at least 1.
      const n = facts.recipientCount;
      return n !== undefined && n > 1 && Number.isFinite(n) ? Math.floor(n) : 1;
    }
    case 'bytes': {
      const s = facts.size;
      return s !== undefined && s > 0 && Number.isFinite(s) ? Math.floor(s) : 0;
    }
  }
}
