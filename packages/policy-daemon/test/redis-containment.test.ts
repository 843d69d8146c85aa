// Contained customers and held mail shared through a real redis-server: a
// customer warned on one MX host is held by another once its grace period is
// over, every host then holds it and lists the mail the others held, and a
// restarted host still holds it.
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';
import { redisConfig } from './support/redis-daemon.js';
import { startRedis, type RedisInstance } from './support/redis.js';

jest.setTimeout(90_000);

const CONTAIN_RULE = `  - name: outbound
    stage: rcpt
    match: { authenticated: true }
    limit: { key: "{sasl_username}", max: 1, window: 1h }
    action: quarantine
    text: "held: sending rate of this account"
    contain: { grace: 10m, hold_for: 2h }
`;
const GRACE_MS = 10 * 60_000;

let redis: RedisInstance;
const daemons: TestDaemon[] = [];

beforeEach(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close()));
  await redis.stop();
});

async function instance(clock: number): Promise<TestDaemon> {
  const d = await startTestDaemon(redisConfig({ url: redis.url, timeout: '2s', rules: CONTAIN_RULE }), { metrics: true });
  d.clock = clock;
  daemons.push(d);
  return d;
}

let message = 0;
/** One RCPT of a new message from alice (a new transaction and queue id each time, varying senders stay under per-sender). */
async function send(d: TestDaemon): Promise<string> {
  message++;
  const c = await d.client();
  const r = await c.request(
    rcptRequest({ sasl_username: 'alice', sasl_method: 'PLAIN', sender: `alice${message}@example.net`, instance: `i${message}`, queue_id: `Q${message}ABC` }),
  );
  return r.action;
}

/** Polls (bounded, no side effects) until `d`'s copy of the shared lists satisfies `ok`; lists refresh every second. */
async function until(ok: () => boolean, timeoutMs = 8000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ok() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  return ok();
}

test('warned on A, held by B after the grace period, then held on A and on a restarted host; held mail listed everywhere', async () => {
  const T = 1_700_000_000_000;
  const a = await instance(T);
  const b = await instance(T);
  expect(await send(a)).toBe('DUNNO');
  // Over the limit: a warning only, on A.
  expect(await send(a)).toBe('DUNNO');
  const phaseOn = (d: TestDaemon): string | undefined => d.daemon.containment.contained().find((c) => c.key === 'outbound|alice')?.state.phase;
  expect(phaseOn(a)).toBe('warned');
  expect(await until(() => phaseOn(b) === 'warned')).toBe(true);

  // Past the grace period, the next message arrives at B: B knows the warning started on A, so it holds.
  a.clock = T + GRACE_MS + 1000;
  b.clock = T + GRACE_MS + 1000;
  expect(await send(b)).toMatch(/^HOLD /);
  expect(await until(() => phaseOn(a) === 'held')).toBe(true);
  expect(await send(a)).toMatch(/^HOLD /);

  // Every host lists the mail every host held, with its queue id.
  const queueIds = (d: TestDaemon): string[] => d.daemon.containment.held().map((h) => h.queueId ?? '').sort();
  expect(await until(() => queueIds(a).length === 2 && queueIds(b).length === 2)).toBe(true);
  expect(queueIds(a)).toEqual(queueIds(b));

  // A host started now holds the customer at once, and lists the held mail.
  const c = await instance(T + GRACE_MS + 2000);
  expect(phaseOn(c)).toBe('held');
  expect(queueIds(c)).toEqual(queueIds(a));
  expect(await send(c)).toMatch(/^HOLD /);

  // Ending the hold on one host ends it everywhere.
  expect(await c.daemon.containment.endContainment('outbound|alice')).toBe(true);
  expect(await until(() => phaseOn(a) === undefined && phaseOn(b) === undefined)).toBe(true);
});
