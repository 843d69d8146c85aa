/**
 * counter-store - the port every counter store implements (memory LRU, Redis).
 *
 * The rules only ever say which counters a request increments (`CounterHit`)
 * and read back totals; where the windows live is the daemon's business.
 * A store applies a whole request's hits at once so a remote store can do it
 * in one round trip. Stores use the sliding-window functions for arithmetic.
 */

import type { WindowSpec } from './sliding-window.js';

export interface CounterHit {
  readonly key: string;
  readonly amount: number;
  readonly window: WindowSpec;
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
