// recipient_status and limit.count_if: permanent answers for unknown users,
// and a dictionary attack that refuses the rest of the client's mail.
import { compileRules, decideWithStore, formatConfigIssue, loadConfig, type Facts, type Ruleset } from '../src/index.js';
import { createMapCounterStore, type MapCounterStore } from './map-counter-store.js';

const RULES = `
rules:
  - name: dictionary-attack
    stage: rcpt
    limit:
      key: "{client_address}"
      max: 3
      window: 10m
      count_if: { recipient_status: unknown }
    action: reject
    code: 550
    enhanced_code: "5.7.1"
    text: "Too many unknown recipients from your address"
  - name: unknown-user
    stage: rcpt
    match: { recipient_status: unknown }
    action: reject
    code: 550
    enhanced_code: "5.1.1"
    text: "No such user"
`;

function ruleset(): Ruleset {
  const r = loadConfig(RULES, 'r.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return compileRules(r.config);
}

describe('recipient_status and count_if', () => {
  const rs = ruleset();
  let store: MapCounterStore;
  beforeEach(() => {
    store = createMapCounterStore();
  });
  const ask = (recipientStatus: Facts['recipientStatus'], client = '192.0.2.1'): string => {
    const facts: Facts = { protocol: 'policy', stage: 'rcpt', clientAddress: client, recipient: 'x@example.org', ...(recipientStatus === undefined ? {} : { recipientStatus }) };
    const d = decideWithStore(facts, rs, store, 1_000_000);
    if (d instanceof Promise) throw new Error('sync');
    return `${d.verdict.action} ${d.verdict.rule ?? ''} ${d.verdict.enhancedCode ?? ''}`.trim();
  };

  test('unknown recipients get a permanent 5.1.1; known ones pass; no directory means no status', () => {
    expect(ask('unknown')).toBe('reject unknown-user 5.1.1');
    expect(ask('known')).toBe('continue');
    expect(ask('foreign')).toBe('continue');
    expect(ask(undefined)).toBe('continue');
  });

  test('after max unknown recipients, every further recipient from that client is refused, known ones too', () => {
    for (let i = 0; i < 3; i++) expect(ask('unknown')).toBe('reject unknown-user 5.1.1');
    // Known recipients read the counter without adding to it.
    expect(ask('known')).toBe('continue');
    expect(ask('unknown')).toBe('reject dictionary-attack 5.7.1');
    expect(ask('known')).toBe('reject dictionary-attack 5.7.1');
    // Another client is unaffected.
    expect(ask('known', '198.51.100.1')).toBe('continue');
  });

  test('config: bad status values and count_if typos are errors with positions', () => {
    const bad = loadConfig('rules:\n  - name: a\n    match: { recipient_status: missing }\n    action: reject\n', 'b.yaml');
    expect(bad.ok ? [] : bad.issues.map(formatConfigIssue)).toEqual([
      expect.stringMatching(/^b\.yaml:3:32: rules\.0\.match\.recipient_status(\.0)?: expected known, unknown or foreign/),
    ]);
    const typo = loadConfig('rules:\n  - name: a\n    limit: { key: "{client_address}", max: 1, window: 1m, count_if: { recipient_stat: unknown } }\n    action: reject\n', 't.yaml');
    expect(typo.ok ? [] : typo.issues.map(formatConfigIssue)[0]).toMatch(/rules\.0\.limit\.count_if\.recipient_stat: unknown key/);
  });

  test('a tempfail for unknown recipients draws the check-config warning', () => {
    const r = loadConfig('rules:\n  - name: soft\n    match: { recipient_status: unknown }\n    action: tempfail\n', 'w.yaml');
    expect(r.ok && r.warnings.map(formatConfigIssue)[0]).toMatch(/rule soft answers tempfail \(4xx\) to a permanent condition \(recipient_status\)/);
  });
});

describe('load section and rule delay in the config', () => {
  const issuesOf = (yaml: string): string[] => {
    const r = loadConfig(yaml, 'l.yaml');
    return r.ok ? [] : r.issues.map(formatConfigIssue);
  };
  test('sizes, durations and thresholds parse; tiers are off without thresholds', () => {
    const r = loadConfig(
      'load:\n  queue_filesystem: /var/spool/postfix\n  thresholds:\n    queue_free: { delay: 2GB, shed: 1GB, refuse: 500MB }\n    event_loop_lag: { shed: 200ms }\n',
      'l.yaml',
    );
    expect(r.ok && r.config.load.thresholds).toEqual({
      queueFreeBytes: { delay: 2 * 1024 ** 3, shed: 1024 ** 3, refuse: 500 * 1024 ** 2 },
      eventLoopLagMs: { shed: 200 },
    });
    const off = loadConfig('rules: []\n', 'l.yaml');
    expect(off.ok && off.config.load.thresholds).toEqual({});
  });
  test('mistakes are errors with positions', () => {
    expect(issuesOf('load:\n  thresholds:\n    queue_free: { delay: lots }\n')).toEqual(
      expect.arrayContaining([expect.stringMatching(/^l\.yaml:3:\d+: load\.thresholds\.queue_free\.delay: invalid size "lots"/)]),
    );
    expect(issuesOf('load:\n  thresholds:\n    queue_depth: { refuse: 100 }\n')[0]).toMatch(/queue_depth thresholds need queue_directories/);
    expect(issuesOf('rules:\n  - name: slow\n    action: continue\n    delay: 30s\n')[0]).toMatch(/^l\.yaml:4:\d+: rules\.0\.delay: at most 5s/);
  });
});
