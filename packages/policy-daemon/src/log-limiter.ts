/**
 * log-limiter - let a repeated log line through at most once per interval, and
 * say how many were held back since, so a flood of one failure (a dead Redis,
 * a full listener) costs a few lines, not one per request.
 */

/** The interval of rate-limited log lines (Redis failures, full listeners). */
export const LOG_INTERVAL_MS = 10_000;

/** A log call allowed at most once per interval; returns how many were suppressed before it, or undefined when suppressed. */
export function createLogLimiter(intervalMs: number, clock: () => number): () => number | undefined {
  let last = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return () => {
    const t = clock();
    if (t - last < intervalMs) {
      suppressed++;
      return undefined;
    }
    last = t;
    const n = suppressed;
    suppressed = 0;
    return n;
  };
}
