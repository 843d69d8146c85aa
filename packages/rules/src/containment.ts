/**
 * containment - "contain the infected customer": what happens to one counter
 * key (a SASL user, a local client address) of a limit rule with `contain`
 * when it goes over its limit, as a pure state machine.
 *
 *   (none) --trip--> warned --still tripping after grace--> held --hold_for passes--> (none)
 *
 * - The first trip only warns: the mail goes through, the postmaster is told
 *   (a customer sending a newsletter is not a worm).
 * - A warning ends as soon as a request of the key is under the limit again,
 *   or when the key has not tripped for one window length (its counts have
 *   gone by then): a customer hovering at its limit is not held.
 * - A key that trips again once the grace period since its first trip is
 *   over is held: every request the rule applies to for that key gets the
 *   rule's action (quarantine: the MTA holds the mail) for `hold_for`, even
 *   under the limit, the cool-down. Then the hold expires by itself.
 * - grace 0 holds at the first trip.
 *
 * The daemon keeps the states (containment-book) and does the I/O: reading
 * them before deciding, writing the changes decide() reports, notifying the
 * postmaster of the `event`s.
 */

export interface ContainPolicy {
  readonly graceMs: number;
  readonly holdMs: number;
  /** The limit's window length: a warning without a trip for this long is over. */
  readonly windowMs: number;
}

export type ContainState =
  | { readonly phase: 'warned'; readonly since: number; readonly lastTrip: number }
  | { readonly phase: 'held'; readonly since: number; readonly until: number };

/** What the state means for this request. */
export type ContainEffect =
  /** Not over the limit and not held. */
  | 'none'
  /** Over the limit, within the grace period: warn, let the mail through. */
  | 'warning'
  /** Held (cool-down): answer the rule's action. */
  | 'holding';

/** Moments the postmaster hears of. */
export type ContainEvent = 'warned' | 'held';

export interface ContainStep {
  readonly effect: ContainEffect;
  /** The state to keep after this request (undefined: forget the key). */
  readonly next: ContainState | undefined;
  /** Whether `next` differs from the state read (the daemon writes only then). */
  readonly changed: boolean;
  /** Set when this request started a warning or a hold. */
  readonly event?: ContainEvent;
}

/** The state still in force at `now`: an expired hold or a lapsed warning is no state. */
export function liveContainState(state: ContainState | undefined, now: number, policy: ContainPolicy): ContainState | undefined {
  if (state === undefined) return undefined;
  if (state.phase === 'held') return state.until > now ? state : undefined;
  return now - state.lastTrip > policy.windowMs ? undefined : state;
}

/** containStep - the effect of one request on a key, given whether it tripped the limit. Pure. */
export function containStep(state: ContainState | undefined, tripped: boolean, now: number, policy: ContainPolicy): ContainStep {
  const live = liveContainState(state, now, policy);
  if (live?.phase === 'held') return { effect: 'holding', next: live, changed: live !== state };
  // Under the limit again: a warning ends.
  if (!tripped) return { effect: 'none', next: undefined, changed: state !== undefined };
  if (live === undefined && policy.graceMs > 0) {
    return { effect: 'warning', next: { phase: 'warned', since: now, lastTrip: now }, changed: true, event: 'warned' };
  }
  if (live === undefined || now - live.since >= policy.graceMs) {
    return { effect: 'holding', next: { phase: 'held', since: now, until: now + policy.holdMs }, changed: true, event: 'held' };
  }
  return { effect: 'warning', next: { phase: 'warned', since: live.since, lastTrip: now }, changed: true };
}

/** How long a state must be kept at most: a hold until it ends, a warning one window length past its last trip. */
export function containStateTtlMs(state: ContainState, now: number, policy: ContainPolicy): number {
  return Math.max(1, state.phase === 'held' ? state.until - now : state.lastTrip + policy.windowMs - now + 1);
}

/** A change decide() asks the daemon to write: the key of a contain rule and its next state. */
export interface ContainmentChange {
  readonly rule: string;
  /** The counter key, `<rule>|<rendered key>`. */
  readonly key: string;
  readonly next: ContainState | undefined;
  readonly event?: ContainEvent;
  readonly policy: ContainPolicy;
}

/**
 * The port the daemon implements: the live states of counter keys, in order.
 * Synchronous for a local book, a Promise for a shared one.
 */
export interface ContainmentReader {
  read(keys: readonly string[], now: number): readonly (ContainState | undefined)[] | Promise<readonly (ContainState | undefined)[]>;
}
