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
      hits.push({ key, amount: counts ? countAmount(limit.count, facts) : 0, window: limit.window });
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
export function decide(_facts: Facts, ruleset: Ruleset, plan: CounterPlan, totals: readonly number[], storeFailed = isDegraded(totals)): Decision {
  const trail: RuleTrace[] = [];
  let warnings: WouldHaveActed[] | undefined;
  let tags: HeaderToAdd[] | undefined;
  let tagDelayMs = 0;
  let verdict: Verdict | undefined;
  let decidedBy = '';
  const gaps = plan.gaps;
  for (const step of plan.steps) {
    if (typeof step !== 'number') {
      if (verdict !== undefined) continue; // not considered: an earlier limit decided
      if (gaps !== undefined) for (const t of gaps.before[step.index] ?? []) trail.push(t);
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
    if (verdict === undefined && gaps !== undefined) for (const t of gaps.before[rule.index] ?? []) trail.push(t);
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
  if (verdict === undefined && gaps !== undefined) for (const t of gaps.tail) trail.push(t);
  return { verdict: finish(verdict ?? CONTINUE, tags, tagDelayMs, warnings), trail };
}

/**
 * Plan, apply to a store, decide: the whole decision for one request.
 * Synchronous when the store is; a Promise otherwise.
 */
export function decideWithStore(facts: Facts, ruleset: Ruleset, store: CounterStore, now: number): Decision | Promise<Decision> {
  const plan = planCounters(facts, ruleset);
  if (plan.hits.length === 0) return decide(facts, ruleset, plan, []);
  const totals = store.apply(plan.hits, now);
  if (Array.isArray(totals)) return decide(facts, ruleset, plan, totals as readonly number[]);
  return Promise.resolve(totals).then((t) => decide(facts, ruleset, plan, t));
}
