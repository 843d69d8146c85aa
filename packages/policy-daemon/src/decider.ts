/**
 * decider - the daemon's side of a decision: run rules' decideWithStore()
 * with the current ruleset and the injected clock, and turn anything it
 * throws into a result, so the caller can answer the configured fail action.
 *
 * A memory store answers synchronously, so the common path allocates no
 * promise; a remote store makes the answer a promise.
 */

import {
  batvStrip,
  batvVerify,
  classifyRecipient,
  decideWithStore,
  type ContainmentReader,
  type CounterStore,
  type Decision,
  type FailAction,
  type Facts,
  type BatvKey,
  type BlockEntry,
  type RecipientDirectory,
  type Ruleset,
  type Stage,
  type Tier,
  type Verdict,
} from '@levee/rules';

export interface DeciderDeps {
  /** The current rules; read per request so a reload swaps them atomically. */
  readonly ruleset: () => Ruleset;
  readonly store: CounterStore;
  readonly now: () => number;
  /** The recipient directory, read per request like the ruleset. */
  readonly directory?: () => RecipientDirectory | undefined;
  /** BATV: the key and the domains whose recipients are checked, when configured. */
  readonly batv?: () => { readonly key: BatvKey; readonly domains: readonly string[] } | undefined;
  /** The outbreak tier now, and the answer delay of tier delay and above. */
  readonly tier?: () => Tier;
  readonly loadDelayMs?: () => number;
  /** Sees every request's facts before deciding (the load monitor counts stress=yes). */
  readonly observe?: (facts: Facts) => void;
  /** Sees every decision (the evidence store keeps what offenders did; containment writes its changes). */
  readonly decided?: (facts: Facts, verdict: Verdict, decision: Decision) => void;
  /** The states of contained customers (limits with `contain`). */
  readonly containment?: ContainmentReader;
  /** The postmaster's block list (levee block): the entry blocking this client, if any. */
  readonly blocked?: (facts: Facts) => BlockEntry | undefined;
}

/** A decision Levee makes itself, before any rule: one trail entry naming why. */
function builtIn(verdict: Verdict & { readonly rule: string }, detail: string): Decision {
  return { verdict, trail: [{ rule: verdict.rule, index: -1, outcome: 'decided', detail, action: verdict.action }] };
}

/** A blocked client: 554 at CONNECT (replaces the greeting), 550 later; the reason is logged, not told. */
function blockDecision(stage: Stage, entry: BlockEntry): Decision {
  const text = 'Your address is blocked by the postmaster';
  const verdict = { action: 'reject', code: stage === 'connect' ? 554 : 550, enhancedCode: '5.7.1', text, rule: 'admin-block' } as const;
  return builtIn(verdict, `blocked: ${entry.network} (${entry.reason})`);
}

/** In tier refuse, new mail is turned away at these stages; messages under way finish. */
const REFUSE_STAGES: ReadonlySet<Stage> = new Set<Stage>(['connect', 'helo', 'mail', 'rcpt']);
/** In tier delay and above, answers at these stages are slowed down. */
const DELAY_STAGES: ReadonlySet<Stage> = new Set<Stage>(['connect', 'mail', 'rcpt']);

/** The built-in answer of tier refuse: 421 (disconnect) at connect, 451 later; 4.3.2 "system not accepting messages". */
function refuseDecision(stage: Stage): Decision {
  const text = 'System overloaded, try again later';
  const verdict = { action: 'tempfail', code: stage === 'connect' ? 421 : 451, enhancedCode: '4.3.2', text, rule: 'load-tier' } as const;
  return builtIn(verdict, 'load tier refuse: new mail is turned away');
}

/** Tier delay and above: at least the configured delay before answering. */
function slowed(decision: Decision, delayMs: number): Decision {
  if (delayMs <= 0 || (decision.verdict.delayMs ?? 0) >= delayMs) return decision;
  return { ...decision, verdict: { ...decision.verdict, delayMs } };
}

/** Report the decision to whoever watches, and wrap it as an outcome. */
function seen(facts: Facts, decision: Decision, deps: DeciderDeps): DecisionOutcome {
  deps.decided?.(facts, decision.verdict, decision);
  return { ok: true, decision };
}

/**
 * The facts with what the recipient directory and BATV say of the recipient.
 * The directory sees the address without its BATV tag (prvs=...=alice@ is alice@).
 */
function classified(facts: Facts, deps: DeciderDeps, now: number): Facts {
  const recipient = facts.recipient;
  if (recipient === undefined) return facts;
  const directory = deps.directory?.();
  const batv = deps.batv?.();
  if (directory === undefined && batv === undefined) return facts;
  const plain = batvStrip(recipient);
  const domain = plain.slice(plain.lastIndexOf('@') + 1).toLowerCase();
  return {
    ...facts,
    ...(directory === undefined ? {} : { recipientStatus: classifyRecipient(directory, plain) }),
    ...(batv === undefined || !batv.domains.includes(domain) ? {} : { batv: batvVerify(recipient, [batv.key], now) }),
  };
}

export type DecisionOutcome = { readonly ok: true; readonly decision: Decision } | { readonly ok: false; readonly error: unknown };

/** decideFacts - a Decision for `facts`, or the error that prevented one. */
export function decideFacts(facts: Facts, deps: DeciderDeps): DecisionOutcome | Promise<DecisionOutcome> {
  try {
    deps.observe?.(facts);
    const block = deps.blocked?.(facts);
    if (block !== undefined) return seen(facts, blockDecision(facts.stage, block), deps);
    const tier = deps.tier?.() ?? 'normal';
    if (tier === 'refuse' && REFUSE_STAGES.has(facts.stage)) return seen(facts, refuseDecision(facts.stage), deps);
    const input = classified(tier === 'normal' ? facts : { ...facts, tier }, deps, deps.now());
    const delayMs = tier !== 'normal' && DELAY_STAGES.has(facts.stage) ? (deps.loadDelayMs?.() ?? 0) : 0;
    const decision = decideWithStore(input, deps.ruleset(), deps.store, deps.now(), deps.containment);
    if (!(decision instanceof Promise)) return seen(input, slowed(decision, delayMs), deps);
    return decision.then(
      (resolved) => seen(input, slowed(resolved, delayMs), deps),
      (error: unknown) => ({ ok: false, error }),
    );
  } catch (error) {
    return { ok: false, error };
  }
}

/** The answer when deciding failed: fail open (continue) or closed (tempfail), as configured. */
export function failVerdict(failAction: FailAction): Verdict {
  return failAction === 'continue'
    ? { action: 'continue', rule: 'fail-action' }
    : { action: 'tempfail', code: 451, enhancedCode: '4.3.0', text: 'Temporary policy failure, try again later', rule: 'fail-action' };
}
