// log.redact: SASL user names, senders and recipients hidden behind a keyed
// hash in decision log lines, counter keys, `levee top` and `levee report`,
// the same value giving the same token so lines can still be followed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMilterClient, createPolicyClient } from '@levee/milter-proto';
import { compileRules, loadConfig } from '@levee/rules';
import type { Evidence } from '../src/evidence.js';
import { createRedactor, redactToken, showEvidence } from '../src/log-redaction.js';
import { runCli, startCli, type RunningCli } from './support/cli.js';
import { askOnce, rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';
import { tryListen, waitUntil } from './support/process-tools.js';

jest.setTimeout(30_000);

const KEY = 'a-redaction-key-of-some-length';

const RULES = `rules:
  - name: per-recipient-watch
    stage: rcpt
    mode: warn
    limit: { key: "{recipient}", max: 0, window: 60s }
    action: reject
  - name: per-user
    stage: rcpt
    limit: { key: "{sasl_username}", max: 1, window: 60s }
    action: tempfail
    text: "Slow down"
  - name: per-domain
    stage: rcpt
    limit: { key: "{recipient_domain}", max: 1000, window: 60s }
    action: tempfail
`;

const AUTH = { sasl_method: 'PLAIN', sasl_username: 'Alice', sender: 'alice@example.net', recipient: 'bob@example.org' };

const decisions = (d: TestDaemon): Record<string, unknown>[] => d.logs.filter((l) => l['msg'] === 'decision');

describe('decision log lines', () => {
  let d: TestDaemon | undefined;
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });

  test('without log.redact the SASL user, sender, recipient and counter keys are shown as they are', async () => {
    d = await startTestDaemon(RULES);
    const client = await d.client();
    await client.request(rcptRequest(AUTH));
    expect((await client.request(rcptRequest(AUTH))).action).toBe('450 4.7.1 Slow down');
    const line = decisions(d)[1];
    expect(line).toMatchObject({ sasl: 'Alice', sender: 'alice@example.net', rcpt: 'bob@example.org', counter: { key: 'per-user|alice' } });
    expect(line?.['warn']).toEqual([expect.objectContaining({ rule: 'per-recipient-watch', counter: expect.objectContaining({ key: 'per-recipient-watch|bob@example.org' }) })]);
  });

  test('redact all three: keyed tokens (domains kept), the same value the same token, nothing in clear', async () => {
    d = await startTestDaemon(`log: { redact: [sasl_username, sender, recipient], redact_key_file: /etc/levee/redact.key }\n${RULES}`, { redactKey: KEY });
    const client = await d.client();
    await client.request(rcptRequest(AUTH));
    expect((await client.request(rcptRequest(AUTH))).action).toBe('450 4.7.1 Slow down');
    await client.request(rcptRequest({ ...AUTH, sasl_username: 'carol', sender: 'carol@example.net' }));

    const alice = redactToken(KEY, 'alice');
    const [first, second, third] = decisions(d);
    expect(alice).toMatch(/^~[0-9a-f]{12}$/);
    expect(first).toMatchObject({ sasl: alice, sender: `${redactToken(KEY, 'alice@example.net')}@example.net`, rcpt: `${redactToken(KEY, 'bob@example.org')}@example.org` });
    expect(second).toMatchObject({ sasl: alice, action: 'tempfail', counter: { rule: 'per-user', key: `per-user|${alice}`, count: 2 } });
    expect(second?.['warn']).toEqual([
      expect.objectContaining({ counter: expect.objectContaining({ key: `per-recipient-watch|${redactToken(KEY, 'bob@example.org')}` }) }),
    ]);
    expect(third?.['sasl']).toBe(redactToken(KEY, 'carol'));
    expect(third?.['sasl']).not.toBe(alice);
    const text = JSON.stringify(d.logs);
    for (const clear of ['alice', 'Alice', 'carol', 'bob@']) expect(text).not.toContain(clear);
    // Not personal: the client, the HELO name and the domains stay readable.
    expect(first).toMatchObject({ client: '198.51.100.7', helo: 'client.example.net' });
  });

  test('only sasl_username: senders and recipients stay readable', async () => {
    d = await startTestDaemon(`log: { redact: sasl_username }\n${RULES}`);
    const client = await d.client();
    await client.request(rcptRequest(AUTH));
    const [line] = decisions(d);
    expect(line).toMatchObject({ sender: 'alice@example.net', rcpt: 'bob@example.org' });
    expect(line?.['sasl']).toMatch(/^~[0-9a-f]{12}$/);
    expect(JSON.stringify(d.logs)).not.toContain('Alice');
  });

  test('a malformed request is logged without its excerpt (it may carry any value)', async () => {
    d = await startTestDaemon(`log: { redact: [sasl_username] }\n${RULES}`);
    const socket = connect({ host: '127.0.0.1', port: d.policyPort });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.end('request=smtpd_access_policy\nsasl_username Alice\n\n');
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const running = d;
    await waitUntil(() => running.logs.some((l) => l['msg'] === 'malformed policy request, closing the connection'), 10_000);
    const line = d.logs.find((l) => l['msg'] === 'malformed policy request, closing the connection');
    expect(line).toMatchObject({ code: 'missing-equals' });
    expect(line).not.toHaveProperty('detail');
    expect(JSON.stringify(d.logs)).not.toContain('Alice');
  });

  test('milter: the SASL login from {auth_authen} is redacted too', async () => {
    d = await startTestDaemon(`log: { redact: [sasl_username] }\n${RULES}`, { milter: true, redactKey: KEY });
    const socket = connect({ host: '127.0.0.1', port: d.milterPort });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = createMilterClient(socket, { timeoutMs: 5000 });
    try {
      await client.negotiate();
      await client.connect({ hostname: '[198.51.100.7]', family: '4', port: 40000, address: '198.51.100.7' });
      await client.helo('client.example.net');
      await client.mail('<alice@example.net>', [], { i: 'Q1', '{auth_type}': 'PLAIN', '{auth_authen}': 'Alice' });
      await client.rcpt('<bob@example.org>');
    } finally {
      client.close();
    }
    const line = decisions(d).find((l) => l['stage'] === 'rcpt');
    expect(line).toMatchObject({ proto: 'milter', sasl: redactToken(KEY, 'alice'), sender: 'alice@example.net' });
    expect(JSON.stringify(d.logs)).not.toContain('Alice');
  });
});

describe('admin output', () => {
  test('levee top shows redacted counter keys; levee report redacts samples and leaves out the message headers', async () => {
    const d = await startTestDaemon(`log: { redact: [sasl_username, sender, recipient] }\n${RULES}`, { admin: {}, redactKey: KEY });
    try {
      const client = await d.client();
      await client.request(rcptRequest(AUTH));
      await client.request(rcptRequest(AUTH));
      const admin = `http://127.0.0.1:${String(d.daemon.admin?.port)}`;
      const top = await runCli(['top', '--admin', admin, '--json']);
      expect(top.status).toBe(0);
      const keys = (JSON.parse(top.stdout) as { key: string }[]).map((r) => r.key).sort();
      expect(keys).toEqual([`per-domain|example.org`, `per-recipient-watch|${redactToken(KEY, 'bob@example.org')}`, `per-user|${redactToken(KEY, 'alice')}`].sort());
      const report = await runCli(['report', '198.51.100.7', '--admin', admin, '--json']);
      expect(report.status).toBe(0);
      const evidence = JSON.parse(report.stdout) as { samples: { sender?: string; recipient?: string }[]; sampleHeaders?: string };
      expect(evidence.samples[0]).toMatchObject({ sender: `${redactToken(KEY, 'alice@example.net')}@example.net`, recipient: `${redactToken(KEY, 'bob@example.org')}@example.org` });
      expect(evidence.sampleHeaders).toBeUndefined();
      expect(top.stdout + report.stdout).not.toMatch(/alice|bob@/);
    } finally {
      await d.close();
    }
  });
});

describe('showEvidence', () => {
  const evidence: Evidence = {
    address: '198.51.100.7',
    firstSeen: 1,
    lastSeen: 2,
    actions: { reject: 1 },
    rules: { r: 1 },
    origins: [],
    samples: [{ at: 1, stage: 'eom', action: 'reject', rule: 'r', sender: 'alice@example.net', recipient: 'bob@example.org', messageId: '<m1@x>' }],
    sampleHeaders: 'From: alice@example.net\nTo: bob@example.org\n',
  };
  const loaded = loadConfig(RULES, 'x.yaml');
  if (!loaded.ok) throw new Error('RULES invalid');
  const ruleset = compileRules(loaded.config);

  test('redacting sender or recipient redacts the samples and drops the sample headers', () => {
    const shown = showEvidence(evidence, createRedactor(['recipient'], KEY, ruleset));
    expect(shown.samples[0]).toMatchObject({ sender: 'alice@example.net', recipient: `${redactToken(KEY, 'bob@example.org')}@example.org`, messageId: '<m1@x>' });
    expect(shown.sampleHeaders).toBeUndefined();
  });

  test('redacting only the SASL user leaves evidence as it is (it carries no SASL user)', () => {
    expect(showEvidence(evidence, createRedactor(['sasl_username'], KEY, ruleset))).toBe(evidence);
  });
});

describe('levee run with log.redact_key_file (a real process)', () => {
  let dir: string;
  let levee: RunningCli | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'levee-redact-'));
  });
  afterEach(async () => {
    await levee?.stop();
    levee = undefined;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));


  test('stdout carries the token from the key file, the same after a restart; a missing key file is a config error', async () => {
    const port = await tryListen('127.0.0.1', 0);
    if (port === undefined) throw new Error('no free port');
    const keyFile = join(dir, 'redact.key');
    writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
    const file = join(dir, 'levee.yaml');
    writeFileSync(
      file,
      `listen: { policy: ["inet:127.0.0.1:${port}"], milter: [] }\nmetrics: { listen: false }\nadmin: { listen: false }\n` +
        `log: { buffered: false, redact: [sasl_username, sender, recipient], redact_key_file: "${keyFile}" }\n${RULES}`,
    );
    const tokens: unknown[] = [];
    for (let run = 0; run < 2; run++) {
      levee = await startCli(['run', '--config', file]);
      await askOnce(port, AUTH);
      await levee.waitFor('"msg":"decision"');
      tokens.push(levee.logs().find((l) => l['msg'] === 'decision')?.['sasl']);
      expect(levee.output()).not.toMatch(/alice|bob@/i);
      expect(await levee.stop()).toBe(0);
      levee = undefined;
    }
    expect(tokens).toEqual([redactToken(KEY, 'alice'), redactToken(KEY, 'alice')]);

    rmSync(keyFile);
    const check = await runCli(['check-config', file]);
    expect(check.status).toBe(78);
    expect(check.stderr).toMatch(new RegExp(`^${keyFile}: cannot read \\(log\\.redact_key_file\\): ENOENT`));
  });
});
