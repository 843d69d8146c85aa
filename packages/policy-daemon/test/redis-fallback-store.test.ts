// The circuit breaker (pure state machine, injected clock) and the fallback
// store around a scripted fake shared store: deadline, fallback, breaker,
// background probe, fail_closed marking. No Redis needed.
import { isDegraded, type CounterHit } from '@levee/rules';
import { createCircuitBreaker, type BreakerState } from '../src/circuit-breaker.js';
import { createFallbackStore, type FallbackEvent } from '../src/fallback-store.js';
import { createMemoryStore } from '../src/memory-store.js';

describe('circuit breaker', () => {
  test('opens after N consecutive failures, probes after the cool-down, closes on a probe success', () => {
    let t = 0;
    const changes: BreakerState[] = [];
    const b = createCircuitBreaker({ failures: 3, coolDownMs: 5000, now: () => t, onChange: (s) => changes.push(s) });
    b.recordFailure();
    b.recordFailure();
    b.recordSuccess(); // not consecutive any more
    b.recordFailure();
    b.recordFailure();
    expect(b.state).toBe('closed');
    b.recordFailure();
    expect(b.state).toBe('open');
    expect(b.allowRequest()).toBe(false);
    expect(b.msUntilProbe()).toBe(5000);
    t = 4999;
    expect(b.probeDue()).toBe(false);
    b.recordSuccess(); // a late reply of an old request does not close it
    expect(b.state).toBe('open');
    t = 5000;
    expect(b.probeDue()).toBe(true);
    expect(b.state).toBe('half-open');
    expect(b.allowRequest()).toBe(false); // requests never wait for the probe
    expect(b.probeDue()).toBe(false); // one probe at a time
    b.recordFailure();
    expect(b.state).toBe('open');
    expect(b.msUntilProbe()).toBe(5000);
    t = 10_000;
    expect(b.probeDue()).toBe(true);
    b.recordSuccess();
    expect(b.state).toBe('closed');
    expect(b.allowRequest()).toBe(true);
    expect(changes).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
  });
});

describe('fallback store', () => {
  const w = { windowMs: 60_000, buckets: 12 };
  const hit: CounterHit = { key: 'k', amount: 1, window: w };
  const T = 1_700_000_000_000;

  /** A shared store whose behaviour the test sets: answer, fail, or never answer. */
  function fakeShared() {
    const mode: { apply: 'ok' | 'fail' | 'hang'; probe: 'ok' | 'fail' | 'hang' } = { apply: 'ok', probe: 'ok' };
    let probes = 0;
    const run = <T>(m: 'ok' | 'fail' | 'hang', value: T): Promise<T> =>
      m === 'ok' ? Promise.resolve(value) : m === 'fail' ? Promise.reject(new Error('ECONNREFUSED')) : new Promise<T>(() => undefined);
    return {
      mode,
      get probes() {
        return probes;
      },
      shared: {
        apply: (hits: readonly CounterHit[]) => run(mode.apply, hits.map(() => 1000)),
        peek: () => run(mode.apply, [1000]),
        probe: () => {
          probes++;
          return run(mode.probe, undefined);
        },
      },
    };
  }

  function setup(timeoutMs = 30, coolDownMs = 100) {
    const fake = fakeShared();
    const events: FallbackEvent[] = [];
    const local = createMemoryStore({ maxKeys: 100 });
    const store = createFallbackStore({
      shared: fake.shared,
      local,
      breaker: createCircuitBreaker({ failures: 2, coolDownMs, now: () => performance.now() }),
      timeoutMs,
      report: (e) => events.push(e),
    });
    return { fake, events, local, store };
  }

  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  test('healthy: the shared totals decide, and the local store counts too', async () => {
    const { store, local, events } = setup();
    const totals = await store.apply([hit], T);
    expect(totals).toEqual([1000]);
    expect(isDegraded(totals)).toBe(false);
    expect(local.peek([{ key: 'k', window: w }], T)).toEqual([1]);
    expect(events).toEqual([]);
    store.close();
  });

  test('a hanging shared store costs one deadline, then local totals marked degraded; the breaker opens; a probe closes it', async () => {
    const { store, fake, events } = setup(30, 100);
    fake.mode.apply = 'hang';
    fake.mode.probe = 'hang';
    const t0 = performance.now();
    const first = await store.apply([hit], T);
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(25);
    expect(waited).toBeLessThan(30 + 200);
    expect([...first]).toEqual([1]);
    expect(isDegraded(first)).toBe(true);
    await store.apply([hit], T);
    expect(store.degraded).toBe(true);
    // Open: answered synchronously (no promise), from local counts.
    const third = store.apply([hit], T);
    expect(Array.isArray(third)).toBe(true);
    expect([...(third as readonly number[])]).toEqual([3]);
    expect(events.map((e) => (e.kind === 'fallback' ? `fallback:${e.reason}` : e.kind))).toEqual([
      'fallback:timeout',
      'fallback:timeout',
      'degraded',
      'fallback:circuit_open',
    ]);
    // Probes run in the background every cool-down while the store hangs.
    for (let i = 0; i < 100 && fake.probes < 2; i++) await sleep(20);
    expect(fake.probes).toBeGreaterThanOrEqual(2);
    expect(store.degraded).toBe(true);
    fake.mode.apply = 'ok';
    fake.mode.probe = 'ok';
    for (let i = 0; i < 100 && store.degraded; i++) await sleep(20);
    expect(store.degraded).toBe(false);
    expect(events.at(-1)).toEqual({ kind: 'recovered' });
    expect(await store.apply([hit], T)).toEqual([1000]);
    store.close();
  });

  test('an error is a fallback at once, without waiting for the deadline', async () => {
    const { store, fake, events } = setup(5000, 100);
    fake.mode.apply = 'fail';
    const t0 = performance.now();
    const totals = await store.apply([hit], T);
    expect(performance.now() - t0).toBeLessThan(200);
    expect(isDegraded(totals)).toBe(true);
    expect(events[0]).toMatchObject({ kind: 'fallback', reason: 'error' });
    store.close();
  });

  test('close() stops the background probe', async () => {
    const { store, fake } = setup(10, 50);
    fake.mode.apply = 'fail';
    fake.mode.probe = 'fail';
    await store.apply([hit], T);
    await store.apply([hit], T);
    store.close();
    const before = fake.probes;
    await sleep(300);
    expect(fake.probes).toBe(before);
  });
});
