// The CounterStore contract: one suite of window-semantics tests, run against
// every store (memory, Redis, Redis behind the fallback store), so that "same
// window semantics" is a tested fact rather than a claim. Each store is driven
// through the async-tolerant `run` helper, so sync and Promise stores share it.
import * as fc from 'fast-check';
import type { CounterHit, CounterRead, CounterStore, WindowSpec } from '@levee/rules';
import { createMemoryStore } from '../../src/memory-store.js';

export interface ContractStore {
  readonly store: CounterStore;
  /** Release it (close connections, flush keys). */
  dispose?(): Promise<void>;
}

const minute: WindowSpec = { windowMs: 60_000, buckets: 12 };
const T0 = 1_700_000_000_000;

async function apply(store: CounterStore, hits: readonly CounterHit[], now: number): Promise<number[]> {
  return [...(await store.apply(hits, now))];
}

async function peek(store: CounterStore, reads: readonly CounterRead[], now: number): Promise<number[]> {
  return [...(await store.peek(reads, now))];
}

/** describeCounterStoreContract - the shared suite; `make` gives a fresh, empty store per test. */
export function describeCounterStoreContract(name: string, make: () => Promise<ContractStore>): void {
  describe(`CounterStore contract: ${name}`, () => {
    let current: ContractStore | undefined;
    const fresh = async (): Promise<CounterStore> => {
      current = await make();
      return current.store;
    };
    afterEach(async () => {
      await current?.dispose?.();
      current = undefined;
    });

    test('apply adds and returns each total in order; peek reads without adding', async () => {
      const s = await fresh();
      expect(await apply(s, [{ key: 'a', amount: 1, window: minute }, { key: 'b', amount: 5, window: minute }], T0)).toEqual([1, 5]);
      expect(await apply(s, [{ key: 'a', amount: 2, window: minute }], T0 + 1000)).toEqual([3]);
      expect(await peek(s, [{ key: 'a', window: minute }, { key: 'missing', window: minute }], T0 + 2000)).toEqual([3, 0]);
      expect(await peek(s, [{ key: 'a', window: minute }], T0 + 2000)).toEqual([3]);
    });

    test('distinct: each value counts once per window length from its first sighting; reads mark nothing', async () => {
      const s = await fresh();
      const hit = (distinct: string, amount = 1): CounterHit => ({ key: 'user', amount, window: minute, distinct });
      expect(await apply(s, [hit('a.example')], T0)).toEqual([1]);
      expect(await apply(s, [hit('a.example')], T0 + 1000)).toEqual([1]);
      expect(await apply(s, [hit('b.example')], T0 + 2000)).toEqual([2]);
      expect(await apply(s, [hit('c.example', 0)], T0 + 3000)).toEqual([2]);
      expect(await apply(s, [hit('c.example')], T0 + 4000)).toEqual([3]);
      // Another counter key has values of its own.
      expect(await apply(s, [{ key: 'other', amount: 1, window: minute, distinct: 'a.example' }], T0 + 4000)).toEqual([1]);
      // A window later a.example is new again, and the first three events have left the window.
      expect(await apply(s, [hit('a.example')], T0 + 61_000)).toEqual([1]);
    });

    test('the same key twice in one request counts twice', async () => {
      const s = await fresh();
      expect(await apply(s, [{ key: 'k', amount: 1, window: minute }, { key: 'k', amount: 1, window: minute }], T0)).toEqual([
        expect.any(Number),
        2,
      ]);
    });

    test('events leave the window bucket by bucket', async () => {
      const s = await fresh();
      // Bucket width 5s. T0 is a multiple of 5000, so this lands at the start of a bucket.
      await apply(s, [{ key: 'k', amount: 4, window: minute }], T0);
      await apply(s, [{ key: 'k', amount: 1, window: minute }], T0 + 30_000);
      expect(await peek(s, [{ key: 'k', window: minute }], T0 + 59_999)).toEqual([5]);
      // The first bucket leaves when bucket T0/5000 + 12 begins.
      expect(await peek(s, [{ key: 'k', window: minute }], T0 + 60_000)).toEqual([1]);
      expect(await apply(s, [{ key: 'k', amount: 0, window: minute }], T0 + 89_999)).toEqual([1]);
      expect(await apply(s, [{ key: 'k', amount: 1, window: minute }], T0 + 90_000)).toEqual([1]);
      expect(await peek(s, [{ key: 'k', window: minute }], T0 + 10 * 60_000)).toEqual([0]);
    });

    test('a clock step backwards counts into the newest bucket', async () => {
      const s = await fresh();
      await apply(s, [{ key: 'k', amount: 1, window: minute }], T0 + 50_000);
      expect(await apply(s, [{ key: 'k', amount: 1, window: minute }], T0)).toEqual([2]);
      // Both sit in the bucket of T0+50s, so they leave together.
      expect(await peek(s, [{ key: 'k', window: minute }], T0 + 50_000 + 59_999)).toEqual([2]);
      expect(await peek(s, [{ key: 'k', window: minute }], T0 + 50_000 + 60_000)).toEqual([0]);
    });

    test('amounts: whole numbers, fractions floored, nothing for < 1 or non-finite; buckets saturate', async () => {
      const s = await fresh();
      expect(await apply(s, [{ key: 'k', amount: 2.9, window: minute }], T0)).toEqual([2]);
      expect(await apply(s, [{ key: 'k', amount: 0.5, window: minute }], T0)).toEqual([2]);
      expect(await apply(s, [{ key: 'k', amount: Number.NaN, window: minute }], T0)).toEqual([2]);
      expect(await apply(s, [{ key: 'k', amount: -3, window: minute }], T0)).toEqual([2]);
      expect(await apply(s, [{ key: 'big', amount: 4_000_000_000, window: minute }], T0)).toEqual([4_000_000_000]);
      expect(await apply(s, [{ key: 'big', amount: 4_000_000_000, window: minute }], T0)).toEqual([0xffffffff]);
      expect(await apply(s, [{ key: 'big', amount: 1, window: minute }], T0 + 5000)).toEqual([0xffffffff + 1]);
    });

    test('a key seen with another window starts afresh (a reload changed the rule)', async () => {
      const s = await fresh();
      await apply(s, [{ key: 'k', amount: 7, window: minute }], T0);
      expect(await apply(s, [{ key: 'k', amount: 1, window: { windowMs: 60_000, buckets: 6 } }], T0 + 500)).toEqual([1]);
      expect(await apply(s, [{ key: 'k', amount: 1, window: { windowMs: 3_600_000, buckets: 6 } }], T0 + 600)).toEqual([1]);
      expect(await peek(s, [{ key: 'k', window: minute }], T0 + 700)).toEqual([0]);
    });

    test('a window that does not divide into its buckets rounds the width up', async () => {
      const s = await fresh();
      const odd: WindowSpec = { windowMs: 1000, buckets: 3 }; // width 334
      await apply(s, [{ key: 'k', amount: 1, window: odd }], 0);
      expect(await peek(s, [{ key: 'k', window: odd }], 1001)).toEqual([1]);
      expect(await peek(s, [{ key: 'k', window: odd }], 1002)).toEqual([0]);
    });

    // Found by the property below (Redis once wrote nothing for a read of a new counter).
    test('a read of a new counter fixes its newest bucket: a later count from a clock behind lands there', async () => {
      const s = await fresh();
      const tiny: WindowSpec = { windowMs: 7, buckets: 3 }; // width 3
      expect(await apply(s, [{ key: 'a', amount: 0, window: tiny }], T0)).toEqual([0]);
      expect(await apply(s, [{ key: 'a', amount: 1, window: tiny }], T0 - 3)).toEqual([1]); // counts in T0's bucket
      expect(await apply(s, [{ key: 'a', amount: 1, window: tiny }], T0 + 4)).toEqual([2]);
    });

    test('property: equal totals to the memory store for any sequence of hits and times', async () => {
      const spec = fc.constantFrom<WindowSpec>(minute, { windowMs: 10_000, buckets: 4 }, { windowMs: 7, buckets: 3 }, { windowMs: 1000, buckets: 1 });
      const step = fc.record({
        key: fc.constantFrom('a', 'b', 'c'),
        amount: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constant(1.5)),
        // Mostly forward, sometimes backwards (another host's clock, a clock step).
        dt: fc.integer({ min: -20_000, max: 40_000 }),
        peek: fc.boolean(),
      });
      await fc.assert(
        fc.asyncProperty(spec, fc.array(step, { minLength: 1, maxLength: 25 }), async (window, steps) => {
          const s = await fresh();
          const reference = createMemoryStore({ maxKeys: 100 });
          let now = T0;
          for (const st of steps) {
            now += st.dt;
            if (st.peek) {
              const read = [{ key: st.key, window }];
              expect(await peek(s, read, now)).toEqual(reference.peek(read, now));
            } else {
              const hits = [{ key: st.key, amount: st.amount, window }];
              expect(await apply(s, hits, now)).toEqual(reference.apply(hits, now));
            }
          }
          await current?.dispose?.();
          current = undefined;
        }),
        { numRuns: 40 },
      );
    });
  });
}
