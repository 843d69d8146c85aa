/**
 * load-tier - outbreak mode: from load readings to a tier, the way sendmail's
 * DelayLA / QueueLA / RefuseLA step through degrees of refusal, but with
 * hysteresis so a daemon near a threshold does not flap.
 *
 *   normal  answer as usual
 *   delay   slow the answers down (a tarpit for everyone: senders back off)
 *   shed    skip expensive content checks
 *   refuse  tempfail new connections (421/451 4.3.2)
 *
 * Escalation is immediate: the tier jumps to the highest any signal calls
 * for. De-escalation is one step at a time, and only after every signal has
 * stayed below `calmRatio` of the current tier's threshold for `holdMs`.
 * Pure: the caller samples the signals and passes `now`.
 */

export type Tier = 'normal' | 'delay' | 'shed' | 'refuse';

export const TIERS: readonly Tier[] = ['normal', 'delay', 'shed', 'refuse'];

/** The signals Levee samples; absent readings call for nothing. */
export interface LoadReadings {
  /** 1-minute load average divided by the number of CPUs. */
  readonly loadPerCpu?: number;
  /** Event-loop delay (p99 over the last sampling period), ms. */
  readonly eventLoopLagMs?: number;
  /** Free bytes on the queue filesystem (lower is worse). */
  readonly queueFreeBytes?: number;
  /** Files in the MTA's queue directories. */
  readonly queueDepth?: number;
  /** Share (0..1) of recent policy requests that carried stress=yes. */
  readonly stressShare?: number;
}

export type Signal = keyof LoadReadings;

/** Per signal, the reading at which each tier begins (any subset). */
export type TierThresholds = Readonly<Partial<Record<Signal, Readonly<Partial<Record<Exclude<Tier, 'normal'>, number>>>>>>;

const LOWER_IS_WORSE: ReadonlySet<Signal> = new Set<Signal>(['queueFreeBytes']);

export interface TierPolicy {
  /** A signal counts as calm below this share of the current tier's threshold (above, for lower-is-worse signals). */
  readonly calmRatio: number;
  /** How long every signal must stay calm before stepping down one tier. */
  readonly holdMs: number;
}

export const DEFAULT_TIER_POLICY: TierPolicy = { calmRatio: 0.8, holdMs: 60_000 };

export interface TierState {
  readonly tier: Tier;
  /** When the current tier was entered. */
  readonly since: number;
  /** Since when every signal has been calm (undefined: not calm now). */
  readonly calmSince: number | undefined;
  /** The signal that last raised the tier, for the log line. */
  readonly cause: Signal | undefined;
}

export const INITIAL_TIER_STATE: TierState = { tier: 'normal', since: 0, calmSince: undefined, cause: undefined };

const rank = (tier: Tier): number => TIERS.indexOf(tier);

function reaches(signal: Signal, reading: number, threshold: number, scale = 1): boolean {
  return LOWER_IS_WORSE.has(signal) ? reading <= threshold / scale : reading >= threshold * scale;
}

/** tierCalledFor - the highest tier any reading reaches, and the signal that reaches it. */
export function tierCalledFor(readings: LoadReadings, thresholds: TierThresholds, scale = 1): { tier: Tier; cause: Signal | undefined } {
  let best: Tier = 'normal';
  let cause: Signal | undefined;
  for (const [signal, levels] of Object.entries(thresholds) as [Signal, Partial<Record<Tier, number>>][]) {
    const reading = readings[signal];
    if (reading === undefined || !Number.isFinite(reading)) continue;
    for (const tier of ['refuse', 'shed', 'delay'] as const) {
      const threshold = levels[tier];
      if (threshold === undefined || rank(tier) <= rank(best)) continue;
      if (reaches(signal, reading, threshold, scale)) {
        best = tier;
        cause = signal;
      }
    }
  }
  return { tier: best, cause };
}

/** stepTier - the next state after a sampling at `now`. */
export function stepTier(state: TierState, readings: LoadReadings, thresholds: TierThresholds, policy: TierPolicy, now: number): TierState {
  const called = tierCalledFor(readings, thresholds);
  if (rank(called.tier) > rank(state.tier)) return { tier: called.tier, since: now, calmSince: undefined, cause: called.cause };
  if (state.tier === 'normal') return state.calmSince === undefined ? state : { ...state, calmSince: undefined };
  // Calm means: even with every threshold scaled by calmRatio, nothing calls for the current tier.
  const calm = rank(tierCalledFor(readings, thresholds, policy.calmRatio).tier) < rank(state.tier);
  if (!calm) return state.calmSince === undefined ? state : { ...state, calmSince: undefined };
  const calmSince = state.calmSince ?? now;
  if (now - calmSince < policy.holdMs) return state.calmSince === calmSince ? state : { ...state, calmSince };
  const lower = TIERS[rank(state.tier) - 1] ?? 'normal';
  return { tier: lower, since: now, calmSince: undefined, cause: state.cause };
}
