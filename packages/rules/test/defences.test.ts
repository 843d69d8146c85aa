import { compileRules, decideWithStore, formatConfigIssue, loadConfig, parseRecipientDirectory, type Decision, type Facts, type LeveeConfig, type Ruleset } from '../src/index.js';
import { createMapCounterStore } from './map-counter-store.js';

function config(yaml: string): LeveeConfig {
  const r = loadConfig(yaml, 'test.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return r.config;
}

function errors(yaml: string): string[] {
  const r = loadConfig(yaml, 'test.yaml');
  return r.ok ? [] : r.issues.map(formatConfigIssue);
}

const names = (yaml: string): string[] => config(yaml).rules.map((r) => r.name);

describe('the defences section expands to rules', () => {
  test('nothing switched on: no rules; each family switched on with true gives its rules, before the config\'s own', () => {
    expect(names('defences: {}\n')).toEqual([]);
    expect(names('defences: { worms: false, av_notices: false }\n')).toEqual([]);
    expect(
      names(`recipients: { file: /etc/levee/recipients }
batv: { secret_file: /etc/levee/batv, domains: [example.org] }
defences:
  connection_floods: { total_concurrency: 500 }
  dictionary_attack: true
  unknown_recipients: true
  bounce_storms: true
  batv_bounces: true
  forged_bounces: { our_hosts: [mx1.example.org] }
  worms: true
  av_notices: true
  auto_replies: true
  contain: { local_networks: [10.0.0.0/8] }
rules:
  - { name: mine, action: continue }
`),
    ).toEqual([
      'defence.connection_floods.client-rate',
      'defence.connection_floods.network-rate',
      'defence.connection_floods.client-concurrency',
      'defence.connection_floods.total-concurrency',
      'defence.dictionary_attack',
      'defence.unknown_recipients',
      'defence.bounce_storms.per-client',
      'defence.bounce_storms.per-recipient',
      'defence.batv_bounces',
      'defence.forged_bounces',
      'defence.worms',
      'defence.av_notices',
      'defence.auto_replies.rfc3834',
      'defence.auto_replies.legacy',
      'defence.contain.users-messages',
      'defence.contain.users-recipients',
      'defence.contain.users-domains',
      'defence.contain.hosts-messages',
      'defence.contain.hosts-recipients',
      'defence.contain.hosts-domains',
      'mine',
    ]);
  });

  test('tuning: rates, the worm action, the contain periods, a rate switched off', () => {
    const c = config(`defences:
  connection_floods: { per_client: { max: 5 }, tarpit: 2s }
  worms: { action: reject, attachments: [".pif"] }
  contain: { messages: { max: 50, window: 10m }, recipients: false, domains: false, grace: 0s, hold_for: 1d }
`);
    const byName = new Map(c.rules.map((r) => [r.name, r]));
    expect(byName.get('defence.connection_floods.client-rate')).toMatchObject({ limit: { max: 5, windowMs: 60_000 }, delayMs: 2000, code: 421, enhancedCode: '4.7.0' });
    expect(byName.get('defence.worms')).toMatchObject({ action: 'reject', code: 550, enhancedCode: '5.7.1', match: { attachmentName: ['.pif'] } });
    expect(byName.get('defence.contain.users-messages')).toMatchObject({ action: 'quarantine', limit: { max: 50, windowMs: 600_000 }, contain: { graceMs: 0, holdMs: 86_400_000 } });
    expect(byName.has('defence.contain.users-recipients')).toBe(false);
    expect(byName.has('defence.contain.users-domains')).toBe(false);
  });

  test('families that need another section say so, located; defence. names are reserved', () => {
    expect(errors('defences:\n  unknown_recipients: true\n')).toEqual([expect.stringMatching(/^test\.yaml:2:\d+: defences\.unknown_recipients: needs recipients\.file/)]);
    expect(errors('defences:\n  batv_bounces: true\n')).toEqual([expect.stringContaining('defences.batv_bounces: needs the batv section')]);
    expect(errors('defences:\n  worms: { action: bounce }\n')).toEqual([expect.stringMatching(/^test\.yaml:2:\d+: /)]);
    expect(errors('rules:\n  - { name: defence.mine, action: reject }\n')).toEqual([expect.stringContaining('rule names starting with "defence." are the defences section\'s')]);
  });
});

describe('the families decide like their recipes', () => {
  const T = 1_700_000_000_000;
  const directory = parseRecipientDirectory('@example.org\nalice@example.org\n');
  const run = (rs: Ruleset, f: Facts, store = createMapCounterStore()): Decision => decideWithStore(f, rs, store, T) as Decision;
  const rules = (yaml: string): Ruleset => compileRules(config(yaml));

  test('connection floods: the 4th connection in a minute gets 421 4.7.0 after the tarpit; loopback is exempt by default', () => {
    const rs = rules('defences: { connection_floods: { per_client: { max: 3 } } }\n');
    const store = createMapCounterStore();
    const connect = (ip: string): Decision => run(rs, { protocol: 'policy', stage: 'connect', clientAddress: ip }, store);
    for (let i = 0; i < 3; i++) expect(connect('192.0.2.9').verdict.action).toBe('continue');
    expect(connect('192.0.2.9').verdict).toMatchObject({ action: 'tempfail', code: 421, enhancedCode: '4.7.0', delayMs: 1000, rule: 'defence.connection_floods.client-rate' });
    for (let i = 0; i < 10; i++) expect(connect('127.0.0.1').verdict.action).toBe('continue');
  });

  test('unknown recipients: 550 5.1.1; the dictionary limit then refuses known ones too', () => {
    expect(directory.ok).toBe(true);
    if (!directory.ok) return;
    const rs = rules('recipients: { file: /x }\ndefences: { unknown_recipients: true, dictionary_attack: { max: 2 } }\n');
    const store = createMapCounterStore();
    const rcpt = (to: string, status: 'known' | 'unknown'): Decision =>
      run(rs, { protocol: 'policy', stage: 'rcpt', clientAddress: '192.0.2.7', sender: 'x@example.net', recipient: to, recipientStatus: status }, store);
    expect(rcpt('nobody1@example.org', 'unknown').verdict).toMatchObject({ action: 'reject', code: 550, enhancedCode: '5.1.1' });
    expect(rcpt('nobody2@example.org', 'unknown').verdict).toMatchObject({ code: 550, enhancedCode: '5.1.1' });
    expect(rcpt('nobody3@example.org', 'unknown').verdict).toMatchObject({ code: 550, enhancedCode: '5.7.1', rule: 'defence.dictionary_attack' });
    expect(rcpt('alice@example.org', 'known').verdict).toMatchObject({ code: 550, enhancedCode: '5.7.1', rule: 'defence.dictionary_attack' });
  });

  test('worms are discarded by default (never bounced), forged bounces refused unless they passed our hosts', () => {
    const rs = rules('defences: { worms: true, forged_bounces: { our_hosts: [mx1.example.org] } }\n');
    const message = (over: object) => ({ headers: [], attachments: [], parts: 1, bodyBytes: 10, ...over });
    const eom = (f: Partial<Facts>): Decision => run(rs, { protocol: 'milter', stage: 'eom', clientAddress: '192.0.2.3', sender: 'a@example.net', ...f });
    expect(eom({ message: message({ attachments: [{ filename: 'photo.pif', contentType: 'application/octet-stream', archive: 'x.zip' }] }) }).verdict).toMatchObject({
      action: 'discard',
      rule: 'defence.worms',
    });
    expect(eom({ sender: '', message: message({ returnedReceived: ['from evil.example.net by mx.other.example'] }) }).verdict).toMatchObject({ action: 'reject', code: 550 });
    expect(eom({ sender: '', message: message({ returnedReceived: ['from pc by MX1.example.org with ESMTP'] }) }).verdict.action).toBe('continue');
  });

  test('contain is never exempt: a stolen password sending through webmail on loopback is contained', () => {
    const rs = rules('defences: { contain: { messages: { max: 1 }, grace: 0s } }\n');
    const store = createMapCounterStore();
    const send = (): Decision => run(rs, { protocol: 'policy', stage: 'eom', clientAddress: '127.0.0.1', saslUsername: 'alice', sender: 'alice@example.org' }, store);
    expect(send().verdict.action).toBe('continue');
    expect(send().verdict).toMatchObject({ action: 'quarantine', rule: 'defence.contain.users-messages' });
  });
});
