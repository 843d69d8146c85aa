import * as fc from 'fast-check';
import {
  addToWindow,
  advanceWindow,
  bucketWidth,
  createWindowState,
  effectiveWindowMs,
  MAX_BUCKET_COUNT,
  retryAfterMs,
  windowTotal,
  type WindowSpec,
} from '../src/index.js';

const MIN: WindowSpec = { windowMs: 60_000, buckets: 12 }; // 12 x 5s
const T0 = 1_700_000_000_000; // a bucket boundary: divisible by 5000

describe('window geometry', () => {
  test('width is windowMs/buckets, rounded up when not divisible', () => {
    expect(bucketWidth(MIN)).toBe(5000);
    expect(effectiveWindowMs(MIN)).toBe(60_000);
    expect(bucketWidth({ windowMs: 1000, buckets: 7 })).toBe(143);
    expect(effectiveWindowMs({ windowMs: 1000, buckets: 7 })).toBe(1001);
  });
});

describe('edges', () => {
  test('an event exactly windowMs ago has dropped out; 1 ms less is still in', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, 1, MIN);
    expect(windowTotal(s, T0 + 60_000 - 1, MIN)).toBe(1);
    expect(windowTotal(s, T0 + 60_000, MIN)).toBe(0);
  });

  test('bucketed approximation: an event mid-bucket is kept until its bucket leaves', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0 + 4999, 1, MIN); // last ms of the first bucket
    expect(windowTotal(s, T0 + 59_999, MIN)).toBe(1);
    expect(windowTotal(s, T0 + 60_000, MIN)).toBe(0); // only 55001 ms later, but its bucket left
  });

  test('one bucket boundary: the oldest bucket leaves, the others stay', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, 3, MIN); // bucket 0
    addToWindow(s, T0 + 5000, 4, MIN); // bucket 1
    addToWindow(s, T0 + 55_000, 5, MIN); // bucket 11, the newest
    expect(windowTotal(s, T0 + 59_999, MIN)).toBe(12);
    expect(windowTotal(s, T0 + 60_000, MIN)).toBe(9); // bucket 0 gone
    expect(windowTotal(s, T0 + 65_000, MIN)).toBe(5); // bucket 1 gone
    advanceWindow(s, T0 + 60_000, MIN);
    expect(windowTotal(s, T0 + 60_000, MIN)).toBe(9);
    expect(addToWindow(s, T0 + 60_001, 1, MIN)).toBe(10);
  });

  test('windowTotal does not modify the state', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, 2, MIN);
    const before = { newest: s.newest, counts: [...s.counts] };
    windowTotal(s, T0 + 1e9, MIN);
    expect({ newest: s.newest, counts: [...s.counts] }).toEqual(before);
  });

  test('a huge jump clears everything', () => {
    const s = createWindowState(MIN);
    for (let i = 0; i < 12; i++) addToWindow(s, T0 + i * 5000, 10, MIN);
    expect(windowTotal(s, T0 + 55_000, MIN)).toBe(120);
    const far = T0 + 1e12;
    expect(windowTotal(s, far, MIN)).toBe(0);
    advanceWindow(s, far, MIN);
    expect([...s.counts].every((c) => c === 0)).toBe(true);
    expect(addToWindow(s, far, 1, MIN)).toBe(1);
  });

  test('time going backwards neither loses nor invents counts', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0 + 30_000, 5, MIN);
    // A clock step back by 10 minutes: the counts stay visible...
    expect(windowTotal(s, T0 - 600_000, MIN)).toBe(5);
    // ...an add lands in the newest bucket...
    expect(addToWindow(s, T0 - 600_000, 2, MIN)).toBe(7);
    expect(s.newest).toBe(Math.floor((T0 + 30_000) / 5000));
    // ...and all of it expires with the newest bucket when time is back.
    expect(windowTotal(s, T0 + 30_000 + 59_999 - 4999, MIN)).toBe(7);
    expect(windowTotal(s, T0 + 90_000, MIN)).toBe(0);
  });

  test('saturates at 2^32-1 instead of wrapping', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, MAX_BUCKET_COUNT - 1, MIN);
    expect(addToWindow(s, T0, 10, MIN)).toBe(MAX_BUCKET_COUNT);
    expect(addToWindow(s, T0, Number.MAX_SAFE_INTEGER, MIN)).toBe(MAX_BUCKET_COUNT);
    expect(addToWindow(s, T0 + 5000, 1, MIN)).toBe(MAX_BUCKET_COUNT + 1); // the total is a plain number
  });

  test('junk amounts and times are ignored, not stored', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, 3, MIN);
    expect(addToWindow(s, T0, -5, MIN)).toBe(3);
    expect(addToWindow(s, T0, Number.NaN, MIN)).toBe(3);
    expect(addToWindow(s, T0, Number.POSITIVE_INFINITY, MIN)).toBe(3);
    expect(addToWindow(s, T0, 0, MIN)).toBe(3);
    expect(addToWindow(s, T0, 1.9, MIN)).toBe(4);
    expect(addToWindow(s, Number.NaN, 1, MIN)).toBe(5);
    expect(s.newest).toBe(T0 / 5000);
  });
});

describe('retryAfterMs', () => {
  test('0 when the next event is allowed', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, 4, MIN);
    expect(retryAfterMs(s, T0, MIN, 5)).toBe(0);
  });

  test('waits for the oldest buckets to leave until total <= limit-1', () => {
    const s = createWindowState(MIN);
    addToWindow(s, T0, 3, MIN); // leaves at T0+60000
    addToWindow(s, T0 + 10_000, 3, MIN); // leaves at T0+70000
    const now = T0 + 20_000;
    expect(retryAfterMs(s, now, MIN, 6)).toBe(40_000); // 6 -> need <= 5: first bucket leaving suffices
    expect(retryAfterMs(s, now, MIN, 3)).toBe(50_000); // need <= 2: both must leave
    expect(retryAfterMs(s, now, MIN, 7)).toBe(0);
    // At the predicted moment the next event is indeed within the limit.
    expect(addToWindow(s, now + 40_000, 1, MIN)).toBeLessThanOrEqual(6);
  });

  test('limit 0 can never be met', () => {
    const s = createWindowState(MIN);
    expect(retryAfterMs(s, T0, MIN, 0)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('properties', () => {
  const spec = fc.record({ windowMs: fc.integer({ min: 1, max: 100_000 }), buckets: fc.integer({ min: 1, max: 60 }) }).filter((s) => s.windowMs >= s.buckets);
  const events = fc.array(fc.record({ dt: fc.integer({ min: -5000, max: 50_000 }), amount: fc.integer({ min: 0, max: 1000 }) }), { maxLength: 60 });

  test('the total never exceeds the sum added, never goes negative, and counts every add within windowMs - width', () => {
    fc.assert(
      // Start well above 0 so that steps back never reach negative (pre-epoch) times.
      fc.property(spec, events, fc.integer({ min: 1e6, max: 1e12 }), (sp, evs, start) => {
        const s = createWindowState(sp);
        const width = bucketWidth(sp);
        let now = start;
        let clock = Number.NEGATIVE_INFINITY; // the latest time seen: what the window treats as now
        const added: { at: number; amount: number }[] = [];
        for (const e of evs) {
          now += e.dt;
          clock = Math.max(clock, now);
          const total = addToWindow(s, now, e.amount, sp);
          added.push({ at: clock, amount: e.amount });
          const sum = added.reduce((a, x) => a + x.amount, 0);
          expect(total).toBeGreaterThanOrEqual(0);
          expect(total).toBeLessThanOrEqual(sum);
          const recent = added.filter((x) => clock - x.at < sp.windowMs - width).reduce((a, x) => a + x.amount, 0);
          expect(total).toBeGreaterThanOrEqual(recent);
          if (added.every((x) => clock - x.at < sp.windowMs - width)) expect(total).toBe(sum);
        }
      }),
    );
  });

  test('retryAfterMs is exact: at that time the next event fits, 1 ms earlier it does not', () => {
    fc.assert(
      fc.property(spec, events, fc.integer({ min: 1, max: 3000 }), (sp, evs, limit) => {
        const s = createWindowState(sp);
        let now = 1_000_000;
        for (const e of evs) {
          now += Math.abs(e.dt);
          addToWindow(s, now, e.amount, sp);
        }
        const wait = retryAfterMs(s, now, sp, limit);
        expect(windowTotal(s, now + wait, sp)).toBeLessThanOrEqual(limit - 1);
        if (wait > 0) expect(windowTotal(s, now + wait - 1, sp)).toBeGreaterThan(limit - 1);
      }),
    );
  });
});
