/**
 * counter-store - the port every counter store implements (memory LRU, Redis).
 *
 * The rules only ever say which counters a request increments (`CounterHit`)
 * and read back totals; where the windows live is the daemon's business.
 * A store applies a whole request's hits at once so a remote store can do it
 * in one round trip. Stores use the sliding-window functions for arithmetic.
 *
 * A store that shares counters (Redis) and had to answer from its local
 * fallback marks the totals it returns with `markDegraded`; decide() then lets
 * `on_store_error: fail_closed` rules tempfail. The mark is a property on the
 * array (like a RegExp match's `index`) so the port's shape stays the same.
 */

import type { WindowSpec } from './sliding-window.js';

export interface CounterHit {
  readonly key: string;
  readonly amount: number;
  readonly window: WindowSpec;
  /**
   * Counting distinct values (limit.distinct): add `amount` only when this
   * value was not already seen for `key` within the last window length (a
   * store remembers each value from its first sighting for one window).
   */
  readonly distinct?: string;
}

export interface CounterRead {
  readonly key: string;
  readonly window: WindowSpec;
}

export interface CounterStore {
  /**
   * Add each hit's amount to its key's window at `now` and return each key's
   * total after the add, in order. Sync for memory, a Promise for remote stores.
   */
  apply(hits: readonly CounterHit[], now: number): readonly number[] | Promise<readonly number[]>;
  /** Read totals without adding. */
  peek(keys: readonly CounterRead[], now: number): readonly number[] | Promise<readonly number[]>;
}

/** Totals counted locally because the shared store failed for this request. */
export type DegradedTotals = readonly number[] & { readonly degraded: true };

/** markDegraded - tag `totals` as counted locally (the array itself, not a copy). */
export function markDegraded(totals: readonly number[]): DegradedTotals {
  Object.defineProperty(totals, 'degraded', { value: true, enumerable: false });
  return totals as DegradedTotals;
}

/** isDegraded - whether a store marked these totals as a local fallback. */
export function isDegraded(totals: readonly number[]): boolean {
  return (totals as Partial<DegradedTotals>).degraded === true;
}
