// Content facts (headers, attachments), milter concurrency facts and add_header.
import { compileRules, decideWithStore, formatConfigIssue, loadConfig, type Decision, type Facts, type MessageFacts, type Ruleset } from '../src/index.js';
import { createMapCounterStore } from './map-counter-store.js';

function ruleset(rulesYaml: string): Ruleset {
  const r = loadConfig(`rules:\n${rulesYaml}`, 'test.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return compileRules(r.config);
}

function issues(rulesYaml: string): string[] {
  const r = loadConfig(`rules:\n${rulesYaml}`, 'test.yaml');
  return r.ok ? [] : r.issues.map(formatConfigIssue);
}

const message = (over: Partial<MessageFacts> = {}): MessageFacts => ({ headers: [], attachments: [], parts: 1, bodyBytes: 100, ...over });

function run(rs: Ruleset, over: Partial<Facts>): Decision {
  const facts: Facts = { protocol: 'milter', stage: 'eom', clientAddress: '192.0.2.1', sender: 'a@example.net', ...over };
  const d = decideWithStore(facts, rs, createMapCounterStore(), 1_000_000);
  if (d instanceof Promise) throw new Error('sync store');
  return d;
}

describe('attachment conditions', () => {
  const rs = ruleset(`
  - name: worm-attachment
    stage: eom
    match: { attachment_name: [".exe", ".scr", ".pif", "exact name.bat", "/^invoice[0-9]+\\\\.zip$/i"] }
    action: reject
    text: "Dangerous attachment"
  - name: zip-type
    stage: eom
    match: { attachment_type: ["application/x-msdownload"] }
    action: quarantine
`);

  test.each([
    ['virus.exe', 'worm-attachment'],
    ['VIRUS.EXE', 'worm-attachment'],
    ['document.pdf.pif', 'worm-attachment'],
    ['screensaver.scr', 'worm-attachment'],
    ['Exact Name.bat', 'worm-attachment'],
    ['Invoice2024.ZIP', 'worm-attachment'],
    ['invoice.zip', undefined],
    ['report.pdf', undefined],
    ['exe', undefined],
    ['notes.exe.txt', undefined],
  ])('file %j -> %s', (filename, rule) => {
    const d = run(rs, { message: message({ attachments: [{ filename, contentType: 'application/octet-stream' }] }) });
    expect(d.verdict.rule).toBe(rule);
  });

  test('any one attachment of several is enough; MIME type patterns are case-insensitive', () => {
    const attachments = [
      { filename: 'a.txt', contentType: 'text/plain' },
      { contentType: 'application/x-msdownload' },
    ];
    expect(run(rs, { message: message({ attachments }) }).verdict).toMatchObject({ action: 'quarantine', rule: 'zip-type' });
  });

  test('no message facts (policy path) never matches a content condition', () => {
    expect(run(rs, { protocol: 'policy' }).verdict.action).toBe('continue');
  });
});

describe('header conditions', () => {
  const rs = ruleset(`
  - name: av-notification
    stage: eom
    match:
      header:
        Subject: ["/virus (found|detected)/i", "Undeliverable mail"]
        X-Mailer: ["/antivirus/i"]
    action: discard
`);

  test('every named header must match (AND), any header of that name may (OR), names case-insensitive', () => {
    const headers = [
      { name: 'subject', value: 'VIRUS FOUND in your mail' },
      { name: 'x-mailer', value: 'SuperAntivirus 2004' },
    ];
    expect(run(rs, { message: message({ headers }) }).verdict).toMatchObject({ action: 'discard', rule: 'av-notification' });
    expect(run(rs, { message: message({ headers: [headers[0] ?? { name: '', value: '' }] }) }).verdict.action).toBe('continue');
    const exact = [
      { name: 'Subject', value: 'undeliverable MAIL' },
      { name: 'X-Mailer', value: 'antivirus gateway' },
    ];
    expect(run(rs, { message: message({ headers: exact }) }).verdict.action).toBe('discard');
  });
});

describe('concurrency conditions', () => {
  const rs = ruleset(`
  - name: per-client-concurrency
    stage: connect
    match: { client_concurrency: { min: 6 } }
    action: tempfail
    code: 421
    enhanced_code: "4.7.0"
    text: "Too many connections from your address"
  - name: total-concurrency
    stage: connect
    match: { total_concurrency: { min: 101 } }
    action: tempfail
    code: 421
    enhanced_code: "4.3.2"
    text: "Too busy, try again later"
`);
  test.each([
    [5, 50, 'continue'],
    [6, 50, 'tempfail'],
    [1, 101, 'tempfail'],
  ] as const)('client %d, total %d -> %s', (client, total, action) => {
    expect(run(rs, { stage: 'connect', clientConcurrency: client, totalConcurrency: total }).verdict.action).toBe(action);
  });
  test('absent concurrency (policy path) never matches', () => {
    expect(run(rs, { stage: 'connect' }).verdict.action).toBe('continue');
  });
});

describe('add_header', () => {
  const rs = ruleset(`
  - name: tag-external
    stage: eom
    match: { header: { Subject: ["/./"] } }
    action: continue
    add_header: "X-Levee-Checked: yes"
  - name: tag-big
    stage: eom
    match: { size: { min: 1000 } }
    action: continue
    add_header: ["X-Levee-Size: big", "X-Levee-Note: folded is not allowed here"]
  - name: hold-attachments
    stage: eom
    match: { attachment_name: [".zip"] }
    action: quarantine
    text: "zip held"
    add_header: "X-Levee-Held: zip"
`);
  const subject = [{ name: 'Subject', value: 'hello' }];

  test('a continue rule with add_header tags the message and evaluation goes on', () => {
    const d = run(rs, { size: 5000, message: message({ headers: subject }) });
    expect(d.verdict).toEqual({
      action: 'continue',
      addHeaders: [
        { name: 'X-Levee-Checked', value: 'yes' },
        { name: 'X-Levee-Size', value: 'big' },
        { name: 'X-Levee-Note', value: 'folded is not allowed here' },
      ],
    });
    expect(d.trail.map((t) => t.outcome)).toEqual(['tagged', 'tagged', 'no-match']);
  });

  test('tags and the deciding rule’s own headers are combined, tags first', () => {
    const d = run(rs, { message: message({ headers: subject, attachments: [{ filename: 'x.zip', contentType: 'application/zip' }] }) });
    expect(d.verdict).toMatchObject({
      action: 'quarantine',
      rule: 'hold-attachments',
      text: 'zip held',
      addHeaders: [
        { name: 'X-Levee-Checked', value: 'yes' },
        { name: 'X-Levee-Held', value: 'zip' },
      ],
    });
  });

  test('bad header lines are config errors with their position', () => {
    expect(issues('  - name: a\n    action: continue\n    add_header: "no colon"\n')).toEqual([
      'test.yaml:4:17: rules.0.add_header: "no colon" is not "Name: value" with a header name of printable ASCII',
    ]);
    expect(issues('  - name: a\n    action: continue\n    add_header: "X-A:"\n')).toEqual(['test.yaml:4:17: rules.0.add_header: header X-A: the header value is empty']);
    expect(issues('  - name: a\n    action: continue\n    add_header: "X-A: \\u0007"\n')[0]).toMatch(/header value must not contain control characters/);
    expect(issues('  - name: a\n    action: continue\n    match: { header: { "Bad Name": ["x"] } }\n')[0]).toMatch(/match\.header\.Bad Name/);
  });
});
