/**
 * sliding-window - the arithmetic of a sliding-window counter, as pure
 * functions over plain data, shared by every counter store (memory, Redis).
 *
 * A window of `windowMs` is a ring of `buckets` sub-windows of
 * `width = ceil(windowMs / buckets)` ms. Bucket `i` covers the absolute time
 * [i*width, (i+1)*width). The window "ending at now" is the `buckets` buckets
 * ending with bucket floor(now/width). So an event stays counted for between
 * (buckets-1)*width and buckets*width ms: the usual bucketed approximation of
 * a true sliding log, at O(buckets) memory per key.
 *
 * Decisions and limits:
 * - When windowMs is not divisible by buckets the width is rounded up, so the
 *   effective window (width*buckets) is slightly longer than asked, never
 *   shorter: a rate limit must not become laxer than configured.
 * - Time never goes backwards for a window: an earlier `now` than the newest
 *   bucket seen (clock step, another MX host slightly behind) is treated as
 *   that newest bucket. Counts are then neither lost nor invented.
 * - Buckets saturate at 2^32-1 instead of wrapping.
 * - A non-finite `now` or amount is ignored rather than corrupting state.
 */

export interface WindowSpec {
  readonly windowMs: number;
  readonly buckets: number;
}

/** Per-key state. `counts` is a ring indexed by absolute bucket index modulo its length. */
export interface WindowState {
  /** Absolute index floor(t/width) of the newest bucket written or advanced to. */
  newest: number;
  readonly counts: Uint32Array;
}

export const DEFAULT_BUCKETS = 12;
export const MAX_BUCKET_COUNT = 0xffffffff;

/** Bucket width in ms: ceil(windowMs / buckets), at least 1. */
export function bucketWidth(spec: WindowSpec): number {
  return Math.max(1, Math.ceil(spec.windowMs / spec.buckets));
}

/** The window actually covered: width * buckets (>= windowMs). */
export function effectiveWindowMs(spec: WindowSpec): number {
  return bucketWidth(spec) * spec.buckets;
}

export function createWindowState(spec: WindowSpec): WindowState {
  return { newest: 0, counts: new Uint32Array(spec.buckets) };
}

function slot(index: number, n: number): number {
  const r = index % n;
  return r < 0 ? r + n : r;
}

/** floor(now/width), or the state's newest bucket when now is older (or not finite). */
function effectiveIndex(state: WindowState, now: number, width: number): number {
  if (!Number.isFinite(now)) return state.newest;
  const b = Math.floor(now / width);
  return b > state.newest ? b : state.newest;
}

/** Zero the buckets that slid out of the window ending at `now`, and make it the newest. */
export function advanceWindow(state: WindowState, now: number, spec: WindowSpec): void {
  const n = state.counts.length;
  const b = effectiveIndex(state, now, bucketWidth(spec));
  const steps = b - state.newest;
  if (steps <= 0) return;
  if (steps >= n) {
    state.counts.fill(0);
  } else {
    for (let i = 1; i <= steps; i++) state.counts[slot(state.newest + i, n)] = 0;
  }
  state.newest = b;
}

/** Add `amount` at `now` (after advancing) and return the window total. */
export function addToWindow(state: WindowState, now: number, amount: number, spec: WindowSpec): number {
  advanceWindow(state, now, spec);
  if (Number.isFinite(amount) && amount >= 1) {
    const s = slot(state.newest, state.counts.length);
    const sum = (state.counts[s] ?? 0) + Math.floor(amount);
    state.counts[s] = sum > MAX_BUCKET_COUNT ? MAX_BUCKET_COUNT : sum;
  }
  return windowTotal(state, now, spec);
}

/** Sum of the buckets inside the window ending at `now`. Does not modify the state. */
export function windowTotal(state: WindowState, now: number, spec: WindowSpec): number {
  const n = state.counts.length;
  const b = effectiveIndex(state, now, bucketWidth(spec));
  // b >= newest, so the buckets still in the window are b-n+1 .. newest.
  let total = 0;
  for (let i = b - n + 1; i <= state.newest; i++) {
    total += state.counts[slot(i, n)] ?? 0;
  }
  return total;
}

/**
 * Milliseconds until the total drops to `limit - 1` or less, so one more event
 * would stay within `limit`. 0 when that is already so; Infinity when
 * `limit` < 1 (no amount of waiting allows an event).
 */
export function retryAfterMs(state: WindowState, now: number, spec: WindowSpec, limit: number): number {
  if (!(limit >= 1)) return Number.POSITIVE_INFINITY;
  const n = state.counts.length;
  const width = bucketWidth(spec);
  const b = effectiveIndex(state, now, width);
  let total = windowTotal(state, now, spec);
  if (total <= limit - 1) return 0;
  for (let i = b - n + 1; i <= state.newest; i++) {
    total -= state.counts[slot(i, n)] ?? 0;
    if (total <= limit - 1) {
      // Bucket i leaves the window when bucket i+n begins.
      const at = (i + n) * width;
      const base = Number.isFinite(now) ? now : b * width;
      return Math.max(0, at - base);
    }
  }
  return 0; // unreachable: with every bucket gone the total is 0 <= limit-1
}
