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
  effectiveWindowMs,
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

/** Slots per chunk of a slab: slabs grow a chunk at a time, so a small site allocates little. */
const CHUNK_SLOTS = 4096;
/** Distinct window shapes (bucket count and length) at most (the slab index is packed into the LRU value). */
const MAX_SLABS = 1024;

/**
 * All windows of one shape (bucket count and length), packed: counts in
 * Uint32Array chunks, the newest bucket index per slot in Float64Array
 * chunks. A key costs its (compacted) string, its LRU entry and one slot,
 * instead of an object, a state object and a typed array of its own
 * (measured: about half the memory per key; docs/benchmarks.md).
 */
interface Slab {
  readonly buckets: number;
  readonly windowMs: number;
  readonly counts: Uint32Array[];
  readonly newest: Float64Array[];
  readonly free: number[];
  size: number;
}

function newSlab(buckets: number, windowMs: number): Slab {
  return { buckets, windowMs, counts: [], newest: [], free: [], size: 0 };
}

function allocate(slab: Slab): number {
  const reused = slab.free.pop();
  if (reused !== undefined) return reused;
  const slot = slab.size++;
  if (slot % CHUNK_SLOTS === 0) {
    slab.counts.push(new Uint32Array(CHUNK_SLOTS * slab.buckets));
    slab.newest.push(new Float64Array(CHUNK_SLOTS));
  }
  return slot;
}

/** The window in `slot` as a WindowState: `counts` is a view onto the slab, so the shared window functions work in place. */
function view(slab: Slab, slot: number): WindowState {
  const chunk = Math.floor(slot / CHUNK_SLOTS);
  const at = (slot % CHUNK_SLOTS) * slab.buckets;
  return { newest: slab.newest[chunk]?.[slot % CHUNK_SLOTS] ?? 0, counts: (slab.counts[chunk] as Uint32Array).subarray(at, at + slab.buckets) };
}

function storeNewest(slab: Slab, slot: number, newest: number): void {
  (slab.newest[Math.floor(slot / CHUNK_SLOTS)] as Float64Array)[slot % CHUNK_SLOTS] = newest;
}

/**
 * Keys are held compacted: the `<rule name>|` part, the same for every key of
 * a rule, is replaced by a one- or two-character code. With a million client
 * addresses that is ~20 bytes less per key (measured: docs/benchmarks.md).
 * Codes are Latin-1 characters, so a compacted key stays a one-byte string.
 * Every held key starts with a code (a key without "|" has the code of the
 * empty prefix), so compacting is one-to-one and expanding gives the key back.
 */
interface KeyCodec {
  compact(key: string): string;
  expand(held: string): string;
}

/** Prefixes at most: codes are 1 character below 0x80, or 2 characters (0x80 | high 7 bits, low 8 bits). */
const MAX_PREFIXES = 0x8000;

function createKeyCodec(): KeyCodec {
  const codeOf = new Map<string, string>();
  const prefixes: string[] = [];
  function code(prefix: string): string {
    let c = codeOf.get(prefix);
    if (c === undefined) {
      const n = prefixes.length;
      // Rule names are bounded by the config; this only fills up after tens of thousands of renames.
      if (n >= MAX_PREFIXES) throw new RangeError(`more than ${MAX_PREFIXES} distinct counter key prefixes`);
      c = n < 0x80 ? String.fromCharCode(n) : String.fromCharCode(0x80 | (n >> 8), n & 0xff);
      prefixes.push(prefix);
      codeOf.set(prefix, c);
    }
    return c;
  }
  return {
    compact(key) {
      const bar = key.indexOf('|');
      return bar < 0 ? code('') + key : code(key.slice(0, bar + 1)) + key.slice(bar + 1);
    },
    expand(held) {
      const first = held.charCodeAt(0);
      if (first < 0x80) return (prefixes[first] ?? '') + held.slice(1);
      return (prefixes[((first & 0x7f) << 8) | held.charCodeAt(1)] ?? '') + held.slice(2);
    },
  };
}

// lru-cache's get/set/peek default their options argument to a fresh `{}` and
// write `status` into it: one allocation per call, three calls per request
// (profiled). One options object per method, reused, avoids that; the only
// field lru-cache writes into it is `status`, which stays undefined unless
// something subscribes to lru-cache's diagnostics channel.
const GET_OPTIONS: LRUCache.GetOptions<string, number, unknown> = {};
const SET_OPTIONS: LRUCache.SetOptions<string, number, unknown> = {};
const PEEK_OPTIONS: LRUCache.PeekOptions<string, number, unknown> = {};

/** createMemoryStore - a store holding at most `maxKeys` windows. */
export function createMemoryStore(options: { readonly maxKeys: number }): MemoryStore {
  let evictions = 0;
  const keys = createKeyCodec();
  const slabs: Slab[] = [];
  // Slab index by bucket count, then by window length.
  const slabIndex = new Map<number, Map<number, number>>();
  // The LRU value packs the slab index and the slot: slot * MAX_SLABS + slab.
  const unpack = (value: number): { slab: Slab; slot: number } => ({
    slab: slabs[value % MAX_SLABS] as Slab,
    slot: Math.floor(value / MAX_SLABS),
  });
  const cache = new LRUCache<string, number>({
    max: options.maxKeys,
    dispose: (value) => {
      // Evicted, replaced or deleted: the slot is free again, zeroed for its next key.
      const { slab, slot } = unpack(value);
      view(slab, slot).counts.fill(0);
      slab.free.push(slot);
    },
    disposeAfter: (_value, _key, reason) => {
      if (reason === 'evict') evictions++;
    },
  });

  function slabFor(buckets: number, windowMs: number): number {
    let byLength = slabIndex.get(buckets);
    if (byLength === undefined) slabIndex.set(buckets, (byLength = new Map()));
    let index = byLength.get(windowMs);
    if (index === undefined) {
      if (slabs.length >= MAX_SLABS) throw new RangeError(`more than ${MAX_SLABS} distinct counter windows`);
      index = slabs.push(newSlab(buckets, windowMs)) - 1;
      byLength.set(windowMs, index);
    }
    return index;
  }

  /** A fresh zeroed window for the compacted key `held` in the slab of its shape; returns the packed value. */
  function place(held: string, buckets: number, windowMs: number, newest: number): number {
    const index = slabFor(buckets, windowMs);
    const slab = slabs[index] as Slab;
    const slot = allocate(slab);
    storeNewest(slab, slot, newest);
    const value = slot * MAX_SLABS + index;
    cache.set(held, value, SET_OPTIONS);
    return value;
  }

  /** The held window of `key` if it was made for `window`. */
  function held(value: number | undefined, window: WindowSpec): { slab: Slab; slot: number } | undefined {
    if (value === undefined) return undefined;
    const h = unpack(value);
    return h.slab.buckets === window.buckets && h.slab.windowMs === window.windowMs ? h : undefined;
  }

  // limit.distinct: when each (key, value) was first seen, expiring one window
  // length later. Made on first use, so sites without distinct limits pay nothing.
  let firstSeen: LRUCache<string, number> | undefined;
  /** Whether `value` is new for the compacted key `key` at `now` (and remember it if so). */
  const isNew = (key: string, value: string, window: WindowSpec, now: number): boolean => {
    firstSeen ??= new LRUCache<string, number>({ max: options.maxKeys });
    const marker = `${key}\u0000${value}`;
    const expires = firstSeen.get(marker, GET_OPTIONS);
    if (expires !== undefined && expires > now) return false;
    firstSeen.set(marker, now + effectiveWindowMs(window), SET_OPTIONS);
    return true;
  };

  return {
    apply(hits, now) {
      const totals: number[] = [];
      for (let i = 0; i < hits.length; i++) {
        const hit = hits[i] as CounterHit;
        const key = keys.compact(hit.key);
        const amount = hit.distinct !== undefined && hit.amount > 0 && !isNew(key, hit.distinct, hit.window, now) ? 0 : hit.amount;
        let h = held(cache.get(key, GET_OPTIONS), hit.window);
        if (h === undefined) h = unpack(place(key, hit.window.buckets, hit.window.windowMs, 0));
        const state = view(h.slab, h.slot);
        totals.push(addToWindow(state, now, amount, hit.window));
        storeNewest(h.slab, h.slot, state.newest);
      }
      return totals;
    },
    peek(reads, now) {
      return reads.map(({ key, window }) => {
        const h = held(cache.peek(keys.compact(key), PEEK_OPTIONS), window);
        return h === undefined ? 0 : windowTotal(view(h.slab, h.slot), now, window);
      });
    },
    get size() {
      return cache.size;
    },
    get evictions() {
      return evictions;
    },
    keysOldestFirst() {
      return Array.from(cache.rkeys(), (k) => keys.expand(k));
    },
    exportEntry(key, now) {
      const value = cache.peek(keys.compact(key), PEEK_OPTIONS);
      if (value === undefined) return undefined;
      const { slab, slot } = unpack(value);
      const state = view(slab, slot);
      if (windowTotal(state, now, { windowMs: slab.windowMs, buckets: slab.buckets }) === 0) return undefined;
      return { key, windowMs: slab.windowMs, newest: state.newest, counts: Array.from(state.counts) };
    },
    importEntry(entry, now) {
      if (!validEntry(entry)) return false;
      const spec = { windowMs: entry.windowMs, buckets: entry.counts.length };
      if (windowTotal({ newest: entry.newest, counts: Uint32Array.from(entry.counts) }, now, spec) === 0) return false;
      const { slab, slot } = unpack(place(keys.compact(entry.key), spec.buckets, entry.windowMs, entry.newest));
      view(slab, slot).counts.set(entry.counts);
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
