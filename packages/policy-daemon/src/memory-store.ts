/**
 * memory-store - the in-process CounterStore: one sliding window per key in an
 * LRU cache bounded by entries, so a flood of random client addresses evicts
 * the coldest keys instead of exhausting memory.
 *
 * LIMITATIONS: counters are per process; several MX hosts each count their
 * own share (the Redis store shares them). An evicted key starts again at 0,
 * which only ever errs towards accepting mail. A reload that changes a
 * rule's window length (same bucket count) reinterprets its buckets once.
 */

import { LRUCache } from 'lru-cache';
import {
  addToWindow,
  createWindowState,
  windowTotal,
  type CounterHit,
  type CounterStore,
  type WindowSpec,
  type WindowState,
} from '@levee/rules';

export interface MemoryStore extends CounterStore {
  apply(hits: readonly CounterHit[], now: number): readonly number[];
  peek(keys: readonly { key: string; window: WindowSpec }[], now: number): readonly number[];
  /** Keys currently held. */
  readonly size: number;
  /** Keys evicted to stay within maxKeys since start. */
  readonly evictions: number;
}

/** createMemoryStore - a store holding at most `maxKeys` windows. */
export function createMemoryStore(options: { readonly maxKeys: number }): MemoryStore {
  let evictions = 0;
  const cache = new LRUCache<string, WindowState>({
    max: options.maxKeys,
    disposeAfter: (_value, _key, reason) => {
      if (reason === 'evict') evictions++;
    },
  });
  return {
    apply(hits, now) {
      const totals: number[] = [];
      for (const hit of hits) {
        let state = cache.get(hit.key);
        // A reload may change a rule's bucket count; its old window cannot be reused.
        if (state === undefined || state.counts.length !== hit.window.buckets) {
          state = createWindowState(hit.window);
          cache.set(hit.key, state);
        }
        totals.push(addToWindow(state, now, hit.amount, hit.window));
      }
      return totals;
    },
    peek(keys, now) {
      return keys.map(({ key, window }) => {
        const state = cache.peek(key);
        return state === undefined ? 0 : windowTotal(state, now, window);
      });
    },
    get size() {
      return cache.size;
    },
    get evictions() {
      return evictions;
    },
  };
}
