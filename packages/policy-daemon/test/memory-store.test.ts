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
