import {
  compileRules,
  decide,
  decideWithStore,
  formatConfigIssue,
  loadConfig,
  planCounters,
  validateReply,
  type CounterHit,
  type CounterStore,
  type Decision,
  type Facts,
  type Ruleset,
} from '../src/index.js';
import { createMapCounterStore, type MapCounterStore } from './map-counter-store.js';

function ruleset(rulesYaml: string): Ruleset {
  const r = loadConfig(`rules:\n${rulesYaml}`, 'test.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return compileRules(r.config);
}

/** Overrides; `undefined` removes a default fact (the request lacks it). */
type Over = { [K in keyof Facts]?: Facts[K] | undefined };

function facts(over: Over = {}): Facts {
  const f: Record<string, unknown> = { protocol: 'policy', stage: 'rcpt', clientAddress: '192.0.2.1', sender: 'alice@example.org', recipient: 'bob@example.com', ...over };
  for (const k of Object.keys(f)) if (f[k] === undefined) delete f[k];
  return f as unknown as Facts;
}

/** Decide synchronously against a Map store. */
function run(rs: Ruleset, f: Facts, store: MapCounterStore = createMapCounterStore(), now = 1_000_000): Decision {
  const d = decideWithStore(f, rs, store, now);
  if (d instanceof Promise) throw new Error('a Map store is synchronous');
  return d;
}

const T = 1_700_000_000_000;

describe('stage filtering', () => {
  const rs = ruleset('  - { name: at-mail, stage: mail, action: reject }\n');
  test('a rule does not apply at other stages', () => {
    const d = run(rs, facts({ stage: 'rcpt' }));
    expect(d.verdict).toEqual({ action: 'continue' });
    expect(d.trail).toEqual([expect.objectContaining({ rule: 'at-mail', outcome: 'stage', detail: 'not active at this stage (runs at: mail)' })]);
  });
  test('and applies at its own', () => {
    expect(run(rs, facts({ stage: 'mail' })).verdict).toMatchObject({ action: 'reject', rule: 'at-mail' });
  });
  test('a list of stages, and no stage = every stage', () => {
    const two = ruleset('  - { name: r, stage: [connect, helo], action: reject }\n');
    expect(run(two, facts({ stage: 'helo' })).verdict.action).toBe('reject');
    expect(run(two, facts({ stage: 'eom' })).verdict.action).toBe('continue');
    const all = ruleset('  - { name: r, action: reject }\n');
    for (const stage of ['connect', 'helo', 'mail', 'rcpt', 'data', 'eom', 'vrfy', 'etrn'] as const) {
      expect(run(all, facts({ stage })).verdict.action).toBe('reject');
    }
  });
});

describe('each match key', () => {
  // [condition, facts that satisfy it, facts that do not]
  const cases: [string, Over[], Over[]][] = [
    [
      'client_address: ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]',
      [{ clientAddress: '192.0.2.200' }, { clientAddress: '2001:db8:ffff::1' }, { clientAddress: '198.51.100.7' }, { clientAddress: '::ffff:192.0.2.9' }],
      [{ clientAddress: '192.0.3.1' }, { clientAddress: '198.51.100.8' }, { clientAddress: '2001:db9::1' }, { clientAddress: undefined }, { clientAddress: 'unknown' }],
    ],
    [
      'client_name: ["mx.example.net", ".dyn.example.net"]',
      [{ clientName: 'MX.Example.NET' }, { clientName: 'mx.example.net.' }, { clientName: 'a.b.dyn.example.net' }],
      [{ clientName: 'dyn.example.net' }, { clientName: 'xmx.example.net' }, { clientName: 'mx.example.net.evil' }, {}],
    ],
    [
      'helo_name: ["/^[0-9.]+$/", "localhost"]',
      [{ heloName: '192.0.2.1' }, { heloName: 'LOCALHOST' }],
      [{ heloName: 'mail.example.org' }, { heloName: undefined }, { heloName: '' }],
    ],
    [
      'sender: ["spam@example.org", "@bulk.example", "@.lists.example"]',
      [{ sender: 'SPAM@Example.ORG' }, { sender: 'x@bulk.example' }, { sender: 'y@lists.example' }, { sender: 'z@a.lists.example' }],
      [{ sender: 'ham@example.org' }, { sender: 'x@sub.bulk.example' }, { sender: 'x@notlists.example' }, { sender: '' }, { sender: undefined }],
    ],
    [
      'recipient: "/^postmaster@/i"',
      [{ recipient: 'PostMaster@example.com' }],
      [{ recipient: 'bob@example.com' }, { recipient: undefined }],
    ],
    [
      'sasl_username: ["alice", "@corp.example"]',
      [{ saslUsername: 'Alice' }, { saslUsername: 'carol@corp.example' }],
      [{ saslUsername: 'alice2' }, { saslUsername: '' }, { saslUsername: undefined }],
    ],
    ['null_sender: true', [{ sender: '' }], [{ sender: 'a@b.example' }, { sender: undefined }]],
    ['null_sender: false', [{ sender: 'a@b.example' }], [{ sender: '' }, { sender: undefined }]],
    ['authenticated: true', [{ saslUsername: 'alice' }], [{ saslUsername: undefined }, { saslUsername: '' }]],
    ['authenticated: false', [{ saslUsername: undefined }], [{ saslUsername: 'alice' }]],
    ['size: { min: 100, max: 200 }', [{ size: 100 }, { size: 200 }], [{ size: 99 }, { size: 201 }, { size: undefined }]],
    ['size: { min: 100 }', [{ size: 1e9 }], [{ size: 0 }]],
    ['recipient_count: { min: 2, max: 3 }', [{ recipientCount: 2 }, { recipientCount: 3 }], [{ recipientCount: 1 }, { recipientCount: 4 }, {}]],
    ['protocol: milter', [{ protocol: 'milter' }], [{ protocol: 'policy' }]],
    ['stress: true', [{ stress: true }], [{ stress: false }, { stress: undefined }]],
    ['stress: false', [{ stress: false }, { stress: undefined }], [{ stress: true }]],
  ];
  test.each(cases)('%s', (condition, yes, no) => {
    const rs = ruleset(`  - name: r\n    match: { ${condition} }\n    action: reject\n`);
    const key = condition.slice(0, condition.indexOf(':'));
    for (const y of yes) expect([y, run(rs, facts(y)).verdict.action]).toEqual([y, 'reject']);
    for (const n of no) {
      const d = run(rs, facts(n));
      expect([n, d.verdict.action]).toEqual([n, 'continue']);
      expect(d.trail[0]).toMatchObject({ outcome: 'no-match', condition: `match.${key}` });
    }
  });

  test('all present conditions must hold (AND); the trail names the failing one', () => {
    const rs = ruleset('  - name: r\n    match: { null_sender: true, client_address: "192.0.2.0/24" }\n    action: reject\n');
    expect(run(rs, facts({ sender: '' })).verdict.action).toBe('reject');
    expect(run(rs, facts({ sender: '', clientAddress: '203.0.113.1' })).trail[0]).toMatchObject({ condition: 'match.client_address' });
    expect(run(rs, facts({ sender: 'x@y.example' })).trail[0]).toMatchObject({ condition: 'match.null_sender' });
  });

  test('regexes see at most the first 1024 characters', () => {
    const rs = ruleset('  - name: r\n    match: { recipient: "/z@example\\\\.com$/" }\n    action: reject\n');
    expect(run(rs, facts({ recipient: 'z@example.com' })).verdict.action).toBe('reject');
    expect(run(rs, facts({ recipient: `${'a'.repeat(1100)}z@example.com` })).verdict.action).toBe('continue');
  });
});

describe('unless', () => {
  const rs = ruleset(
    '  - name: r\n    match: { null_sender: true }\n    unless: { client_address: "127.0.0.0/8", protocol: policy }\n    action: reject\n',
  );
  test('exempts when all its conditions hold', () => {
    const d = run(rs, facts({ sender: '', clientAddress: '127.0.0.1' }));
    expect(d.verdict.action).toBe('continue');
    expect(d.trail).toEqual([
      expect.objectContaining({ outcome: 'exempt', condition: 'unless', detail: 'exempt: all of unless.protocol, unless.client_address held' }),
    ]);
  });
  test('does not exempt when only some hold', () => {
    expect(run(rs, facts({ sender: '', clientAddress: '127.0.0.1', protocol: 'milter' })).verdict.action).toBe('reject');
    expect(run(rs, facts({ sender: '', clientAddress: '192.0.2.1' })).verdict.action).toBe('reject');
  });
});

describe('order', () => {
  test('first matching terminal rule wins; later rules are not considered', () => {
    const rs = ruleset(
      [
        '  - { name: no, match: { sender: "@nomatch.example" }, action: reject }',
        '  - { name: allow, match: { client_address: "192.0.2.0/24" }, action: accept }',
        '  - { name: deny, action: reject }',
        '',
      ].join('\n'),
    );
    const d = run(rs, facts());
    expect(d.verdict).toEqual({ action: 'accept', rule: 'allow' });
    expect(d.trail.map((t) => [t.rule, t.outcome])).toEqual([
      ['no', 'no-match'],
      ['allow', 'decided'],
    ]);
    expect(run(rs, facts({ clientAddress: '203.0.113.9' })).verdict.rule).toBe('deny');
  });

  test('a continue rule is terminal too: it ends evaluation and names itself', () => {
    const rs = ruleset('  - { name: skip, action: continue }\n  - { name: deny, action: reject }\n');
    expect(run(rs, facts()).verdict).toEqual({ action: 'continue', rule: 'skip' });
  });
});

describe('limits', () => {
  const rs = ruleset(
    '  - name: per-ip\n    limit: { key: "{client_address}", max: 3, window: 60s }\n    action: tempfail\n',
  );

  test('fires at max+1 within the window, not before, and recovers after the window', () => {
    const store = createMapCounterStore();
    const actions = [0, 1, 2, 3, 4].map((i) => run(rs, facts(), store, T + i * 1000).verdict.action);
    expect(actions).toEqual(['continue', 'continue', 'continue', 'tempfail', 'tempfail']);
    // The first events were at T (bucket [T, T+5s)): gone at T+60s; four more (T+1s..T+4s) share that bucket.
    expect(run(rs, facts(), store, T + 60_000).verdict.action).toBe('continue');
  });

  test('the firing verdict carries the counter evidence and a complete reply', () => {
    const store = createMapCounterStore();
    let d: Decision | undefined;
    for (let i = 0; i < 4; i++) d = run(rs, facts({ clientAddress: 'IPv6:2001:DB8::5' }), store, T);
    expect(d?.verdict).toEqual({
      action: 'tempfail',
      code: 450,
      enhancedCode: '4.7.1',
      text: 'Rate limit exceeded, try again later',
      rule: 'per-ip',
      counter: { rule: 'per-ip', key: 'per-ip|2001:db8::5', count: 4, limit: 3, windowMs: 60_000 },
    });
  });

  test('refused requests keep counting: a client that keeps trying stays refused', () => {
    const store = createMapCounterStore();
    for (let t = 0; t < 120_000; t += 5000) run(rs, facts(), store, T + t);
    // 1 per 5 s = 12 per window > 3: still refused after two windows.
    expect(run(rs, facts(), store, T + 120_000).verdict.action).toBe('tempfail');
  });

  test('max: 0 fires on the first event', () => {
    const zero = ruleset('  - { name: z, limit: { key: "{client_address}", max: 0, window: 1m }, action: reject }\n');
    expect(run(zero, facts()).verdict.action).toBe('reject');
  });

  test('count: recipients uses recipient_count (at least 1); count: bytes uses size', () => {
    const r = ruleset(
      [
        '  - { name: rcpts, stage: data, limit: { key: "{client_address}", max: 10, window: 1m, count: recipients }, action: tempfail }',
        '  - { name: bytes, stage: eom, limit: { key: "{client_address}", max: 1000, window: 1m, count: bytes }, action: tempfail }',
        '  - { name: rq, stage: rcpt, limit: { key: "{client_address}", max: 10, window: 1m, count: recipients }, action: tempfail }',
        '',
      ].join('\n'),
    );
    expect(planCounters(facts({ stage: 'data', recipientCount: 7 }), r).hits.map((h) => h.amount)).toEqual([7]);
    expect(planCounters(facts({ stage: 'data', recipientCount: 0 }), r).hits.map((h) => h.amount)).toEqual([1]);
    expect(planCounters(facts({ stage: 'rcpt', recipientCount: 0 }), r).hits.map((h) => h.amount)).toEqual([1]);
    expect(planCounters(facts({ stage: 'eom', size: 600 }), r).hits.map((h) => h.amount)).toEqual([600]);
    expect(planCounters(facts({ stage: 'eom' }), r).hits.map((h) => h.amount)).toEqual([0]);
    const store = createMapCounterStore();
    expect(run(r, facts({ stage: 'eom', size: 600 }), store, T).verdict.action).toBe('continue');
    expect(run(r, facts({ stage: 'eom', size: 600 }), store, T).verdict).toMatchObject({ action: 'tempfail', counter: { count: 1200, limit: 1000 } });
  });

  test('missing totals (a failed store) read as 0: limits do not fire', () => {
    const f = facts();
    const plan = planCounters(f, rs);
    expect(plan.hits).toHaveLength(1);
    expect(decide(f, rs, plan, []).verdict.action).toBe('continue');
    expect(decide(f, rs, plan, [4]).verdict.action).toBe('tempfail');
  });

  test('works with an asynchronous store', async () => {
    const inner = createMapCounterStore();
    const remote: CounterStore = {
      apply: async (hits: readonly CounterHit[], now: number) => inner.apply(hits, now),
      peek: async (keys, now) => inner.peek(keys, now),
    };
    const results: string[] = [];
    for (let i = 0; i < 4; i++) results.push((await decideWithStore(facts(), rs, remote, T)).verdict.action);
    expect(results).toEqual(['continue', 'continue', 'continue', 'tempfail']);
    expect(await remote.peek([{ key: 'per-ip|192.0.2.1', window: { windowMs: 60_000, buckets: 12 } }], T)).toEqual([4]);
  });
});

describe('key templates', () => {
  const rs = ruleset(
    '  - name: net\n    limit: { key: "{client_network/24,64}", max: 2, window: 1m }\n    action: tempfail\n',
  );

  test('IPv6 addresses in the same /64 share one counter, another /64 does not', () => {
    const store = createMapCounterStore();
    expect(run(rs, facts({ clientAddress: '2001:db8:1:2::1' }), store, T).verdict.action).toBe('continue');
    expect(run(rs, facts({ clientAddress: '2001:db8:1:2:ffff:ffff:ffff:ffff' }), store, T).verdict.action).toBe('continue');
    expect(run(rs, facts({ clientAddress: '2001:db8:1:3::1' }), store, T).verdict.action).toBe('continue');
    const d = run(rs, facts({ clientAddress: 'IPv6:2001:DB8:1:2::abcd' }), store, T);
    expect(d.verdict).toMatchObject({ action: 'tempfail', counter: { key: 'net|2001:db8:1:2::/64', count: 3 } });
    expect([...store.windows.keys()].sort()).toEqual(['net|2001:db8:1:2::/64', 'net|2001:db8:1:3::/64']);
  });

  test('IPv4 clients use the IPv4 length', () => {
    expect(planCounters(facts({ clientAddress: '192.0.2.77' }), rs).hits[0]?.key).toBe('net|192.0.2.0/24');
    expect(planCounters(facts({ clientAddress: '::ffff:192.0.2.77' }), rs).hits[0]?.key).toBe('net|192.0.2.0/24');
  });

  test('{client_network} defaults to /24 and /64; /N alone sets IPv4 only', () => {
    const r = ruleset(
      [
        '  - { name: d, limit: { key: "{client_network}", max: 9, window: 1m }, action: tempfail }',
        '  - { name: n, limit: { key: "{client_network/16}", max: 9, window: 1m }, action: tempfail }',
        '',
      ].join('\n'),
    );
    expect(planCounters(facts({ clientAddress: '198.51.100.9' }), r).hits.map((h) => h.key)).toEqual(['d|198.51.100.0/24', 'n|198.51.0.0/16']);
    expect(planCounters(facts({ clientAddress: '2001:db8:a:b:c::1' }), r).hits.map((h) => h.key)).toEqual(['d|2001:db8:a:b::/64', 'n|2001:db8:a:b::/64']);
  });

  test('every placeholder renders lowercase, with literal text between', () => {
    const r = ruleset(
      '  - name: All\n    limit: { key: "A={client_address} S={sender} SD={sender_domain} R={recipient} RD={recipient_domain} U={sasl_username} H={helo_name} C={client_name}", max: 9, window: 1m }\n    action: tempfail\n',
    );
    const f = facts({
      clientAddress: '2001:DB8:0::1',
      sender: 'Alice@Example.ORG',
      recipient: 'Bob@Sub.Example.COM',
      saslUsername: 'Alice',
      heloName: 'MX.Example.ORG',
      clientName: 'Mail.Example.ORG.',
    });
    expect(planCounters(f, r).hits[0]?.key).toBe(
      'All|a=2001:db8::1 s=alice@example.org sd=example.org r=bob@sub.example.com rd=sub.example.com u=alice h=mx.example.org c=mail.example.org',
    );
  });

  test('the null sender renders as <>', () => {
    const r = ruleset('  - { name: s, limit: { key: "{sender}", max: 9, window: 1m }, action: tempfail }\n');
    expect(planCounters(facts({ sender: '' }), r).hits[0]?.key).toBe('s|<>');
  });

  test('an absent fact means the rule does not apply (and does not count)', () => {
    const r = ruleset('  - { name: u, limit: { key: "{sasl_username}", max: 0, window: 1m }, action: reject }\n');
    const f = facts({ saslUsername: undefined });
    const plan = planCounters(f, r);
    expect(plan.hits).toEqual([]);
    const d = decide(f, r, plan, []);
    expect(d.verdict.action).toBe('continue');
    expect(d.trail).toEqual([
      expect.objectContaining({ rule: 'u', outcome: 'no-key', condition: 'limit.key {sasl_username}', detail: 'limit.key: {sasl_username} is absent from this request' }),
    ]);
    expect(planCounters(facts({ sender: '' }), ruleset('  - { name: d, limit: { key: "{sender_domain}", max: 0, window: 1m }, action: reject }\n')).hits).toEqual([]);
  });

  test('two rules with the same template never share a counter', () => {
    const r = ruleset(
      [
        '  - { name: a, limit: { key: "{client_address}", max: 9, window: 1m }, action: tempfail }',
        '  - { name: b, limit: { key: "{client_address}", max: 9, window: 1h }, action: tempfail }',
        '',
      ].join('\n'),
    );
    expect(planCounters(facts(), r).hits.map((h) => h.key)).toEqual(['a|192.0.2.1', 'b|192.0.2.1']);
  });
});

describe('counting scope', () => {
  const rs = ruleset(
    [
      '  - { name: first, limit: { key: "{client_address}", max: 1, window: 1m }, action: reject }',
      '  - { name: second, limit: { key: "{client_address}", max: 100, window: 1m }, action: tempfail }',
      '  - { name: stop, match: { sender: "@stop.example" }, action: accept }',
      '  - { name: after-stop, limit: { key: "{client_address}", max: 100, window: 1m }, action: tempfail }',
      '',
    ].join('\n'),
  );

  test('counts every applicable limit up to the first applicable terminal rule', () => {
    expect(planCounters(facts({ sender: 'x@stop.example' }), rs).hits.map((h) => h.key)).toEqual(['first|192.0.2.1', 'second|192.0.2.1']);
    expect(planCounters(facts({ sender: 'x@go.example' }), rs).hits.map((h) => h.key)).toEqual([
      'first|192.0.2.1',
      'second|192.0.2.1',
      'after-stop|192.0.2.1',
    ]);
  });

  test('a firing limit decides; later limits in scope still counted, shown as counted', () => {
    const store = createMapCounterStore();
    run(rs, facts({ sender: 'x@go.example' }), store, T);
    const d = run(rs, facts({ sender: 'x@go.example' }), store, T);
    expect(d.verdict).toMatchObject({ action: 'reject', rule: 'first', code: 550, enhancedCode: '5.7.1', text: 'Rate limit exceeded' });
    expect(d.trail.map((t) => [t.rule, t.outcome])).toEqual([
      ['first', 'decided'],
      ['second', 'counted'],
      ['after-stop', 'counted'],
    ]);
    expect(d.trail[1]?.counter).toMatchObject({ count: 2, limit: 100 });
    expect(store.peek([{ key: 'after-stop|192.0.2.1', window: { windowMs: 60_000, buckets: 12 } }], T)).toEqual([2]);
  });
});

describe('warn mode', () => {
  test('a warn limit records what it would have done and does not act', () => {
    const rs = ruleset(
      [
        '  - { name: shadow, mode: warn, limit: { key: "{client_address}", max: 1, window: 1m }, action: reject }',
        '  - { name: shadow-block, mode: warn, match: { sender: "@bad.example" }, action: discard }',
        '  - { name: real, match: { sender: "@bad.example" }, action: quarantine }',
        '',
      ].join('\n'),
    );
    const store = createMapCounterStore();
    expect(run(rs, facts(), store, T).verdict).toEqual({ action: 'continue' });
    const d = run(rs, facts(), store, T);
    expect(d.verdict).toEqual({
      action: 'continue',
      warnings: [{ rule: 'shadow', action: 'reject', counter: { rule: 'shadow', key: 'shadow|192.0.2.1', count: 2, limit: 1, windowMs: 60_000 } }],
    });
    expect(d.trail.map((t) => t.outcome)).toEqual(['warned', 'no-match', 'no-match']);
    const bad = run(rs, facts({ sender: 'x@bad.example' }), store, T);
    expect(bad.verdict).toEqual({
      action: 'quarantine',
      text: 'Held by policy',
      rule: 'real',
      warnings: [
        { rule: 'shadow', action: 'reject', counter: expect.objectContaining({ count: 3 }) },
        { rule: 'shadow-block', action: 'discard' },
      ],
    });
    expect(bad.trail.map((t) => [t.rule, t.outcome])).toEqual([
      ['shadow', 'warned'],
      ['shadow-block', 'warned'],
      ['real', 'decided'],
    ]);
  });

  test('warn-mode non-limit rules do not end the counting scope', () => {
    const rs = ruleset(
      [
        '  - { name: w, mode: warn, action: reject }',
        '  - { name: l, limit: { key: "{client_address}", max: 1, window: 1m }, action: tempfail }',
        '',
      ].join('\n'),
    );
    expect(planCounters(facts(), rs).hits.map((h) => h.key)).toEqual(['l|192.0.2.1']);
  });
});

describe('replies', () => {
  test.each([
    ['action: tempfail', { action: 'tempfail', code: 450, enhancedCode: '4.7.1', text: 'Service temporarily unavailable, try again later' }],
    ['action: reject', { action: 'reject', code: 550, enhancedCode: '5.7.1', text: 'Rejected by policy' }],
    ['action: reject\n    code: 554\n    text: "No thanks"', { action: 'reject', code: 554, enhancedCode: '5.7.1', text: 'No thanks' }],
    ['action: reject\n    enhanced_code: "5.1.1"', { action: 'reject', code: 550, enhancedCode: '5.1.1', text: 'Rejected by policy' }],
    ['action: tempfail\n    code: 421\n    text: "Closing"', { action: 'tempfail', code: 421, enhancedCode: '4.7.1', text: 'Closing' }],
    ['action: tempfail\n    text: "Later"', { action: 'tempfail', code: 450, enhancedCode: '4.7.1', text: 'Later' }],
    ['action: quarantine', { action: 'quarantine', text: 'Held by policy' }],
    ['action: quarantine\n    text: "Suspicious"', { action: 'quarantine', text: 'Suspicious' }],
    ['action: discard', { action: 'discard' }],
    ['action: accept', { action: 'accept' }],
    ['action: continue', { action: 'continue' }],
  ])('%s', (yaml, expected) => {
    const v = run(ruleset(`  - name: r\n    ${yaml}\n`), facts()).verdict;
    expect(v).toEqual({ ...expected, rule: 'r' });
    if (v.code !== undefined) expect(validateReply(v.code, v.enhancedCode, v.text)).toBeUndefined();
  });

  test('verdicts are frozen so a caller cannot change a rule', () => {
    const v = run(ruleset('  - { name: r, action: reject }\n'), facts()).verdict;
    expect(Object.isFrozen(v)).toBe(true);
  });
});

describe('validateReply', () => {
  test.each([
    [450, '4.7.1', 'Try later', undefined],
    [550, '5.1.1', 'No such user', undefined],
    [550, undefined, undefined, undefined],
    [250, '2.0.0', 'ok', 'reply code 250 is not a 4xx or 5xx code'],
    [600, undefined, 'x', 'reply code 600 is not a 4xx or 5xx code'],
    [450.5, undefined, 'x', 'reply code 450.5 is not a 4xx or 5xx code'],
    [550, '4.7.1', 'x', 'enhanced code 4.7.1 does not match the class of reply code 550'],
    [450, '4.7', 'x', 'enhanced code "4.7" is not of the form class.subject.detail (RFC 3463)'],
    [450, '4.7.1000', 'x', 'enhanced code "4.7.1000" is not of the form class.subject.detail (RFC 3463)'],
    [550, '5.7.1', 'a\nb', 'reply text must not contain CR, LF or NUL'],
    [550, '5.7.1', 'a\rb', 'reply text must not contain CR, LF or NUL'],
    [550, '5.7.1', 'a\0b', 'reply text must not contain CR, LF or NUL'],
    [550, '5.7.1', 'a\u0007b', 'reply text must not contain control characters'],
    [550, '5.7.1', '', 'reply text must not be empty'],
    [550, '5.7.1', 'x'.repeat(401), 'reply text is 401 bytes, at most 400 allowed'],
  ] as const)('%s %s %j', (code, enhanced, text, expected) => {
    expect(validateReply(code, enhanced, text)).toBe(expected);
  });
});

describe('trail', () => {
  test('explains every rule considered, in order', () => {
    const rs = ruleset(
      [
        '  - { name: s, stage: connect, action: reject }',
        '  - { name: m, match: { helo_name: "bad.example" }, action: reject }',
        '  - { name: u, unless: { client_address: "192.0.2.0/24" }, action: reject }',
        '  - { name: k, limit: { key: "{sasl_username}", max: 1, window: 1m }, action: reject }',
        '  - { name: l, limit: { key: "{client_address}", max: 5, window: 1m }, action: tempfail }',
        '  - { name: d, action: discard }',
        '  - { name: never, action: reject }',
        '',
      ].join('\n'),
    );
    const d = run(rs, facts({ heloName: 'good.example' }));
    expect(d.verdict).toEqual({ action: 'discard', rule: 'd' });
    expect(d.trail.map((t) => ({ rule: t.rule, index: t.index, outcome: t.outcome, detail: t.detail }))).toEqual([
      { rule: 's', index: 0, outcome: 'stage', detail: 'not active at this stage (runs at: connect)' },
      { rule: 'm', index: 1, outcome: 'no-match', detail: 'match.helo_name did not hold' },
      { rule: 'u', index: 2, outcome: 'exempt', detail: 'exempt: all of unless.client_address held' },
      { rule: 'k', index: 3, outcome: 'no-key', detail: 'limit.key: {sasl_username} is absent from this request' },
      { rule: 'l', index: 4, outcome: 'under-limit', detail: '1 of max 5 in window' },
      { rule: 'd', index: 5, outcome: 'decided', detail: 'applied: discard' },
    ]);
    expect(d.trail[4]?.counter).toEqual({ rule: 'l', key: 'l|192.0.2.1', count: 1, limit: 5, windowMs: 60_000 });
  });

  test('rules inactive at the stage appear before the deciding rule, interleaved in config order, never after it', () => {
    const rs = ruleset(
      [
        '  - { name: c1, stage: connect, action: reject }',
        '  - { name: lim, stage: rcpt, limit: { key: "{client_address}", max: 0, window: 1m }, action: tempfail }',
        '  - { name: c2, stage: connect, action: reject }',
        '  - { name: later, limit: { key: "{sender}", max: 9, window: 1m }, action: tempfail }',
        '  - { name: c3, stage: eom, action: reject }',
        '',
      ].join('\n'),
    );
    // The first limit decides: the stage entries after it and the rules between go unlisted; the later limit still counted.
    const limited = run(rs, facts());
    expect(limited.trail.map((t) => [t.rule, t.outcome])).toEqual([
      ['c1', 'stage'],
      ['lim', 'decided'],
      ['later', 'counted'],
    ]);
    // Nothing decides: every rule is listed, inactive ones included.
    const open = run(rs, facts({ stage: 'data' }));
    expect(open.verdict).toEqual({ action: 'continue' });
    expect(open.trail.map((t) => [t.rule, t.outcome])).toEqual([
      ['c1', 'stage'],
      ['lim', 'stage'],
      ['c2', 'stage'],
      ['later', 'under-limit'],
      ['c3', 'stage'],
    ]);
  });

  test('a plan walks only the rules active at its stage', () => {
    const rs = ruleset(['  - { name: a, stage: connect, action: reject }', '  - { name: b, stage: [rcpt, eom], action: reject }', '  - { name: c, action: reject }', ''].join('\n'));
    expect(rs.byStage.connect.map((r) => r.name)).toEqual(['a', 'c']);
    expect(rs.byStage.eom.map((r) => r.name)).toEqual(['b', 'c']);
    expect(rs.byStage.data.map((r) => r.name)).toEqual(['c']);
    expect(planCounters(facts({ stage: 'eom' }), rs).steps).toEqual([expect.objectContaining({ rule: 'b', outcome: 'decided' })]);
  });

  test('a parsed client address in the facts is used as given, not parsed again', () => {
    const rs = ruleset('  - { name: net, match: { client_address: "203.0.113.0/24" }, action: reject }\n  - { name: per, limit: { key: "{client_address}", max: 9, window: 1m }, action: reject }\n');
    // Builders guarantee clientAddress is clientIp's text; here they disagree on purpose, to show which one is read.
    const given = { clientAddress: '203.0.113.1', clientIp: { family: 4 as const, bytes: new Uint8Array([192, 0, 2, 1]) } };
    expect(run(rs, facts(given)).verdict.action).toBe('continue');
    expect(planCounters(facts(given), rs).hits.map((h) => h.key)).toEqual(['per|203.0.113.1']);
    expect(run(rs, facts({ clientAddress: '203.0.113.1' })).verdict.rule).toBe('net');
  });
});
