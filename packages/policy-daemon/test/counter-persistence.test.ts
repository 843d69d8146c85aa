// Durable local counters: the memory store's snapshot on shutdown and
// periodically, its restore at start (in-process and for the real `levee run`
// process stopped with SIGTERM), damaged files, and which counters a reload keeps.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigText } from '../src/config-file.js';
import { readSnapshot, writeSnapshot } from '../src/counter-snapshot.js';
import { createMemoryStore } from '../src/memory-store.js';
import { askOnce, rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';

jest.setTimeout(60_000);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'levee-snapshot-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RULE = `
rules:
  - name: per-sender
    stage: rcpt
    limit: { key: "{sender}", max: 10, window: 60s }
    action: reject
    text: too many
`;

function config(file: string, interval = '60s'): string {
  return `counters:\n  snapshot: { file: "${file}", interval: ${interval} }\n${RULE}`;
}

async function ask(d: TestDaemon, sender: string, times: number): Promise<string[]> {
  const client = await d.client();
  const out: string[] = [];
  for (let i = 0; i < times; i++) out.push((await client.request(rcptRequest({ sender }))).action);
  return out;
}

const minute = { windowMs: 60_000, buckets: 12 };

test('restart of a memory-store daemon keeps its counters (snapshot on close, restore on start)', async () => {
  const file = join(dir, 'restart.jsonl');
  const first = await startTestDaemon(config(file));
  expect(await ask(first, 'attacker@example.net', 10)).toEqual(Array(10).fill('DUNNO'));
  await first.close();
  expect(existsSync(file)).toBe(true);

  const second = await startTestDaemon(config(file));
  try {
    expect(second.logs.find((l) => l['msg'] === 'counter snapshot restored')).toMatchObject({ restored: 1, skipped: 0 });
    expect(await ask(second, 'attacker@example.net', 1)).toEqual(['550 5.7.1 too many']);
    expect(await ask(second, 'someone-else@example.net', 1)).toEqual(['DUNNO']);
  } finally {
    await second.close();
  }
});

test('counters are also written periodically, without a shutdown', async () => {
  const file = join(dir, 'periodic.jsonl');
  const d = await startTestDaemon(config(file, '1s'));
  try {
    await ask(d, 'a@example.net', 3);
    for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ format: 'levee-counters', version: 1 });
    const entry = JSON.parse(lines[1] ?? '') as [string, number, number, number[]];
    expect(entry[0]).toBe('per-sender|a@example.net');
    expect(entry[1]).toBe(60_000);
    expect(entry[3].reduce((x, y) => x + y, 0)).toBe(3);
  } finally {
    await d.close();
  }
});

test('a damaged or foreign snapshot file is reported and ignored; bad lines are skipped', async () => {
  const foreign = join(dir, 'foreign.jsonl');
  writeFileSync(foreign, 'this is not a snapshot\n');
  const d = await startTestDaemon(config(foreign));
  try {
    expect(d.logs.find((l) => l['msg'] === 'counter snapshot not restored')).toMatchObject({ problem: 'not a levee-counters version 1 file' });
    expect(await ask(d, 'x@example.net', 1)).toEqual(['DUNNO']);
  } finally {
    await d.close();
  }

  const store = createMemoryStore({ maxKeys: 10 });
  const now = 1_700_000_000_000;
  const partly = join(dir, 'partly.jsonl');
  writeFileSync(
    partly,
    [
      JSON.stringify({ format: 'levee-counters', version: 1, written: now }),
      JSON.stringify(['good', 60_000, now / 5000, [0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]]),
      '["truncated", 60000, 3',
      JSON.stringify(['negative', 60_000, now / 5000, [-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]),
      JSON.stringify(['', 60_000, now / 5000, [1]]),
      '',
    ].join('\n'),
  );
  expect(await readSnapshot(store, partly, now)).toEqual({ restored: 1, skipped: 3 });
  expect(store.peek([{ key: 'good', window: minute }], now)).toEqual([4]);
  expect(await readSnapshot(store, join(dir, 'missing.jsonl'), now)).toMatchObject({ restored: 0, problem: 'no snapshot file yet' });
});

test('counters that expired while the daemon was down are not restored; a smaller store keeps the most recent', async () => {
  const file = join(dir, 'aging.jsonl');
  const store = createMemoryStore({ maxKeys: 100 });
  const t = 1_700_000_000_000;
  store.apply([{ key: 'old', amount: 5, window: minute }], t);
  store.apply([{ key: 'mid', amount: 6, window: minute }], t + 30_000);
  store.apply([{ key: 'new', amount: 7, window: minute }], t + 40_000);
  expect(await writeSnapshot(store, file, t + 40_000)).toMatchObject({ counters: 3 });

  // 65 s after the first hit: "old" has left its window.
  const later = createMemoryStore({ maxKeys: 100 });
  expect(await readSnapshot(later, file, t + 65_000)).toEqual({ restored: 2, skipped: 1 });
  expect(later.peek([{ key: 'mid', window: minute }, { key: 'new', window: minute }], t + 65_000)).toEqual([6, 7]);

  const small = createMemoryStore({ maxKeys: 1 });
  await readSnapshot(small, file, t + 40_000);
  expect(small.keysOldestFirst()).toEqual(['new']);
});

describe('reload (SIGHUP) keeps the counters of rules whose identity did not change', () => {
  const reload = (d: TestDaemon, yaml: string): void => {
    const loaded = loadConfigText(yaml, 'reload.yaml');
    if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
    d.daemon.reload(loaded.config, loaded.ruleset, 'reload.yaml');
  };
  const rules = (max: number, window: string, name = 'per-sender'): string =>
    `rules:\n  - name: ${name}\n    stage: rcpt\n    limit: { key: "{sender}", max: ${max}, window: ${window} }\n    action: reject\n    text: too many\n`;

  test('same name and window, another max: counts kept and judged against the new max', async () => {
    const d = await startTestDaemon(rules(10, '60s'));
    try {
      await ask(d, 's@example.net', 5);
      reload(d, rules(5, '60s'));
      expect(await ask(d, 's@example.net', 1)).toEqual(['550 5.7.1 too many']);
    } finally {
      await d.close();
    }
  });

  test('a changed counters section is reported as taking effect at the next restart', async () => {
    const d = await startTestDaemon(rules(5, '60s'));
    try {
      await ask(d, 's@example.net', 5);
      reload(d, `counters: { max_keys: 10 }\n${rules(5, '60s')}`);
      expect(d.logs.some((l) => l['msg'] === 'counters settings changed: they take effect at the next restart')).toBe(true);
      expect(await ask(d, 's@example.net', 1)).toEqual(['550 5.7.1 too many']);
    } finally {
      await d.close();
    }
  });

  test('changed settings read at start only (log, load.sample_interval) are named in a warning', async () => {
    const d = await startTestDaemon(rules(5, '60s'));
    try {
      reload(d, `log: { level: warn }\nload: { sample_interval: 10s }\n${rules(5, '60s')}`);
      const line = d.logs.find((l) => l['msg'] === 'settings read at start only changed: they take effect at the next restart');
      expect(line?.['settings']).toEqual(expect.arrayContaining(['log.level', 'load.sample_interval']));
      expect(line?.['settings']).not.toContain('log.buffered');
    } finally {
      await d.close();
    }
  });

  test('another window, or another name: counting starts afresh', async () => {
    const d = await startTestDaemon(rules(5, '60s'));
    try {
      await ask(d, 's@example.net', 5);
      reload(d, rules(5, '1h'));
      expect(await ask(d, 's@example.net', 5)).toEqual(Array(5).fill('DUNNO'));
      reload(d, rules(5, '1h', 'renamed'));
      expect(await ask(d, 's@example.net', 5)).toEqual(Array(5).fill('DUNNO'));
      expect(await ask(d, 's@example.net', 1)).toEqual(['550 5.7.1 too many']);
    } finally {
      await d.close();
    }
  });
});

describe('levee run (a real process): SIGTERM writes the snapshot, the next start restores it', () => {
  const CLI = join(__dirname, '..', 'dist', 'cli.js');
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
    child = undefined;
  });

  const freePort = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => (address !== null && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
      });
    });

  const start = (file: string): Promise<ChildProcess> =>
    new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, [CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      let output = '';
      const timer = setTimeout(() => reject(new Error(`levee did not start:\n${output}`)), 10_000);
      const onData = (d: Buffer): void => {
        output += d.toString();
        if (output.includes('"levee started"')) {
          clearTimeout(timer);
          resolve(proc);
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('exit', () => reject(new Error(`levee exited:\n${output}`)));
    });


  test('10 requests, SIGTERM, start again: the 11th is refused', async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "tsc -b" first`);
    const port = await freePort();
    const snapshot = join(dir, 'cli.jsonl');
    const file = join(dir, 'cli.yaml');
    writeFileSync(file, `listen: { policy: ["inet:127.0.0.1:${port}"], milter: [] }\nmetrics: { listen: false }\nadmin: { listen: false }\n${config(snapshot)}`);
    const first = await start(file);
    for (let i = 0; i < 10; i++) expect(await askOnce(port, { sender: 'cli@example.net' })).toBe('DUNNO');
    const exited = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));
    first.kill('SIGTERM');
    expect(await exited).toBe(0);

    await start(file);
    expect(await askOnce(port, { sender: 'cli@example.net' })).toBe('550 5.7.1 too many');
  });
});
