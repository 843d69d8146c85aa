import {
  compileRules,
  containStateTtlMs,
  containStep,
  decideWithStore,
  formatConfigIssue,
  liveContainState,
  loadConfig,
  planCounters,
  type ContainmentReader,
  type ContainPolicy,
  type ContainState,
  type Decision,
  type Facts,
  type Ruleset,
} from '../src/index.js';
import { createMapCounterStore, type MapCounterStore } from './map-counter-store.js';

const MIN = 60_000;
const policy: ContainPolicy = { graceMs: 10 * MIN, holdMs: 60 * MIN, windowMs: 30 * MIN };
const T = 1_700_000_000_000;

describe('containStep: warn, then hold after the grace period, then expire', () => {
  test('under the limit and never tripped: nothing happens, nothing is written', () => {
    expect(containStep(undefined, false, T, policy)).toEqual({ effect: 'none', next: undefined, changed: false });
  });

  test('the first trip warns and starts the grace period', () => {
    expect(containStep(undefined, true, T, policy)).toEqual({
      effect: 'warning',
      next: { phase: 'warned', since: T, lastTrip: T },
      changed: true,
      event: 'warned',
    });
  });

  test('tripping again within the grace period only warns (no second event)', () => {
    const warned: ContainState = { phase: 'warned', since: T, lastTrip: T };
    const s = containStep(warned, true, T + 5 * MIN, policy);
    expect(s).toEqual({ effect: 'warning', next: { phase: 'warned', since: T, lastTrip: T + 5 * MIN }, changed: true });
  });

  test('still over the limit once the grace period is over: held for hold_for', () => {
    const warned: ContainState = { phase: 'warned', since: T, lastTrip: T + 5 * MIN };
    expect(containStep(warned, true, T + 10 * MIN, policy)).toEqual({
      effect: 'holding',
      next: { phase: 'held', since: T + 10 * MIN, until: T + 70 * MIN },
      changed: true,
      event: 'held',
    });
  });

  test('while held every request is held, under the limit or not, and the state is not rewritten', () => {
    const held: ContainState = { phase: 'held', since: T, until: T + 60 * MIN };
    expect(containStep(held, false, T + 59 * MIN, policy)).toEqual({ effect: 'holding', next: held, changed: false });
    expect(containStep(held, true, T + 1, policy)).toEqual({ effect: 'holding', next: held, changed: false });
  });

  test('the hold expires by itself: the next request under the limit goes through and the state is dropped', () => {
    const held: ContainState = { phase: 'held', since: T, until: T + 60 * MIN };
    expect(containStep(held, false, T + 60 * MIN, policy)).toEqual({ effect: 'none', next: undefined, changed: true });
    // Over the limit again after the hold: a fresh warning, not an instant hold.
    expect(containStep(held, true, T + 61 * MIN, policy)).toMatchObject({ effect: 'warning', event: 'warned' });
  });

  test('a warning ends when the key is under its limit again', () => {
    const warned: ContainState = { phase: 'warned', since: T, lastTrip: T };
    expect(containStep(warned, false, T + MIN, policy)).toEqual({ effect: 'none', next: undefined, changed: true });
  });

  test('a warning lapses after one window length without a trip (its counts are gone)', () => {
    const warned: ContainState = { phase: 'warned', since: T, lastTrip: T };
    expect(liveContainState(warned, T + 30 * MIN, policy)).toBe(warned);
    expect(liveContainState(warned, T + 30 * MIN + 1, policy)).toBeUndefined();
    expect(containStep(warned, true, T + 31 * MIN, policy)).toEqual({
      effect: 'warning',
      next: { phase: 'warned', since: T + 31 * MIN, lastTrip: T + 31 * MIN },
      changed: true,
      event: 'warned',
    });
  });

  test('a slow sender that stays over the limit is held once the grace period is over', () => {
    const warned: ContainState = { phase: 'warned', since: T, lastTrip: T };
    expect(containStep(warned, true, T + 25 * MIN, policy)).toMatchObject({ effect: 'holding', event: 'held' });
  });

  test('grace 0 holds at the first trip', () => {
    expect(containStep(undefined, true, T, { graceMs: 0, holdMs: MIN, windowMs: MIN })).toEqual({
      effect: 'holding',
      next: { phase: 'held', since: T, until: T + MIN },
      changed: true,
      event: 'held',
    });
  });

  test('a state is kept just as long as it can matter', () => {
    expect(containStateTtlMs({ phase: 'held', since: T, until: T + MIN }, T + 1000, policy)).toBe(MIN - 1000);
    expect(containStateTtlMs({ phase: 'warned', since: T, lastTrip: T + 1000 }, T + 1000, policy)).toBe(30 * MIN + 1);
  });
});

function ruleset(rulesYaml: string): Ruleset {
  const r = loadConfig(`rules:\n${rulesYaml}`, 'test.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return compileRules(r.config);
}

function configErrors(rulesYaml: string): string[] {
  const r = loadConfig(`rules:\n${rulesYaml}`, 'test.yaml');
  return r.ok ? [] : r.issues.map(formatConfigIssue);
}

function facts(over: Partial<Facts> = {}): Facts {
  return { protocol: 'policy', stage: 'eom', clientAddress: '10.1.2.3', saslUsername: 'alice', sender: 'alice@example.org', ...over };
}

/** A book of states in a Map, as the daemon keeps them, applying decide()'s changes. */
function mapBook(): ContainmentReader & { states: Map<string, ContainState>; write(d: Decision): void } {
  const states = new Map<string, ContainState>();
  return {
    states,
    read: (keys) => keys.map((k) => states.get(k)),
    write(d) {
      for (const c of d.containment ?? []) {
        if (c.next === undefined) states.delete(c.key);
        else states.set(c.key, c.next);
      }
    },
  };
}

function run(rs: Ruleset, f: Facts, store: MapCounterStore, book: ReturnType<typeof mapBook>, now: number): Decision {
  const d = decideWithStore(f, rs, store, now, book);
  if (d instanceof Promise) throw new Error('a Map store and book are synchronous');
  book.write(d);
  return d;
}

describe('a limit with contain, decided', () => {
  const rs = ruleset(`  - name: outbound-user
    stage: eom
    match: { authenticated: true }
    limit: { key: "{sasl_username}", max: 2, window: 1h }
    action: quarantine
    contain: { grace: 10m, hold_for: 1h }
`);

  test('under the limit: continue; first trip: a warning, the mail goes on; after the grace period: quarantine; then the cool-down expires', () => {
    const store = createMapCounterStore();
    const book = mapBook();
    expect(run(rs, facts(), store, book, T).verdict).toEqual({ action: 'continue' });
    expect(run(rs, facts(), store, book, T + 1000).verdict).toEqual({ action: 'continue' });

    const warned = run(rs, facts(), store, book, T + 2000);
    expect(warned.verdict.action).toBe('continue');
    expect(warned.verdict.warnings).toEqual([expect.objectContaining({ rule: 'outbound-user', action: 'quarantine' })]);
    expect(warned.containment).toEqual([expect.objectContaining({ rule: 'outbound-user', key: 'outbound-user|alice', event: 'warned' })]);
    expect(warned.trail[0]).toMatchObject({ outcome: 'warned', detail: expect.stringContaining('held if still over the limit after') });

    // Another user is not affected.
    expect(run(rs, facts({ saslUsername: 'bob' }), store, book, T + 3000).verdict.action).toBe('continue');

    const held = run(rs, facts(), store, book, T + 10 * MIN + 2000);
    expect(held.verdict).toMatchObject({ action: 'quarantine', rule: 'outbound-user', counter: { key: 'outbound-user|alice' } });
    expect(held.containment).toEqual([expect.objectContaining({ event: 'held', next: { phase: 'held', since: T + 10 * MIN + 2000, until: T + 70 * MIN + 2000 } })]);

    // The cool-down: the window has emptied (1h later), the user is still held.
    const stillHeld = run(rs, facts(), store, book, T + 70 * MIN);
    expect(stillHeld.verdict.action).toBe('quarantine');
    expect(stillHeld.trail[0]?.detail).toMatch(/^contained since .* until /);
    expect(stillHeld.containment).toBeUndefined();

    // Expired: mail flows again.
    const free = run(rs, facts(), store, book, T + 71 * MIN);
    expect(free.verdict).toEqual({ action: 'continue' });
    expect(book.states.size).toBe(0);
  });

  test('without a book (levee explain, replay) a limit with contain starts from no state: the first trip warns', () => {
    const store = createMapCounterStore();
    for (let i = 0; i < 2; i++) decideWithStore(facts(), rs, store, T);
    const d = decideWithStore(facts(), rs, store, T) as Decision;
    expect(d.verdict.action).toBe('continue');
    expect(d.verdict.warnings).toHaveLength(1);
  });
});

describe('limit.distinct: distinct recipient domains', () => {
  const rs = ruleset(`  - name: domains-per-user
    stage: rcpt
    limit: { key: "{sasl_username}", distinct: "{recipient_domain}", max: 2, window: 1h }
    action: reject
`);

  test('the plan carries the rendered value; a request without it only reads the counter', () => {
    expect(planCounters(facts({ stage: 'rcpt', recipient: 'x@B.Example' }), rs).hits).toEqual([
      { key: 'domains-per-user|alice', amount: 1, window: { windowMs: 3_600_000, buckets: 12 }, distinct: 'b.example' },
    ]);
    expect(planCounters(facts({ stage: 'rcpt' }), rs).hits).toEqual([{ key: 'domains-per-user|alice', amount: 0, window: { windowMs: 3_600_000, buckets: 12 } }]);
  });
});

describe('config checks for contain and distinct', () => {
  test('contain without a limit, with accept, in warn mode: each a clear error', () => {
    expect(configErrors('  - { name: a, action: quarantine, contain: {} }\n')).toEqual([expect.stringMatching(/test\.yaml:2:\d+: .*contain is only for rules with a limit/)]);
    expect(configErrors('  - { name: a, action: accept, limit: { key: "{sasl_username}", max: 1, window: 1h }, contain: {} }\n')).toEqual([
      expect.stringContaining('accept holds nothing'),
    ]);
    expect(configErrors('  - { name: a, mode: warn, action: quarantine, limit: { key: "{sasl_username}", max: 1, window: 1h }, contain: {} }\n')).toEqual([
      expect.stringContaining('contain needs mode enforce'),
    ]);
    expect(configErrors('  - { name: a, action: quarantine, limit: { key: "{sasl_username}", max: 1, window: 1h }, contain: { hold_for: 100ms } }\n')).toEqual([
      expect.stringContaining('must be between 1s and 30d'),
    ]);
  });

  test('contain defaults: grace 15m, hold 2h', () => {
    const rs = ruleset('  - { name: a, action: quarantine, limit: { key: "{sasl_username}", max: 1, window: 1h }, contain: {} }\n');
    expect(rs.rules[0]?.limit?.contain).toEqual({ graceMs: 15 * MIN, holdMs: 120 * MIN, windowMs: 60 * MIN });
    expect(rs.hasContain).toBe(true);
  });

  test('distinct cannot be combined with count: bytes; a bad template is located', () => {
    expect(configErrors('  - { name: a, action: reject, limit: { key: "{sasl_username}", distinct: "{recipient_domain}", count: bytes, max: 1, window: 1h } }\n')).toEqual([
      expect.stringContaining('cannot be combined with count: bytes'),
    ]);
    expect(configErrors('  - { name: a, action: reject, limit: { key: "{sasl_username}", distinct: "{nope}", max: 1, window: 1h } }\n')).toEqual([
      expect.stringMatching(/test\.yaml:2:\d+: .*nope/),
    ]);
  });
});
