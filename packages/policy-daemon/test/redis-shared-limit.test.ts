// Two Levee instances pointing at one real redis-server enforce one shared
// limit; their /healthz and metrics say so.
import { Redis } from 'ioredis';
import { decodeCounterValue } from '../src/redis-store.js';
import { rcptRequest, type TestDaemon } from './support/daemon.js';
import { health, startRedisDaemon } from './support/redis-daemon.js';
import { startRedis, type RedisInstance } from './support/redis.js';

jest.setTimeout(60_000);

let redis: RedisInstance;
const daemons: TestDaemon[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close()));
});
afterAll(async () => {
  await redis.stop();
});

test('two instances share one limit: the 11th request in the window is refused whichever instance gets it', async () => {
  // A generous deadline: this test is about sharing, not about timing on a busy CI box.
  const a = await startRedisDaemon({ url: redis.url, timeout: '2s' });
  const b = await startRedisDaemon({ url: redis.url, timeout: '2s' });
  daemons.push(a, b);
  const [ca, cb] = [await a.client(), await b.client()];
  const answers: string[] = [];
  for (let i = 0; i < 16; i++) {
    const client = i % 2 === 0 ? ca : cb;
    answers.push((await client.request(rcptRequest({ sender: 'shared@example.net' }))).action);
  }
  expect(answers.slice(0, 10)).toEqual(Array(10).fill('DUNNO'));
  expect(answers.slice(10)).toEqual(Array(6).fill('550 5.7.1 too many'));
  // Each instance alone saw 8 requests, under the limit: only the shared count refuses.
  expect(a.daemon.localStore.peek([{ key: 'per-sender|shared@example.net', window: { windowMs: 60_000, buckets: 12 } }], a.clock)).toEqual([8]);

  const peek = new Redis(redis.url);
  try {
    const counter = decodeCounterValue(await peek.getBuffer('levee-test:{per-sender|shared@example.net}'));
    expect(counter?.counts.reduce((sum, c) => sum + c, 0)).toBe(16);
  } finally {
    peek.disconnect();
  }

  expect(await health(a)).toEqual({ status: 'ok', backend: 'redis', degraded: false });
  const metrics = await a.metricsText();
  expect(metrics).toMatch(/^levee_counter_store_degraded 0$/m);
  expect(metrics).not.toMatch(/^levee_counter_backend_errors_total\{/m);
  expect(metrics).toMatch(/^levee_counter_evictions_total 0$/m);
});

test('a memory-backend daemon reports backend memory, never degraded', async () => {
  const { startTestDaemon } = await import('./support/daemon.js');
  const d = await startTestDaemon('rules: []\n', { metrics: true });
  daemons.push(d);
  expect(await health(d)).toEqual({ status: 'ok', backend: 'memory', degraded: false });
});
