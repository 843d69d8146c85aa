/**
 * memory-store - the in-process CounterStore: one sliding window per key in an
 * LRU cache bounded by entries, so a flood of random client addresses evicts
 * the coldest keys instead of exhausting memory.
 *
 * A counter's identity is its key (`<rule name>|<rendered key>`) plus its
 * window (length and bucket count). A reload or restart that keeps a rule's
 * name, key template and window keeps its counters; one that changes the
 * window starts that rule's counters afresh, because old buckets measured in
 * another width would be misread (a shorter width could even pin the window
 * in the "future" and stop it from expiring). Changing only `max`, the action
 * or the conditions keeps the counts: they still count the same events.
 *
 * The windows can be exported and imported one entry at a time (in LRU
 * order), which counter-snapshot uses to survive restarts.
 *
 * LIMITATIONS: counters are per process; several MX hosts each count their
 * own share (the Redis store shares them). An evicted key starts again at 0,
 * which only ever errs towards accepting mail. Changing a rule's `count`
 * (requests, recipients, bytes) without renaming it keeps the old numbers.
 */

import { LRUCache } from 'lru-cache';
import {
  addToWindow,
  createWindowState,
  MAX_BUCKET_COUNT,
  windowTotal,
  type CounterHit,
  type CounterRead,
  type CounterStore,
  type WindowSpec,
  type WindowState,
} from '@levee/rules';

/** One counter as written to a snapshot: plain data, no typed arrays. */
export interface CounterEntry {
  readonly key: string;
  readonly windowMs: number;
  readonly newest: number;
  /** One count per bucket; its length is the bucket count. */
  readonly counts: readonly number[];
}

export interface MemoryStore extends CounterStore {
  apply(hits: readonly CounterHit[], now: number): readonly number[];
  peek(keys: readonly CounterRead[], now: number): readonly number[];
  /** Keys currently held. */
  readonly size: number;
  /** Keys evicted to stay within maxKeys since start. */
  readonly evictions: number;
  /** Every key held, least recently used first (a copy: safe to iterate while counting goes on). */
  keysOldestFirst(): string[];
  /** The key's counter if held and not yet empty at `now`; does not touch its recency. */
  exportEntry(key: string, now: number): CounterEntry | undefined;
  /** Insert a counter (as most recently used); false when the entry is malformed or empty at `now`. */
  importEntry(entry: CounterEntry, now: number): boolean;
}

interface Held {
  readonly windowMs: number;
  readonly state: WindowState;
}

function sameWindow(held: Held, window: WindowSpec): boolean {
  return held.windowMs === window.windowMs && held.state.counts.length === window.buckets;
}

/** createMemoryStore - a store holding at most `maxKeys` windows. */
export function createMemoryStore(options: { readonly maxKeys: number }): MemoryStore {
  let evictions = 0;
  const cache = new LRUCache<string, Held>({
    max: options.maxKeys,
    disposeAfter: (_value, _key, reason) => {
      if (reason === 'evict') evictions++;
    },
  });
  return {
    apply(hits, now) {
      const totals: number[] = [];
      for (const hit of hits) {
        let held = cache.get(hit.key);
        if (held === undefined || !sameWindow(held, hit.window)) {
          held = { windowMs: hit.window.windowMs, state: createWindowState(hit.window) };
          cache.set(hit.key, held);
        }
        totals.push(addToWindow(held.state, now, hit.amount, hit.window));
      }
      return totals;
    },
    peek(keys, now) {
      return keys.map(({ key, window }) => {
        const held = cache.peek(key);
        return held === undefined || !sameWindow(held, window) ? 0 : windowTotal(held.state, now, window);
      });
    },
    get size() {
      return cache.size;
    },
    get evictions() {
      return evictions;
    },
    keysOldestFirst() {
      return [...cache.rkeys()];
    },
    exportEntry(key, now) {
      const held = cache.peek(key);
      if (held === undefined) return undefined;
      const spec = { windowMs: held.windowMs, buckets: held.state.counts.length };
      if (windowTotal(held.state, now, spec) === 0) return undefined;
      return { key, windowMs: held.windowMs, newest: held.state.newest, counts: Array.from(held.state.counts) };
    },
    importEntry(entry, now) {
      if (!validEntry(entry)) return false;
      const spec = { windowMs: entry.windowMs, buckets: entry.counts.length };
      const state: WindowState = { newest: entry.newest, counts: Uint32Array.from(entry.counts) };
      if (windowTotal(state, now, spec) === 0) return false;
      cache.set(entry.key, { windowMs: entry.windowMs, state });
      return true;
    },
  };
}

const MAX_IMPORTED_BUCKETS = 1000;

/** A snapshot is read from disk: check every field rather than trust it. */
function validEntry(e: CounterEntry): boolean {
  return (
    typeof e.key === 'string' &&
    e.key.length > 0 &&
    Number.isSafeInteger(e.windowMs) &&
    e.windowMs > 0 &&
    Number.isSafeInteger(e.newest) &&
    e.newest >= 0 &&
    Array.isArray(e.counts) &&
    e.counts.length >= 1 &&
    e.counts.length <= MAX_IMPORTED_BUCKETS &&
    e.counts.every((c) => Number.isInteger(c) && c >= 0 && c <= MAX_BUCKET_COUNT)
  );
}
