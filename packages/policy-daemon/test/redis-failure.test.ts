// A slow or dead Redis never stalls mail: with a real redis-server killed
// (SIGKILL) or frozen (SIGSTOP: connections accepted, nothing answered) in the
// middle of a load, every request is answered within the deadline plus a
// generous margin, from local counts; the breaker opens, /healthz and the
// metrics say degraded, a few log lines (not one per request) explain it; and
// once Redis is back, shared counting resumes.
import { performance } from 'node:perf_hooks';
import { rcptRequest, type TestDaemon } from './support/daemon.js';
import { health, percentile, runLoad, startRedisDaemon, waitDegraded } from './support/redis-daemon.js';
import { startRedis, type RedisInstance } from './support/redis.js';

jest.setTimeout(90_000);

// The deadline under test is the default (25ms). "Never stalls" is checked as
// "answered within deadline + 1s": a request that waited on the dead store would
// wait for as long as Redis is stopped (seconds), while scheduling noise on 2
// cores shared with other jobs was seen to reach 230ms. Never an exact timing.
const DEADLINE_MS = 25;
const MARGIN_MS = 1000;

let redis: RedisInstance;
const daemons: TestDaemon[] = [];

beforeEach(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close()));
  await redis.stop();
});

async function two(): Promise<[TestDaemon, TestDaemon]> {
  const a = await startRedisDaemon({ url: redis.url });
  const b = await startRedisDaemon({ url: redis.url });
  daemons.push(a, b);
  return [a, b];
}

/** Shared counting works: 6 requests via a, 5 via b for one sender; the 11th is refused. */
async function expectShared(a: TestDaemon, b: TestDaemon, sender: string): Promise<void> {
  const [ca, cb] = [await a.client(), await b.client()];
  const answers: string[] = [];
  for (let i = 0; i < 11; i++) answers.push((await (i % 2 === 0 ? ca : cb).request(rcptRequest({ sender }))).action);
  expect(answers.slice(0, 10)).toEqual(Array(10).fill('DUNNO'));
  expect(answers[10]).toBe('550 5.7.1 too many');
}

function warnLines(d: TestDaemon): Record<string, unknown>[] {
  return d.logs.filter((l) => l['level'] === 40);
}

test('killing Redis mid-load: every request answered in time from local counts; recovery resumes shared counting', async () => {
  const [a, b] = await two();
  await expectShared(a, b, 'before@example.net');

  let killed: Promise<void> | undefined;
  const load = await runLoad(a, 4, 3000, (elapsed) => {
    if (elapsed > 1000) killed ??= redis.kill();
  });
  await killed;
  expect(load.errors).toEqual([]);
  // Every answer is a decision (the unique senders stay under the limit), never the internal fail action.
  expect([...load.actions.keys()]).toEqual(['DUNNO']);
  expect(load.latencies.length).toBeGreaterThan(50);
  expect(Math.max(...load.latencies)).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  console.log(
    `redis killed: ${load.latencies.length} requests, p50 ${percentile(load.latencies, 50).toFixed(2)}ms, p99 ${percentile(load.latencies, 99).toFixed(2)}ms, max ${Math.max(...load.latencies).toFixed(2)}ms`,
  );

  expect(await health(a)).toEqual({ status: 'ok', backend: 'redis', degraded: true });
  const metrics = await a.metricsText();
  expect(metrics).toMatch(/^levee_counter_store_degraded 1$/m);
  expect(metrics).toMatch(/^levee_counter_backend_errors_total\{backend="redis",outcome="circuit_open"\} [1-9]\d*$/m);
  // A few lines, not one per request: the transition plus rate-limited reports.
  expect(warnLines(a).some((l) => l['msg'] === 'shared counter store degraded: counting locally, retrying in the background')).toBe(true);
  expect(warnLines(a).length).toBeLessThan(15);

  // While degraded each host counts its own share: 10 on a alone, the 11th refused locally.
  const ca = await a.client();
  for (let i = 0; i < 10; i++) expect((await ca.request(rcptRequest({ sender: 'outage@example.net' }))).action).toBe('DUNNO');
  expect((await ca.request(rcptRequest({ sender: 'outage@example.net' }))).action).toBe('550 5.7.1 too many');

  await redis.restart();
  const recoveredIn = await Promise.all([waitDegraded(a, false, 20_000), waitDegraded(b, false, 20_000)]);
  console.log(`redis restarted: both instances back to shared counting after ${recoveredIn.map((ms) => ms.toFixed(0)).join(' / ')}ms`);
  expect(a.logs.some((l) => l['msg'] === 'shared counter store recovered: counting in redis again')).toBe(true);
  await expectShared(a, b, 'after@example.net');
  expect(await a.metricsText()).toMatch(/^levee_counter_store_degraded 0$/m);
});

test('a Redis that accepts connections but never answers (SIGSTOP) does not stall requests', async () => {
  const [a, b] = await two();
  await expectShared(a, b, 'before@example.net');

  redis.pause();
  let load;
  try {
    load = await runLoad(a, 4, 2500);
  } finally {
    redis.resume();
  }
  expect(load.errors).toEqual([]);
  expect([...load.actions.keys()]).toEqual(['DUNNO']);
  expect(load.latencies.length).toBeGreaterThan(50);
  const slow = load.latencies.filter((ms) => ms >= DEADLINE_MS - 1).length;
  console.log(
    `redis SIGSTOPped: ${load.latencies.length} requests, ${slow} waited for the ${DEADLINE_MS}ms deadline, p50 ${percentile(load.latencies, 50).toFixed(2)}ms, p99 ${percentile(load.latencies, 99).toFixed(2)}ms, max ${Math.max(...load.latencies).toFixed(2)}ms`,
  );
  expect(Math.max(...load.latencies)).toBeLessThan(DEADLINE_MS + MARGIN_MS);
  // The breaker opened: only the first few requests (those before it and in flight then) paid the
  // deadline (outcome timeout); the rest were answered from local counts at once (circuit_open).
  const metrics = await a.metricsText();
  const timeouts = Number(/^levee_counter_backend_errors_total\{backend="redis",outcome="timeout"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
  const skipped = Number(/^levee_counter_backend_errors_total\{backend="redis",outcome="circuit_open"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
  expect(timeouts).toBeGreaterThan(0);
  expect(timeouts).toBeLessThan(20);
  expect(skipped).toBeGreaterThan(timeouts);

  await Promise.all([waitDegraded(a, false, 20_000), waitDegraded(b, false, 20_000)]);
  await expectShared(a, b, 'after@example.net');
});

test('on_store_error: fail_closed tempfails while the store is down; fail_open decides on local counts', async () => {
  const d = await startRedisDaemon({
    url: redis.url,
    rules: `
  - name: per-client
    stage: rcpt
    limit: { key: "{client_address}", max: 100, window: 60s }
    on_store_error: fail_closed
    action: reject
`,
  });
  daemons.push(d);
  const client = await d.client();
  expect((await client.request(rcptRequest({ sender: 'x@example.net' }))).action).toBe('DUNNO');
  await redis.kill();
  const reply = await client.request(rcptRequest({ sender: 'y@example.net' }));
  expect(reply.action).toBe('451 4.3.0 Rate limit service temporarily unavailable, try again later');
  // per-sender (fail_open, first) judged its local count, 1 of 10, and let per-client (fail_closed) decide.
  expect(d.logs.some((l) => l['rule'] === 'per-client' && l['action'] === 'tempfail')).toBe(true);
});

test('a daemon whose Redis is down at start starts anyway and answers from local counts at once', async () => {
  await redis.kill();
  const d = await startRedisDaemon({ url: redis.url });
  daemons.push(d);
  const client = await d.client();
  const started = performance.now();
  for (let i = 0; i < 10; i++) expect((await client.request(rcptRequest({ sender: 'cold@example.net' }))).action).toBe('DUNNO');
  expect((await client.request(rcptRequest({ sender: 'cold@example.net' }))).action).toBe('550 5.7.1 too many');
  expect(performance.now() - started).toBeLessThan(11 * (DEADLINE_MS + MARGIN_MS));
  expect(await health(d)).toMatchObject({ degraded: true });

  await redis.restart();
  await waitDegraded(d, false, 20_000);
  // Back on the (empty) shared store: this sender starts from the shared count.
  expect((await client.request(rcptRequest({ sender: 'cold@example.net' }))).action).toBe('DUNNO');
});
