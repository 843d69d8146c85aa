/**
 * fallback-store - the CounterStore the daemon decides with when counters are
 * shared: a remote store (Redis) bounded by a per-request deadline, a local
 * memory store that always counts too, and a circuit breaker between them.
 *
 * Failure model (all timings configurable, see docs/redis.md):
 * - Healthy (breaker closed): every request counts locally and in the shared
 *   store; the shared totals decide. The local store thus always holds this
 *   host's own share, and a fallback starts from that, not from zero.
 * - A shared call that fails or misses the deadline (`timeoutMs`): the
 *   request is decided at once on the local totals, marked degraded (so
 *   `on_store_error: fail_closed` limits tempfail), and the breaker counts a
 *   failure. No request waits longer than the deadline.
 * - `failures` consecutive failures open the breaker: requests no longer touch
 *   the shared store and are answered synchronously from the local one.
 * - In the background, every cool-down, one probe (PING, same deadline) tests
 *   the shared store; a success closes the breaker and shared counting
 *   resumes; a failure keeps it open for another cool-down.
 * Every fallback and every state change is reported through `report`, which
 * the daemon turns into metrics and rate-limited log lines.
 *
 * LIMITATIONS: while degraded each host enforces the limits on its own counts
 * only (N hosts can together let through up to N times a limit). Counts made
 * locally during an outage are not merged into the shared store afterwards.
 */

import { markDegraded, type CounterHit, type CounterRead, type CounterStore } from '@levee/rules';
import type { CircuitBreaker } from './circuit-breaker.js';
import type { MemoryStore } from './memory-store.js';
import type { RedisCounterStore } from './redis-store.js';

/** Why a request was answered from local counts. */
export type FallbackReason = 'timeout' | 'error' | 'circuit_open';

export type FallbackEvent =
  | { readonly kind: 'fallback'; readonly reason: FallbackReason; readonly error?: unknown }
  | { readonly kind: 'degraded' | 'recovered' }
  | { readonly kind: 'probe-failed'; readonly error: unknown };

export interface FallbackStore extends CounterStore {
  /** True while the breaker is not closed (requests are counted locally). */
  readonly degraded: boolean;
  /** Stop the background probe. */
  close(): void;
}

export interface FallbackStoreOptions {
  readonly shared: Pick<RedisCounterStore, 'apply' | 'peek' | 'probe'>;
  readonly local: MemoryStore;
  readonly breaker: CircuitBreaker;
  readonly timeoutMs: number;
  readonly report: (event: FallbackEvent) => void;
}

class DeadlineError extends Error {
  readonly code = 'LEVEE_STORE_DEADLINE';
  constructor(ms: number) {
    super(`shared counter store did not answer within ${ms}ms`);
  }
}

/**
 * What `promise` settles to, through `onValue` or `onFailure`, or `onFailure`
 * with a DeadlineError after `ms`: the caller never waits longer. A late
 * settlement is ignored. One promise, one timer: this is on the hot path.
 */
function settleWithin<T, R>(promise: Promise<T>, ms: number, onValue: (value: T) => R, onFailure: (error: unknown) => R): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => R): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        resolve(outcome());
      } catch (error) {
        reject(error); // a throwing callback rejects, as a throw in then() would, instead of escaping the timer
      }
    };
    const timer = setTimeout(() => settle(() => onFailure(new DeadlineError(ms))), ms);
    promise.then(
      (value) => settle(() => onValue(value)),
      (error: unknown) => settle(() => onFailure(error)),
    );
  });
}

/** Our deadline, or ioredis's commandTimeout (set to the same value) firing first. */
function isTimeout(error: unknown): boolean {
  return error instanceof DeadlineError || (error instanceof Error && error.message === 'Command timed out');
}

/** createFallbackStore - see the module header. */
export function createFallbackStore(options: FallbackStoreOptions): FallbackStore {
  const { shared, local, breaker, timeoutMs, report } = options;
  let probeTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let wasDegraded = false;

  function noteState(): void {
    const degraded = breaker.state !== 'closed';
    if (degraded === wasDegraded) return;
    wasDegraded = degraded;
    report({ kind: degraded ? 'degraded' : 'recovered' });
    if (degraded) scheduleProbe();
  }

  function scheduleProbe(): void {
    if (closed || probeTimer !== undefined) return;
    // +1: the breaker compares elapsed >= cool-down; a timer may fire a hair early.
    probeTimer = setTimeout(runProbe, breaker.msUntilProbe() + 1);
    probeTimer.unref();
  }

  function runProbe(): void {
    probeTimer = undefined;
    if (closed) return;
    if (!breaker.probeDue()) {
      if (breaker.state === 'open') scheduleProbe();
      return;
    }
    void settleWithin(
      shared.probe(),
      timeoutMs,
      () => {
        breaker.recordSuccess();
        noteState();
      },
      (error: unknown) => {
        breaker.recordFailure();
        report({ kind: 'probe-failed', error });
        scheduleProbe();
      },
    );
  }

  function failed(reason: FallbackReason, error: unknown): void {
    breaker.recordFailure();
    report({ kind: 'fallback', reason, error });
    noteState();
  }

  return {
    get degraded() {
      return breaker.state !== 'closed';
    },
    apply(hits: readonly CounterHit[], now: number) {
      const localTotals = local.apply(hits, now);
      if (!breaker.allowRequest()) {
        report({ kind: 'fallback', reason: 'circuit_open' });
        return markDegraded(localTotals);
      }
      let sent: Promise<readonly number[]>;
      try {
        sent = shared.apply(hits, now);
      } catch (error) {
        failed('error', error);
        return markDegraded(localTotals);
      }
      return settleWithin(
        sent,
        timeoutMs,
        (totals) => {
          breaker.recordSuccess();
          return totals;
        },
        (error: unknown) => {
          failed(isTimeout(error) ? 'timeout' : 'error', error);
          return markDegraded(localTotals);
        },
      );
    },
    peek(keys: readonly CounterRead[], now: number) {
      if (!breaker.allowRequest()) return local.peek(keys, now);
      return settleWithin(shared.peek(keys, now), timeoutMs, (totals) => totals, () => local.peek(keys, now));
    },
    close() {
      closed = true;
      if (probeTimer !== undefined) clearTimeout(probeTimer);
      probeTimer = undefined;
    },
  };
}
