import fc from 'fast-check';
import { DEFAULT_TIER_POLICY, INITIAL_TIER_STATE, stepTier, tierCalledFor, TIERS, type LoadReadings, type TierState, type TierThresholds } from '../src/load-tier.js';

const THRESHOLDS: TierThresholds = {
  loadPerCpu: { delay: 2, shed: 4, refuse: 8 },
  queueFreeBytes: { delay: 2e9, shed: 1e9, refuse: 5e8 },
  queueDepth: { shed: 5000, refuse: 20000 },
  stressShare: { delay: 0.5 },
};
const policy = { calmRatio: 0.8, holdMs: 60_000 };

function run(steps: [number, LoadReadings][], start: TierState = INITIAL_TIER_STATE): TierState[] {
  const out: TierState[] = [];
  let s = start;
  for (const [t, r] of steps) {
    s = stepTier(s, r, THRESHOLDS, policy, t);
    out.push(s);
  }
  return out;
}

describe('tierCalledFor', () => {
  test.each([
    [{}, 'normal'],
    [{ loadPerCpu: 1.9 }, 'normal'],
    [{ loadPerCpu: 2 }, 'delay'],
    [{ loadPerCpu: 5 }, 'shed'],
    [{ loadPerCpu: 9 }, 'refuse'],
    [{ queueFreeBytes: 3e9 }, 'normal'],
    [{ queueFreeBytes: 1.5e9 }, 'delay'],
    [{ queueFreeBytes: 1e8 }, 'refuse'],
    [{ loadPerCpu: 2.5, queueDepth: 6000 }, 'shed'],
    [{ stressShare: 0.6 }, 'delay'],
    [{ loadPerCpu: Number.NaN }, 'normal'],
  ] as [LoadReadings, string][])('%j -> %s', (readings, tier) => {
    expect(tierCalledFor(readings, THRESHOLDS).tier).toBe(tier);
  });
  test('names the signal that called for the tier', () => {
    expect(tierCalledFor({ loadPerCpu: 3, queueDepth: 25000 }, THRESHOLDS)).toEqual({ tier: 'refuse', cause: 'queueDepth' });
  });
});

describe('stepTier', () => {
  test('escalates at once, straight to the tier called for', () => {
    const [s] = run([[1000, { loadPerCpu: 10 }]]);
    expect(s).toEqual({ tier: 'refuse', since: 1000, calmSince: undefined, cause: 'loadPerCpu' });
  });

  test('steps down one tier at a time, each after holdMs of calm', () => {
    const states = run([
      [0, { loadPerCpu: 10 }], // refuse
      [10_000, { loadPerCpu: 1 }], // calm starts
      [69_999, { loadPerCpu: 1 }], // not yet
      [70_000, { loadPerCpu: 1 }], // -> shed
      [100_000, { loadPerCpu: 1 }],
      [130_000, { loadPerCpu: 1 }], // calm since 100 000 ... not 60 s yet
      [160_000, { loadPerCpu: 1 }], // -> delay
      [220_000, { loadPerCpu: 1 }],
      [280_000, { loadPerCpu: 1 }], // -> normal
    ]);
    expect(states.map((s) => s.tier)).toEqual(['refuse', 'refuse', 'refuse', 'shed', 'shed', 'shed', 'delay', 'delay', 'normal']);
  });

  test('hysteresis: a reading just under the threshold is not calm; a blip above it restarts the wait', () => {
    const states = run([
      [0, { loadPerCpu: 4.5 }], // shed
      [10_000, { loadPerCpu: 3.9 }], // below 4 but above 0.8*4=3.2: not calm
      [80_000, { loadPerCpu: 3.9 }], // still shed
      [90_000, { loadPerCpu: 3 }], // calm from here
      [120_000, { loadPerCpu: 3.5 }], // not calm again
      [160_000, { loadPerCpu: 3 }], // calm restarts
      [219_999, { loadPerCpu: 3 }],
      [220_000, { loadPerCpu: 3 }], // -> delay (3 >= 0.8*2: delay not calm, so it stays in delay)
    ]);
    expect(states.map((s) => s.tier)).toEqual(['shed', 'shed', 'shed', 'shed', 'shed', 'shed', 'shed', 'delay']);
  });

  test('never changes without a signal; the default policy has a sane hold', () => {
    expect(run([[5, {}]])[0]).toBe(INITIAL_TIER_STATE);
    expect(DEFAULT_TIER_POLICY.holdMs).toBeGreaterThanOrEqual(30_000);
  });

  test('property: the tier is never below what the readings call for, and falls at most one step per sample', () => {
    const reading = fc.record({ loadPerCpu: fc.double({ min: 0, max: 12, noNaN: true }), queueDepth: fc.integer({ min: 0, max: 30000 }) });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 120_000 }), reading), { maxLength: 40 }), (samples) => {
        let s = INITIAL_TIER_STATE;
        let t = 0;
        for (const [dt, r] of samples) {
          t += dt;
          const next = stepTier(s, r, THRESHOLDS, policy, t);
          const called = TIERS.indexOf(tierCalledFor(r, THRESHOLDS).tier);
          expect(TIERS.indexOf(next.tier)).toBeGreaterThanOrEqual(called);
          expect(TIERS.indexOf(next.tier)).toBeGreaterThanOrEqual(TIERS.indexOf(s.tier) - 1);
          s = next;
        }
      }),
      { numRuns: 300 },
    );
  });
});
