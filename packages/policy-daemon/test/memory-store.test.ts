import type { WindowSpec } from '@levee/rules';
import { createMemoryStore } from '../src/memory-store.js';

const minute: WindowSpec = { windowMs: 60_000, buckets: 12 };

describe('memory counter store', () => {
  test('apply adds and returns totals in order; peek reads without adding', () => {
    const store = createMemoryStore({ maxKeys: 100 });
    const t = 1_000_000;
    expect(store.apply([{ key: 'a', amount: 1, window: minute }, { key: 'b', amount: 5, window: minute }], t)).toEqual([1, 5]);
    expect(store.apply([{ key: 'a', amount: 2, window: minute }], t + 1000)).toEqual([3]);
    expect(store.peek([{ key: 'a', window: minute }, { key: 'missing', window: minute }], t + 2000)).toEqual([3, 0]);
    expect(store.peek([{ key: 'a', window: minute }], t + 61_000)).toEqual([0]);
  });

  test('a flood of distinct keys stays within maxKeys, evicting the coldest', () => {
    const store = createMemoryStore({ maxKeys: 1000 });
    for (let i = 0; i < 50_000; i++) store.apply([{ key: `ip-${i}`, amount: 1, window: minute }], 1_000_000);
    expect(store.size).toBe(1000);
    expect(store.evictions).toBe(49_000);
    expect(store.peek([{ key: 'ip-49999', window: minute }], 1_000_000)).toEqual([1]);
    expect(store.peek([{ key: 'ip-0', window: minute }], 1_000_000)).toEqual([0]);
  });

  test('a key whose rule changed its bucket count starts a fresh window', () => {
    const store = createMemoryStore({ maxKeys: 10 });
    store.apply([{ key: 'k', amount: 7, window: minute }], 1_000_000);
    expect(store.apply([{ key: 'k', amount: 1, window: { windowMs: 60_000, buckets: 6 } }], 1_000_500)).toEqual([1]);
  });
});

describe('memory store slots', () => {
  test('a slot freed by eviction starts clean for the next key', () => {
    const store = createMemoryStore({ maxKeys: 2 });
    const t = 5_000_000;
    store.apply([{ key: 'a', amount: 5, window: minute }], t);
    store.apply([{ key: 'b', amount: 1, window: minute }], t);
    expect(store.apply([{ key: 'c', amount: 1, window: minute }], t)).toEqual([1]); // evicts a, reuses its slot
    expect(store.peek([{ key: 'a', window: minute }], t)).toEqual([0]);
    expect(store.apply([{ key: 'd', amount: 2, window: minute }], t)).toEqual([2]);
  });

  test('windows of different bucket counts and lengths live side by side', () => {
    const store = createMemoryStore({ maxKeys: 100 });
    const t = 9_000_000;
    const hour = { windowMs: 3_600_000, buckets: 60 };
    expect(store.apply([{ key: 'm', amount: 3, window: minute }, { key: 'h', amount: 7, window: hour }], t)).toEqual([3, 7]);
    expect(store.peek([{ key: 'm', window: minute }, { key: 'h', window: hour }], t + 120_000)).toEqual([0, 7]);
  });
});

describe('memory store keys', () => {
  test('keys come back exactly as given, whatever their prefix, through export and import', () => {
    const store = createMemoryStore({ maxKeys: 1000 });
    const t = 7_000_000;
    // No "|", an empty rule part, "|" twice, non-Latin-1 text, and more than 128 rule prefixes (two-character codes).
    const odd = ['plain-key', '|x', 'a|b|c', 'rule|bücher@例え.jp', 'rule|', '\u0000|\u0001', '\u0081raw'];
    const many = Array.from({ length: 300 }, (_, i) => `rule-${i}|198.51.100.${i % 256}`);
    const all = [...odd, ...many];
    for (const key of all) store.apply([{ key, amount: 2, window: minute }], t);
    expect(store.keysOldestFirst()).toEqual(all);
    expect(store.peek(all.map((key) => ({ key, window: minute })), t)).toEqual(all.map(() => 2));

    // Keys that differ only after the prefix, or only in the prefix, stay apart.
    store.apply([{ key: 'rule-1|198.51.100.1', amount: 1, window: minute }], t);
    expect(store.peek([{ key: 'rule-1|198.51.100.1', window: minute }, { key: 'rule-2|198.51.100.1', window: minute }], t)).toEqual([3, 0]);

    const copy = createMemoryStore({ maxKeys: 1000 });
    for (const key of store.keysOldestFirst()) {
      const entry = store.exportEntry(key, t);
      expect(entry?.key).toBe(key);
      if (entry !== undefined) expect(copy.importEntry(entry, t)).toBe(true);
    }
    expect(copy.keysOldestFirst()).toEqual(store.keysOldestFirst());
    expect(copy.peek([{ key: 'rule|bücher@例え.jp', window: minute }], t)).toEqual([2]);
  });

  test('two rules with the same bucket count but different window lengths keep separate windows', () => {
    const store = createMemoryStore({ maxKeys: 10 });
    const hour: WindowSpec = { windowMs: 3_600_000, buckets: 12 };
    store.apply([{ key: 'k', amount: 4, window: minute }], 1_000_000);
    // The same key under a longer window (a reload changed it): a fresh window, not the minute's buckets misread.
    expect(store.apply([{ key: 'k', amount: 1, window: hour }], 1_000_000)).toEqual([1]);
    expect(store.apply([{ key: 'other', amount: 3, window: hour }], 1_000_000)).toEqual([3]);
    expect(store.exportEntry('other', 1_000_000)).toMatchObject({ windowMs: 3_600_000, counts: expect.any(Array) });
  });
});
