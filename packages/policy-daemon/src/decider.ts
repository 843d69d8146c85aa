/**
 * decider - the daemon's side of a decision: run rules' decideWithStore()
 * with the current ruleset and the injected clock, and turn anything it
 * throws into a result, so the caller can answer the configured fail action.
 *
 * A memory store answers synchronously, so the common path allocates no
 * promise; a remote store makes the answer a promise.
 */

import {
  classifyRecipient,
  decideWithStore,
  type CounterStore,
  type Decision,
  type FailAction,
  type Facts,
  type RecipientDirectory,
  type Ruleset,
  type Verdict,
} from '@levee/rules';

export interface DeciderDeps {
  /** The current rules; read per request so a reload swaps them atomically. */
  readonly ruleset: () => Ruleset;
  readonly store: CounterStore;
  readonly now: () => number;
  /** The recipient directory, read per request like the ruleset. */
  readonly directory?: () => RecipientDirectory | undefined;
}

/** The facts with what the recipient directory says of the recipient, when there is both. */
function classified(facts: Facts, deps: DeciderDeps): Facts {
  const directory = deps.directory?.();
  if (directory === undefined || facts.recipient === undefined) return facts;
  return { ...facts, recipientStatus: classifyRecipient(directory, facts.recipient) };
}

export type DecisionOutcome = { readonly ok: true; readonly decision: Decision } | { readonly ok: false; readonly error: unknown };

/** decideFacts - a Decision for `facts`, or the error that prevented one. */
export function decideFacts(facts: Facts, deps: DeciderDeps): DecisionOutcome | Promise<DecisionOutcome> {
  try {
    const decision = decideWithStore(classified(facts, deps), deps.ruleset(), deps.store, deps.now());
    if (!(decision instanceof Promise)) return { ok: true, decision };
    return decision.then(
      (resolved) => ({ ok: true, decision: resolved }),
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
