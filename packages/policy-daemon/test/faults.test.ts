// Faults the daemon must survive while it keeps answering mail: a config file
// removed or made unreadable under it (SIGHUP), a full disk under its counter
// snapshot, and a decision that throws. Real processes, real errors: the
// daemon runs as `nobody` so that mode 000 really is unreadable, and in a
// private mount namespace on a full tmpfs so that the snapshot write really
// gets ENOSPC. Needs root and `tsc -b` first (dist/cli.js).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMilterClient } from '@levee/milter-proto';
import { CLI, startCli, type RunningCli } from './support/cli.js';
import { askOnce, rcptRequest, startTestDaemon } from './support/daemon.js';
import { freeLoopbackPortPair, unshareBinary } from './support/process-tools.js';

jest.setTimeout(60_000);

const NOBODY = 65534;
let dir: string;
let levee: RunningCli | undefined;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "tsc -b" first`);
  if (process.getuid?.() !== 0) throw new Error('the fault tests need root (a process as nobody, a private mount namespace)');
  dir = mkdtempSync(join(tmpdir(), 'levee-faults-'));
  chmodSync(dir, 0o755);
});
afterEach(async () => {
  await levee?.stop();
  levee = undefined;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The value of one metric sample (0 when absent). */
async function metric(port: number, sample: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

function listenConfig(policy: number, metrics: number): string {
  return `listen: { policy: ["inet:127.0.0.1:${policy}"], milter: [] }\nmetrics: { listen: "127.0.0.1:${metrics}" }\nadmin: { listen: false }\nlog: { buffered: false }\n`;
}

const blockRule = (domain: string, extra = ''): string =>
  `rules:\n  - name: block\n    match: { sender: ["@${domain}"${extra}] }\n    action: reject\n    text: "Blocked"\n`;

describe('SIGHUP with a broken config file: the running config keeps serving', () => {
  const FAILED = 'levee_config_reloads_total{outcome="failed"}';

  test('removed, unreadable (mode 000 for nobody), or with a regex that backtracks catastrophically', async () => {
    const [policy, metrics] = await freeLoopbackPortPair();
    const file = join(dir, 'reload.yaml');
    writeFileSync(file, listenConfig(policy, metrics) + blockRule('one.example'), { mode: 0o644 });
    levee = await startCli(['run', '--config', file], { uid: NOBODY, gid: NOBODY });
    const running = levee;
    expect(await askOnce(policy, { sender: 'x@one.example' })).toBe('550 5.7.1 Blocked');
    const failures = (): Record<string, unknown>[] => running.logs().filter((l) => l['msg'] === 'reload failed, keeping the running configuration');

    // 1. The file is gone.
    rmSync(file);
    running.child.kill('SIGHUP');
    await running.waitFor('reload failed', 1);
    expect(failures()[0]).toMatchObject({ level: 50, config: file, errors: [expect.stringMatching(new RegExp(`^${file}: cannot read: ENOENT`))] });
    expect(await metric(metrics, FAILED)).toBe(1);
    expect(await askOnce(policy, { sender: 'x@one.example' })).toBe('550 5.7.1 Blocked');

    // 2. The file is back, but the daemon's user cannot read it.
    writeFileSync(file, listenConfig(policy, metrics) + blockRule('two.example'), { mode: 0o000 });
    chmodSync(file, 0o000);
    running.child.kill('SIGHUP');
    await running.waitFor('reload failed', 2);
    expect(failures()[1]).toMatchObject({ config: file, errors: [expect.stringMatching(new RegExp(`^${file}: cannot read: EACCES`))] });
    expect(await metric(metrics, FAILED)).toBe(2);
    expect(await askOnce(policy, { sender: 'x@one.example' })).toBe('550 5.7.1 Blocked');
    expect(await askOnce(policy, { sender: 'x@two.example' })).toBe('DUNNO');

    // 3. Readable, but a regex in it can backtrack catastrophically.
    writeFileSync(file, listenConfig(policy, metrics) + blockRule('two.example', ', "/^(a|a)*$/"'));
    chmodSync(file, 0o644);
    running.child.kill('SIGHUP');
    await running.waitFor('reload failed', 3);
    expect(failures()[2]).toMatchObject({
      config: file,
      errors: [expect.stringMatching(new RegExp(`^${file}:\\d+:\\d+: rules\\.0\\.match\\.sender\\.1: rule block: regex /\\^\\(a\\|a\\)\\*\\$/ can backtrack catastrophically`))],
    });
    expect(await metric(metrics, FAILED)).toBe(3);
    expect(await askOnce(policy, { sender: 'x@one.example' })).toBe('550 5.7.1 Blocked');

    // 4. Fixed: the same path reloads (so the failures above were the file's, not the setup's).
    writeFileSync(file, listenConfig(policy, metrics) + blockRule('two.example'));
    running.child.kill('SIGHUP');
    await running.waitFor('configuration reloaded');
    expect(await askOnce(policy, { sender: 'x@two.example' })).toBe('550 5.7.1 Blocked');
    expect(await askOnce(policy, { sender: 'x@one.example' })).toBe('DUNNO');
    expect(await metric(metrics, 'levee_config_reloads_total{outcome="ok"}')).toBe(1);
    expect(await metric(metrics, FAILED)).toBe(3);
  });
});

describe('disk full under counters.snapshot', () => {
  test('requests are still answered; each failed snapshot is logged (ENOSPC) and counted', async () => {
    const [policy, metrics] = await freeLoopbackPortPair();
    const snapshots = join(dir, 'full');
    mkdirSync(snapshots);
    const snapshot = join(snapshots, 'counters.jsonl');
    const file = join(dir, 'full.yaml');
    writeFileSync(
      file,
      `${listenConfig(policy, metrics)}counters: { snapshot: { file: "${snapshot}", interval: 1s } }\n` +
        'rules:\n  - name: per-sender\n    limit: { key: "{sender}", max: 100, window: 60s }\n    action: tempfail\n',
    );
    // A private mount namespace: a 64 KiB tmpfs over the snapshot directory,
    // filled up, visible to this daemon only and gone when it exits.
    const script = [
      'set -e',
      'mount --make-rprivate /',
      'mount -t tmpfs -o size=64k,mode=755 levee-full "$SNAPSHOTS"',
      'head -c 1048576 /dev/zero > "$SNAPSHOTS/filler" 2>/dev/null || true',
      'exec "$NODE" "$CLI" run --config "$CONFIG"',
    ].join('\n');
    levee = await startCli(['--mount', '/bin/sh', '-c', script], {
      command: unshareBinary(),
      env: { SNAPSHOTS: snapshots, NODE: process.execPath, CLI, CONFIG: file },
    });
    const running = levee;
    expect(await askOnce(policy, { sender: 'a@example.net' })).toBe('DUNNO');
    await running.waitFor('counter snapshot failed', 1, 15_000);
    const failed = running.logs().find((l) => l['msg'] === 'counter snapshot failed');
    expect(failed).toMatchObject({ level: 50, file: snapshot, err: expect.stringContaining('ENOSPC') });
    expect(await metric(metrics, 'levee_counter_snapshots_total{outcome="failed"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(metrics, 'levee_counter_snapshots_total{outcome="ok"}')).toBe(0);
    // Mail still flows, counted as before.
    for (let i = 0; i < 5; i++) expect(await askOnce(policy, { sender: 'a@example.net' })).toBe('DUNNO');
    await running.waitFor('counter snapshot failed', 2, 15_000);
    expect(await askOnce(policy, { sender: 'b@example.net' })).toBe('DUNNO');
    // The full filesystem was the daemon's alone.
    expect(readdirSync(snapshots)).toEqual([]);
    expect(await running.stop()).toBe(0);
    expect(running.output()).toContain('levee stopped');
  });
});

describe('a decision that throws answers the configured fail action', () => {
  // The policy side is covered in policy-service.test.ts ("when deciding throws ...").
  test('milter: tempfail at RCPT, logged and counted per protocol', async () => {
    const d = await startTestDaemon(
      'policy: { fail_action: tempfail }\nrules:\n  - name: per-client\n    stage: rcpt\n    limit: { key: "{client_address}", max: 3, window: 60s }\n    action: tempfail\n',
      { milter: true, metrics: true },
    );
    const socket = connect({ host: '127.0.0.1', port: d.milterPort });
    const client = createMilterClient(socket, { timeoutMs: 5000 });
    try {
      d.daemon.store.apply = () => {
        throw new Error('rule evaluation exploded');
      };
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      await client.negotiate();
      await client.connect({ hostname: '[198.51.100.7]', family: '4', port: 40000, address: '198.51.100.7' });
      await client.helo('client.example.net');
      await client.mail('<alice@example.net>');
      const r = await client.rcpt('<bob@example.org>');
      expect(r.reply).toMatchObject({ type: 'REPLYCODE', text: '451 4.3.0 Temporary policy failure, try again later' });
      expect(await d.metricsText()).toMatch(/levee_internal_errors_total\{protocol="milter"\} 1\n/);
      expect(d.logs.find((l) => l['msg'] === 'decision failed, answering the fail action')).toMatchObject({ level: 50, err: 'Error: rule evaluation exploded' });
      expect(d.logs.find((l) => l['msg'] === 'decision' && l['stage'] === 'rcpt')).toMatchObject({ action: 'tempfail', rule: 'fail-action' });
    } finally {
      client.close();
      await d.close();
    }
  });
});
