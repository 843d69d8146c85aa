/**
 * A Map-based CounterStore test double built on the sliding-window functions:
 * what the daemon's LRU store does, minus the LRU.
 */

import { addToWindow, createWindowState, windowTotal, type CounterHit, type CounterRead, type CounterStore, type WindowState } from '../src/index.js';

export interface MapCounterStore extends CounterStore {
  readonly windows: Map<string, WindowState>;
  apply(hits: readonly CounterHit[], now: number): readonly number[];
  peek(keys: readonly CounterRead[], now: number): readonly number[];
}

export function createMapCounterStore(): MapCounterStore {
  const windows = new Map<string, WindowState>();
  return {
    windows,
    apply(hits, now) {
      return hits.map((h) => {
        let w = windows.get(h.key);
        if (w === undefined) {
          w = createWindowState(h.window);
          windows.set(h.key, w);
        }
        return addToWindow(w, now, h.amount, h.window);
      });
    },
    peek(keys, now) {
      return keys.map((k) => {
        const w = windows.get(k.key);
        return w === undefined ? 0 : windowTotal(w, now, k.window);
      });
    },
  };
}
