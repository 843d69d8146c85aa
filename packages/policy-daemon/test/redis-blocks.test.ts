// The postmaster's block list shared through a real redis-server: a block made
// on one Levee instance is enforced by another sharing the Redis, an unblock on
// either lifts it everywhere, a restarted instance still enforces it, and with
// Redis down requests are still answered, blocks made meanwhile hold at once on
// their host and reach Redis (and the other hosts) once it is back.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { runCli } from './support/cli.js';
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';
import { redisConfig } from './support/redis-daemon.js';
import { startRedis, type RedisInstance } from './support/redis.js';

jest.setTimeout(90_000);

const TOKEN = 'shared-blocks-token-0123456789';
const BLOCKED = '550 5.7.1 Your address is blocked by the postmaster';

let dir: string;
let tokenFile: string;
let redis: RedisInstance;
const daemons: TestDaemon[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'levee-redis-blocks-'));
  tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
});
beforeEach(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close()));
  await redis.stop();
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function instance(): Promise<TestDaemon> {
  const d = await startTestDaemon(redisConfig({ url: redis.url, timeout: '2s' }), { metrics: true, admin: { tokenFile } });
  daemons.push(d);
  return d;
}

function admin(d: TestDaemon): string {
  return `http://127.0.0.1:${String(d.daemon.admin?.port)}`;
}

function levee(d: TestDaemon, args: readonly string[]): ReturnType<typeof runCli> {
  return runCli([...args, '--admin', admin(d)], { LEVEE_ADMIN_TOKEN: TOKEN });
}

let probe = 0;
/** One RCPT from `client`; a fresh sender each time, so the shared per-sender limit never answers instead of the block list. */
async function answer(d: TestDaemon, client: string): Promise<string> {
  const c = await d.client();
  probe++;
  return (await c.request(rcptRequest({ client_address: client, sender: `probe${String(probe)}@example.net` }))).action;
}

/** Polls (bounded) until `d` answers `want` for `client`; the list refresh is 1 s. */
async function eventually(d: TestDaemon, client: string, want: string, timeoutMs = 8000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = await answer(d, client);
  while (last !== want && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    last = await answer(d, client);
  }
  return last;
}

test('a block made on A is enforced by B; an unblock on B lifts it on A', async () => {
  const a = await instance();
  const b = await instance();
  expect(await answer(b, '192.0.2.99')).toBe('DUNNO');

  const blocked = await levee(a, ['block', '192.0.2.0/24', '--reason', 'worm outbreak']);
  expect(blocked).toMatchObject({ status: 0, stdout: 'blocked 192.0.2.0/24\n' });
  // A at once (written before the answer), B after its next refresh.
  expect(await answer(a, '192.0.2.99')).toBe(BLOCKED);
  expect(await eventually(b, '192.0.2.99', BLOCKED)).toBe(BLOCKED);
  expect(await answer(b, '198.51.100.1')).toBe('DUNNO');
  expect((await levee(b, ['blocks'])).stdout).toMatch(/^192\.0\.2\.0\/24 +until unblocked +worm outbreak$/m);

  const unblocked = await levee(b, ['unblock', '192.0.2.0/24']);
  expect(unblocked).toMatchObject({ status: 0, stdout: 'unblocked 192.0.2.0/24\n' });
  expect(await answer(b, '192.0.2.99')).toBe('DUNNO');
  expect(await eventually(a, '192.0.2.99', 'DUNNO')).toBe('DUNNO');
  expect((await levee(a, ['unblock', '192.0.2.0/24'])).stderr).toMatch(/is not blocked/);

  // In Redis, under the configured prefix: the hash is gone with its last record, the version stays.
  const peek = new Redis(redis.url);
  try {
    expect(await peek.exists('levee-test:{list:blocks}')).toBe(0);
    expect(await peek.exists('levee-test:{list:blocks}:ver')).toBe(1);
  } finally {
    peek.disconnect();
  }
});

test('a block --for lives in Redis with its expiry; once it has passed, every host accepts again and Redis drops it', async () => {
  const a = await instance();
  const b = await instance();
  expect((await levee(a, ['block', '203.0.113.5', '--for', '10m'])).status).toBe(0);
  expect(await eventually(b, '203.0.113.5', BLOCKED)).toBe(BLOCKED);
  const peek = new Redis(redis.url);
  try {
    const until = a.clock + 10 * 60_000;
    expect(await peek.zscore('levee-test:{list:blocks}:exp', '203.0.113.5/32')).toBe(String(until));
    expect(await peek.hget('levee-test:{list:blocks}', '203.0.113.5/32')).toMatch(new RegExp(`^${String(a.clock)} ${String(until)} \\{`));

    a.clock += 10 * 60_000;
    b.clock += 10 * 60_000;
    expect(await answer(a, '203.0.113.5')).toBe('DUNNO');
    expect(await answer(b, '203.0.113.5')).toBe('DUNNO');
    // The next refresh (either host) removes the expired record from Redis.
    const deadline = Date.now() + 8000;
    while ((await peek.hexists('levee-test:{list:blocks}', '203.0.113.5/32')) === 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await peek.hexists('levee-test:{list:blocks}', '203.0.113.5/32')).toBe(0);
    expect(await peek.zcard('levee-test:{list:blocks}:exp')).toBe(0);
  } finally {
    peek.disconnect();
  }
});

test('a restarted instance enforces the blocks at once', async () => {
  const a = await instance();
  expect((await levee(a, ['block', '2001:db8:bad::/48', '--reason', 'spam run'])).status).toBe(0);
  expect((await levee(a, ['block', '198.51.100.66', '--for', '1h'])).status).toBe(0);
  await a.close();
  daemons.splice(daemons.indexOf(a), 1);

  const again = await instance();
  // No wait: the list is read before the listeners open.
  expect(await answer(again, '2001:db8:bad::25')).toBe(BLOCKED);
  expect(await answer(again, '198.51.100.66')).toBe(BLOCKED);
  expect(await answer(again, '198.51.100.67')).toBe('DUNNO');
  expect(again.daemon.blocks().map((e) => e.network)).toEqual(['198.51.100.66/32', '2001:db8:bad::/48']);
});

test('with Redis down requests are answered and a new block holds on its host; when Redis is back it reaches every host', async () => {
  const a = await instance();
  const b = await instance();
  expect((await levee(a, ['block', '192.0.2.7'])).status).toBe(0);
  expect(await eventually(b, '192.0.2.7', BLOCKED)).toBe(BLOCKED);

  await redis.kill();
  // Decisions never wait on the list: the last known list still refuses, others pass (counted locally).
  expect(await answer(a, '192.0.2.7')).toBe(BLOCKED);
  expect(await answer(b, '192.0.2.7')).toBe(BLOCKED);
  expect(await answer(a, '198.51.100.1')).toBe('DUNNO');

  const during = await levee(a, ['block', '203.0.113.9', '--reason', 'during the outage']);
  expect(during.status).toBe(0);
  expect(during.stdout).toBe('blocked 203.0.113.9/32 on this host only for now: redis is unreachable; written there (for every host) when it is back\n');
  expect(await answer(a, '203.0.113.9')).toBe(BLOCKED);
  expect(await answer(b, '203.0.113.9')).toBe('DUNNO');
  expect((await levee(a, ['status'])).stdout).toMatch(/^blocked: +2 \(1 change\(s\) waiting for redis\)$/m);
  expect(await a.metricsText()).toMatch(/^levee_shared_list_pending_changes\{list="blocks"\} 1$/m);

  // Redis comes back empty (no persistence): A writes its pending block, the known list is written back, B follows.
  await redis.restart();
  expect(await eventually(b, '203.0.113.9', BLOCKED)).toBe(BLOCKED);
  // B may read the list between A's pending write and A's write-back of what it knew: eventually both.
  expect(await eventually(b, '192.0.2.7', BLOCKED)).toBe(BLOCKED);
  expect(a.daemon.blockList.pending()).toBe(0);
  // Whichever host noticed first wrote back what it knew (both may).
  expect([...a.logs, ...b.logs].some((l) => l['msg'] === 'shared list: redis came back without the list; writing back the records this host knew')).toBe(true);
  const peek = new Redis(redis.url);
  try {
    expect(Object.keys(await peek.hgetall('levee-test:{list:blocks}')).sort()).toEqual(['192.0.2.7/32', '203.0.113.9/32']);
  } finally {
    peek.disconnect();
  }
});
