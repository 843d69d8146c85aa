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
