/**
 * offline-run - run policy requests through a config without a daemon:
 * what `levee explain` and `levee replay` are built on. Requests are read in
 * the policy wire format (name=value lines, a blank line after each), so a
 * capture of what Postfix sent can be fed back as it is.
 *
 * Counters live in a private memory store, and the clock is the caller's:
 * replay spaces requests `intervalMs` apart, so rate limits see a rate.
 */

import { createPolicyDecoder, encodePolicyAttributes, formatPolicyAction, POLICY_ATTRIBUTE_NAMES, type PolicyRequest } from '@levee/milter-proto';
import type { Decision, Facts, Ruleset } from '@levee/rules';
import { decideFacts } from './decider.js';
import { createMemoryStore } from './memory-store.js';
import { policyRequestToFacts } from './policy-facts.js';
import { verdictToPolicyAction } from './policy-verdict.js';

export type ParsedRequests = { readonly ok: true; readonly requests: PolicyRequest[] } | { readonly ok: false; readonly error: string };

/** Whether the peer sent any attribute (a decoded request has every known name, undefined when absent). */
function hasAnyAttribute(request: PolicyRequest): boolean {
  for (const [name, value] of Object.entries(request)) if (name !== 'unknown' && value !== undefined) return true;
  return Object.keys(request.unknown).length > 0;
}

/** parsePolicyRequests - every request in `text` (a missing final blank line is forgiven). */
export function parsePolicyRequests(text: string): ParsedRequests {
  const decoder = createPolicyDecoder();
  const body = text.endsWith('\n\n') || text.trim() === '' ? text : `${text.replace(/\n?$/, '\n')}\n`;
  const requests: PolicyRequest[] = [];
  for (const result of decoder.push(Buffer.from(body, 'utf8'))) {
    if (result.kind === 'error') return { ok: false, error: `request ${requests.length + 1}: ${result.code}: ${result.detail}` };
    if (hasAnyAttribute(result.request)) requests.push(result.request);
  }
  return { ok: true, requests };
}

/** withDefaults - a request as Postfix would send it: `request=` and a RCPT stage unless given. */
export function withDefaults(request: PolicyRequest): PolicyRequest {
  // Not a spread of defaults under the request: a decoded request has every known name, undefined when not sent.
  return { ...request, request: request.request ?? 'smtpd_access_policy', protocol_state: request.protocol_state ?? 'RCPT' };
}

/** overlay - `base` with every attribute `extra` sent (known or unknown) put over it; what `extra` did not send stays. */
export function overlay(base: PolicyRequest, extra: PolicyRequest): PolicyRequest {
  const out: PolicyRequest = { ...base, unknown: { ...base.unknown, ...extra.unknown } };
  for (const name of POLICY_ATTRIBUTE_NAMES) {
    const value = extra[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

export interface Explained {
  readonly facts: Facts;
  readonly decision: Decision;
  /** The `action=` value Levee would send. */
  readonly policyAction: string;
}

export interface OfflineRunner {
  /** Decide one request at time `now`; a problem string when it cannot be decided. */
  run(request: PolicyRequest, now: number): Explained | string;
}

/** createOfflineRunner - decide requests against `ruleset` with private counters. */
export function createOfflineRunner(ruleset: Ruleset): OfflineRunner {
  const store = createMemoryStore({ maxKeys: 1_000_000 });
  let clock = 0;
  return {
    run(request, now) {
      const converted = policyRequestToFacts(withDefaults(request));
      if (!converted.ok) return converted.problem;
      clock = now;
      const outcome = decideFacts(converted.facts, { ruleset: () => ruleset, store, now: () => clock });
      if (outcome instanceof Promise) return 'the memory store answered asynchronously';
      if (!outcome.ok) return `deciding failed: ${String(outcome.error)}`;
      const action = formatPolicyAction(verdictToPolicyAction(outcome.decision.verdict, converted.facts.stage));
      // The parsed address is the decision's business; what is shown (and printed by --json) is its text.
      const { clientIp: _parsed, ...facts } = converted.facts;
      return { facts, decision: outcome.decision, policyAction: action };
    },
  };
}

/** formatExplanation - the human form of one explained request. */
export function formatExplanation(e: Explained): string {
  const f = e.facts;
  const lines = [
    `request: stage=${f.stage} client=${f.clientAddress ?? '-'} helo=${f.heloName ?? '-'} sender=${f.sender === '' ? '<>' : (f.sender ?? '-')} recipient=${f.recipient ?? '-'}${f.saslUsername === undefined ? '' : ` sasl=${f.saslUsername}`}`,
  ];
  const width = Math.max(4, ...e.decision.trail.map((t) => t.rule.length));
  for (const t of e.decision.trail) {
    const counter = t.counter === undefined ? '' : `  [key ${t.counter.key}: ${t.counter.count}/${t.counter.limit} in ${t.counter.windowMs / 1000}s]`;
    lines.push(`  ${String(t.index + 1).padStart(2)} ${t.rule.padEnd(width)}  ${t.outcome.padEnd(11)} ${t.detail}${counter}`);
  }
  const v = e.decision.verdict;
  lines.push(`verdict: ${v.action}${v.rule === undefined ? ' (no rule decided)' : ` by ${v.rule}`}`);
  for (const w of v.warnings ?? []) lines.push(`  warn mode: ${w.rule} would have answered ${w.action}`);
  lines.push(`policy reply: action=${e.policyAction}`);
  return `${lines.join('\n')}\n`;
}

/** Attributes from `--set name=value` flags. */
export function requestFromAssignments(assignments: readonly string[]): PolicyRequest | string {
  const attributes: Record<string, string> = {};
  for (const a of assignments) {
    const eq = a.indexOf('=');
    if (eq <= 0) return `--set needs name=value, got "${a}"`;
    attributes[a.slice(0, eq)] = a.slice(eq + 1);
  }
  try {
    const parsed = parsePolicyRequests(encodePolicyAttributes(attributes).toString('utf8'));
    if (!parsed.ok) return parsed.error;
    return parsed.requests[0] ?? { unknown: {} };
  } catch (error) {
    return (error as Error).message;
  }
}

export interface ReplaySummary {
  readonly requests: number;
  readonly undecidable: number;
  readonly byAction: Readonly<Record<string, number>>;
  readonly byRule: Readonly<Record<string, number>>;
  readonly wouldWarn: Readonly<Record<string, number>>;
}

/** replayRequests - decide every request, `intervalMs` apart, and count the outcomes. */
export function replayRequests(ruleset: Ruleset, requests: readonly PolicyRequest[], startMs: number, intervalMs: number): ReplaySummary {
  const runner = createOfflineRunner(ruleset);
  const byAction: Record<string, number> = {};
  const byRule: Record<string, number> = {};
  const wouldWarn: Record<string, number> = {};
  let undecidable = 0;
  requests.forEach((request, i) => {
    const e = runner.run(request, startMs + i * intervalMs);
    if (typeof e === 'string') {
      undecidable++;
      return;
    }
    const v = e.decision.verdict;
    byAction[v.action] = (byAction[v.action] ?? 0) + 1;
    if (v.rule !== undefined) byRule[v.rule] = (byRule[v.rule] ?? 0) + 1;
    for (const w of v.warnings ?? []) wouldWarn[w.rule] = (wouldWarn[w.rule] ?? 0) + 1;
  });
  return { requests: requests.length, undecidable, byAction, byRule, wouldWarn };
}

/** formatReplaySummary - the human form of a replay. */
export function formatReplaySummary(s: ReplaySummary): string {
  const lines = [`${s.requests} requests, ${s.undecidable} undecidable`];
  const table = (title: string, counts: Readonly<Record<string, number>>): void => {
    const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    if (entries.length === 0) return;
    lines.push(`${title}:`);
    for (const [name, n] of entries) lines.push(`  ${String(n).padStart(8)}  ${name}`);
  };
  table('by action', s.byAction);
  table('by rule', s.byRule);
  table('warn-mode rules that would have acted', s.wouldWarn);
  return `${lines.join('\n')}\n`;
}
