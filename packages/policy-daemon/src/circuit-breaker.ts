/**
 * circuit-breaker - when to stop asking a failing backend, as a small state
 * machine over an injected monotonic clock (no timers: the caller schedules
 * its probes, so this is testable without fake timers).
 *
 *   closed    --(`failures` consecutive failures)-->   open
 *   open      --(cool-down elapsed, probeDue())-->     half-open (one probe in flight)
 *   half-open --(probe succeeded)-->                   closed
 *   half-open --(probe failed)-->                      open (a new cool-down)
 *
 * Requests are let through only while closed: in open and half-open they are
 * answered from the fallback at once, and only the caller's background probe
 * talks to the backend. That is what keeps a dead backend from adding its
 * deadline to every decision.
 *
 * LIMITATIONS: one success closes the breaker; a backend that answers every
 * other call can flap between closed and open (each flap costs at most
 * `failures` deadlines).
 */

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreaker {
  readonly state: BreakerState;
  /** Whether a request may use the backend now (only while closed). */
  allowRequest(): boolean;
  recordSuccess(): void;
  recordFailure(): void;
  /** Open and the cool-down is over: moves to half-open and returns true (the caller must probe and record the result). */
  probeDue(): boolean;
  /** Milliseconds until probeDue() can return true; 0 when not open. */
  msUntilProbe(): number;
}

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker (>= 1). */
  readonly failures: number;
  readonly coolDownMs: number;
  /** Monotonic milliseconds (performance.now in the daemon). */
  readonly now: () => number;
  /** Called on every state change. */
  readonly onChange?: (state: BreakerState) => void;
}

/** createCircuitBreaker - a closed breaker. */
export function createCircuitBreaker(options: CircuitBreakerOptions): CircuitBreaker {
  let state: BreakerState = 'closed';
  let consecutive = 0;
  let openedAt = 0;
  const become = (next: BreakerState): void => {
    if (next === state) return;
    state = next;
    options.onChange?.(next);
  };
  const open = (): void => {
    openedAt = options.now();
    become('open');
  };
  return {
    get state() {
      return state;
    },
    allowRequest: () => state === 'closed',
    recordSuccess() {
      consecutive = 0;
      // A late success of a request sent before the breaker opened says little
      // about now; only the probe (half-open) closes an open breaker.
      if (state === 'half-open') become('closed');
    },
    recordFailure() {
      consecutive++;
      if (state === 'half-open') open();
      else if (state === 'closed' && consecutive >= options.failures) open();
    },
    probeDue() {
      if (state !== 'open' || options.now() - openedAt < options.coolDownMs) return false;
      become('half-open');
      return true;
    },
    msUntilProbe() {
      return state === 'open' ? Math.max(0, openedAt + options.coolDownMs - options.now()) : 0;
    },
  };
}
