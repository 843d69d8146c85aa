/**
 * decide - Facts + Ruleset + counter totals -> Verdict, in two pure phases so
 * a remote counter store can apply all of a request's counters in one round
 * trip:
 *
 *   const plan = planCounters(facts, ruleset);        // which counters to add to
 *   const totals = await store.apply(plan.hits, now); // the daemon's I/O
 *   const { verdict, trail } = decide(facts, ruleset, plan, totals);
 *
 * Semantics. Rules are taken in order. A rule applies when it is active at the
 * request's stage, its `match` holds and its `unless` does not hold.
 * - A rule without `limit` that applies is terminal in enforce mode: it
 *   decides and evaluation stops. In warn mode it is recorded in
 *   `verdict.warnings` and evaluation goes on.
 * - A rule with `limit` that applies (and whose key renders) adds its amount
 *   to the counter `<rule>|<key>` and fires when the total after the add is
 *   greater than `max`, so the (max+1)th event in a window is the first
 *   refused. Firing in enforce mode decides; in warn mode it is recorded and
 *   evaluation goes on.
 * - Nothing decided: `continue`.
 *
 * Counting scope. Totals must be known before deciding, and which counters
 * are added to must not depend on other counters' values (or a remote store
 * would need one round trip per rule). So `planCounters` adds to every
 * applicable limit rule from the first rule up to the first applicable
 * non-limit enforce rule (which ends evaluation whatever the counters say).
 * Consequences worth knowing:
 * - when an earlier limit fires, later applicable limits in the scope have
 *   still counted this request (the trail shows them as `counted`);
 * - refused requests are counted too: a client that keeps trying at a rate
 *   above the limit stays refused until it slows down, as with anvil;
 * - a terminal rule (e.g. an allow-list placed first) shields the requests it
 *   decides from every counter after it.
 *
 * `totals` shorter than `plan.hits` (a store that failed) reads as 0 for the
 * missing ones: limits then do not fire, the fail-open choice; the daemon
 * decides whether to fall back to local counting.
 *
 * Totals marked degraded (the shared store failed, the counts are this host's
 * own) are judged like any others, except that an applicable enforce-mode
 * limit with `on_store_error: fail_closed` answers tempfail (451 4.3.0): the
 * admin preferred to defer mail over deciding on a partial count. Such a rule
 * never rejects for it, since the next attempt may find the store back.
 */

import type { Facts } from './facts.js';
import type { CounterEvidence, HeaderToAdd, Verdict, WouldHaveActed } from './verdict.js';
import { CONTINUE } from './verdict.js';
import { isDegraded, type CounterHit, type CounterStore } from './counter-store.js';
import { containStep, type ContainmentChange, type ContainmentReader, type ContainState } from './containment.js';
import { buildView } from './request-view.js';
import { missingPlaceholder, renderKeyTemplate } from './key-template.js';
import { countAmount, isTaggingRule, type CompiledRule, type RuleTrace, type Ruleset, type StageGaps } from './rules-compile.js';

export interface CounterPlan {
  /** Counters this request adds to; the store's totals come back in the same order. */
  readonly hits: readonly CounterHit[];
  /**
   * Per rule considered, in order: a settled trail entry, or the index into
   * `hits` of a limit rule still to be judged on its total. Internal to decide().
   */
  readonly steps: readonly (RuleTrace | number)[];
  /** The rule behind each hit. */
  readonly hitRules: readonly CompiledRule[];
  /** The 'stage' trail entries of the rules inactive at the request's stage (they are in no step). */
  readonly gaps: StageGaps | undefined;
}

export interface Decision {
  readonly verdict: Verdict;
  /**
   * One entry per rule considered, in order (for `levee explain`): up to the
   * rule that decided, and the limits that counted after it. The rules not
   * active at the stage are listed from precomputed entries (StageGaps).
   */
  readonly trail: readonly RuleTrace[];
  /** Containment states to write (limits with `contain`), when any changed. */
  readonly containment?: readonly ContainmentChange[];
}

/** What decide() needs to judge limits with `contain`: each hit's state (undefined for other hits) and the time. */
export interface ContainInput {
  readonly states: readonly (ContainState | undefined)[];
  readonly now: number;
}

/**
 * Which counters this request increments. Pure. Walks only the rules active
 * at the request's stage (`ruleset.byStage`).
 */
export function planCounters(facts: Facts, ruleset: Ruleset): CounterPlan {
  const view = buildView(facts, ruleset.needs);
  const steps: (RuleTrace | number)[] = [];
  const hits: CounterHit[] = [];
  const hitRules: CompiledRule[] = [];
  rules: for (const rule of ruleset.byStage[facts.stage] ?? []) {
    for (const c of rule.match) {
      if (!c.check(view)) {
        steps.push(c.failTrace);
        continue rules;
      }
    }
    if (rule.unless.length > 0) {
      let exempt = true;
      for (const c of rule.unless) {
        if (!c.check(view)) {
          exempt = false;
          break;
        }
      }
      if (exempt) {
        steps.push(rule.traces.exempt);
        continue;
      }
    }
    const limit = rule.limit;
    if (limit !== undefined) {
      const key = renderKeyTemplate(limit.template, view, limit.keyPrefix);
      if (key === undefined) {
        const missing = missingPlaceholder(limit.template, view) ?? 'a placeholder';
        steps.push({
          rule: rule.name,
          index: rule.index,
          outcome: 'no-key',
          detail: `limit.key: ${missing} is absent from this request`,
          condition: `limit.key ${missing}`,
        });
        continue;
      }
      steps.push(hits.length);
      // count_if: requests outside it still meet the limit, but only read the counter.
      let counts = true;
      for (const c of limit.countIf) if (!c.check(view)) counts = false;
      const amount = counts ? countAmount(limit.count, facts) : 0;
      if (limit.distinct === undefined) {
        hits.push({ key, amount, window: limit.window });
      } else {
        // Counting distinct values: a request whose value is absent only reads the counter.
        const value = renderKeyTemplate(limit.distinct, view, '');
        hits.push(value === undefined ? { key, amount: 0, window: limit.window } : { key, amount, window: limit.window, distinct: value });
      }
      hitRules.push(rule);
      continue;
    }
    if (rule.mode === 'warn') {
      steps.push(rule.traces.warned);
      continue;
    }
    if (isTaggingRule(rule)) {
      steps.push(rule.traces.tagged);
      continue;
    }
    steps.push(rule.traces.decided);
    break;
  }
  return { hits, steps, hitRules, gaps: ruleset.stageGaps[facts.stage] };
}

/** The rule's verdict plus the counter that tripped (written out: see the note on spreads in decide). */
function limitVerdict(rule: CompiledRule, counter: CounterEvidence): Verdict {
  const v = rule.verdict;
  let out: Verdict;
  if (v.code !== undefined && v.enhancedCode !== undefined && v.text !== undefined) {
    out = { action: v.action, code: v.code, enhancedCode: v.enhancedCode, text: v.text, rule: rule.name, counter };
  } else if (v.text !== undefined) {
    out = { action: v.action, text: v.text, rule: rule.name, counter };
  } else {
    out = { action: v.action, rule: rule.name, counter };
  }
  if (v.addHeaders !== undefined) out = { ...out, addHeaders: v.addHeaders };
  return v.delayMs === undefined ? out : { ...out, delayMs: v.delayMs };
}

/**
 * The final verdict: headers from tagging rules first, then the deciding
 * rule's; the longest delay of any of them; warnings attached.
 */
function finish(v: Verdict, tags: HeaderToAdd[] | undefined, tagDelayMs: number, warnings: WouldHaveActed[] | undefined): Verdict {
  if (tags === undefined && warnings === undefined && tagDelayMs === 0) return v;
  let out = v;
  if (tags !== undefined) out = { ...out, addHeaders: out.addHeaders === undefined ? tags : [...tags, ...out.addHeaders] };
  if (tagDelayMs > (out.delayMs ?? 0)) out = { ...out, delayMs: tagDelayMs };
  if (warnings !== undefined) out = { ...out, warnings };
  return out;
}

/** The verdict a fail_closed limit gives while the shared store fails. */
function storeDownVerdict(rule: CompiledRule, counter: CounterEvidence): Verdict {
  return {
    action: 'tempfail',
    code: 451,
    enhancedCode: '4.3.0',
    text: 'Rate limit service temporarily unavailable, try again later',
    rule: rule.name,
    counter,
  };
}

/**
 * The verdict, given the totals the store returned for `plan.hits` (same
 * order). `storeFailed` (default: whether the totals are marked degraded)
 * turns fail_closed limits into tempfail. Pure.
 */
export function decide(
  _facts: Facts,
  ruleset: Ruleset,
  plan: CounterPlan,
  totals: readonly number[],
  storeFailed = isDegraded(totals),
  contain?: ContainInput,
): Decision {
  const trail: RuleTrace[] = [];
  let changes: ContainmentChange[] | undefined;
  let warnings: WouldHaveActed[] | undefined;
  let tags: HeaderToAdd[] | undefined;
  let tagDelayMs = 0;
  let verdict: Verdict | undefined;
  let decidedBy = '';
  const gaps = plan.gaps;
  // Indexed loops in this function: for-of here allocated an iterator result per
  // step (profiled: 7 % of the daemon's allocations), decide() being too large to
  // have them optimised away.
  const steps = plan.steps;
  for (let s = 0; s < steps.length; s++) {
    const step = steps[s] as RuleTrace | number;
    if (typeof step !== 'number') {
      if (verdict !== undefined) continue; // not considered: an earlier limit decided
      if (gaps !== undefined) pushAll(trail, gaps.before[step.index]);
      trail.push(step);
      if (step.outcome === 'decided') {
        verdict = ruleset.rules[step.index]?.verdict;
        decidedBy = step.rule;
      } else if (step.outcome === 'warned') {
        const w = ruleset.rules[step.index]?.warning;
        if (w !== undefined) (warnings ??= []).push(w);
      } else if (step.outcome === 'tagged') {
        const tagging = ruleset.rules[step.index]?.verdict;
        for (const h of tagging?.addHeaders ?? []) (tags ??= []).push(h);
        tagDelayMs = Math.max(tagDelayMs, tagging?.delayMs ?? 0);
      }
      continue;
    }
    const rule = plan.hitRules[step];
    const hit = plan.hits[step];
    if (rule === undefined || hit === undefined || rule.limit === undefined) continue;
    const total = totals[step] ?? 0;
    const max = rule.limit.max;
    if (verdict === undefined && gaps !== undefined) pushAll(trail, gaps.before[rule.index]);
    const counter: CounterEvidence = { rule: rule.name, key: hit.key, count: total, limit: max, windowMs: rule.limit.window.windowMs };
    // Trail entries are written out in full rather than spread from a common
    // base: object spread here cost several times the rest of decide().
    if (verdict !== undefined) {
      trail.push({
        rule: rule.name,
        index: rule.index,
        outcome: 'counted',
        detail: `counted ${total}/${max}; not judged, ${decidedBy} decided first`,
        counter,
      });
    } else if (storeFailed && rule.limit.onStoreError === 'fail_closed' && rule.mode === 'enforce') {
      trail.push({
        rule: rule.name,
        index: rule.index,
        outcome: 'decided',
        detail: `shared counter store unavailable (local count ${total}/${max}), on_store_error fail_closed: tempfail`,
        action: 'tempfail',
        counter,
      });
      verdict = storeDownVerdict(rule, counter);
      decidedBy = rule.name;
    } else if (rule.limit.contain !== undefined && rule.mode === 'enforce' && contain !== undefined) {
      const policy = rule.limit.contain;
      const moved = containStep(contain.states[step], total > max, contain.now, policy);
      if (moved.changed) (changes ??= []).push({ rule: rule.name, key: hit.key, next: moved.next, policy, ...(moved.event === undefined ? {} : { event: moved.event }) });
      const state = moved.next;
      if (moved.effect === 'holding' && state?.phase === 'held') {
        const why = moved.event === 'held' ? `${total} > max ${max} after the grace period: held` : `contained since ${isoTime(state.since)} (${total}/${max})`;
        trail.push({ rule: rule.name, index: rule.index, outcome: 'decided', detail: `${why} until ${isoTime(state.until)}: ${rule.action}`, action: rule.action, counter });
        verdict = limitVerdict(rule, counter);
        decidedBy = rule.name;
      } else if (moved.effect === 'warning' && state?.phase === 'warned') {
        trail.push({
          rule: rule.name,
          index: rule.index,
          outcome: 'warned',
          detail: `${total} > max ${max}: warned since ${isoTime(state.since)}; held if still over the limit after ${isoTime(state.since + policy.graceMs)}`,
          action: rule.action,
          counter,
        });
        (warnings ??= []).push({ rule: rule.name, action: rule.action, counter });
      } else {
        trail.push({ rule: rule.name, index: rule.index, outcome: 'under-limit', detail: `${total} of max ${max} in window`, counter });
      }
    } else if (total <= max) {
      trail.push({ rule: rule.name, index: rule.index, outcome: 'under-limit', detail: `${total} of max ${max} in window`, counter });
    } else if (rule.mode === 'warn') {
      trail.push({
        rule: rule.name,
        index: rule.index,
        outcome: 'warned',
        detail: `warn mode: ${total} > max ${max}, would have answered ${rule.action}`,
        action: rule.action,
        counter,
      });
      (warnings ??= []).push({ rule: rule.name, action: rule.action, counter });
    } else {
      trail.push({ rule: rule.name, index: rule.index, outcome: 'decided', detail: `${total} > max ${max}: ${rule.action}`, action: rule.action, counter });
      verdict = limitVerdict(rule, counter);
      decidedBy = rule.name;
    }
  }
  // Nothing decided: every rule was considered, the inactive ones after the last active one too.
  if (verdict === undefined && gaps !== undefined) pushAll(trail, gaps.tail);
  const decision = { verdict: finish(verdict ?? CONTINUE, tags, tagDelayMs, warnings), trail };
  return changes === undefined ? decision : { ...decision, containment: changes };
}

/** Append every entry of `from` (if any) to `to`, without an iterator. */
function pushAll<T>(to: T[], from: readonly T[] | undefined): void {
  if (from === undefined) return;
  for (let i = 0; i < from.length; i++) to.push(from[i] as T);
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Plan, apply to a store, decide: the whole decision for one request.
 * Synchronous when the store (and the containment book) are; a Promise otherwise.
 * Without a `book`, limits with `contain` start from no state (as on a fresh daemon).
 */
export function decideWithStore(facts: Facts, ruleset: Ruleset, store: CounterStore, now: number, book?: ContainmentReader): Decision | Promise<Decision> {
  const plan = planCounters(facts, ruleset);
  if (plan.hits.length === 0) return decide(facts, ruleset, plan, []);
  const totals = store.apply(plan.hits, now);
  const wanted = ruleset.hasContain ? containedHits(plan) : undefined;
  const states = wanted === undefined || book === undefined ? [] : book.read(wanted.map((i) => (plan.hits[i] as CounterHit).key), now);
  const judge = (t: readonly number[], read: readonly (ContainState | undefined)[]): Decision =>
    decide(facts, ruleset, plan, t, isDegraded(t), { states: spread(read, wanted, plan.hits.length), now });
  if (Array.isArray(states)) {
    const read = states as readonly (ContainState | undefined)[];
    if (Array.isArray(totals)) return judge(totals as readonly number[], read);
    // A remote store and no containment read (the common shared-counter case): one promise turn, not Promise.all's.
    return (totals as Promise<readonly number[]>).then((t) => judge(t, read));
  }
  return Promise.all([totals, states]).then(([t, read]) => judge(t, read));
}

/** Indexes of the hits whose rule has `contain`; undefined when none (the common case). */
function containedHits(plan: CounterPlan): number[] | undefined {
  let out: number[] | undefined;
  plan.hitRules.forEach((rule, i) => {
    if (rule.limit?.contain !== undefined) (out ??= []).push(i);
  });
  return out;
}

/** States read for some hits, placed at those hits' indexes. */
function spread(read: readonly (ContainState | undefined)[], at: readonly number[] | undefined, length: number): readonly (ContainState | undefined)[] {
  if (at === undefined || read.length === 0) return [];
  const out = new Array<ContainState | undefined>(length);
  at.forEach((hitIndex, i) => {
    out[hitIndex] = read[i];
  });
  return out;
}
