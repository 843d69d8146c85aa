// The same CounterStore suite against the memory store, the Redis store on a
// real redis-server, and the Redis store behind the fallback store: equal
// window semantics, proven by running identical tests.
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { createCircuitBreaker } from '../src/circuit-breaker.js';
import { createFallbackStore } from '../src/fallback-store.js';
import { createMemoryStore } from '../src/memory-store.js';
import { countStep, createRedisStore, decodeCounterValue, COUNT_MANY_SCRIPT, COUNT_SCRIPT, MAX_COUNTERS_PER_CALL } from '../src/redis-store.js';
import { describeCounterStoreContract } from './support/counter-store-contract.js';
import { startRedis, type RedisInstance } from './support/redis.js';

jest.setTimeout(60_000);

let redis: RedisInstance;
let client: Redis;
let prefixSeq = 0;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { enableOfflineQueue: true, maxRetriesPerRequest: 1, lazyConnect: false });
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

describeCounterStoreContract('memory', () => Promise.resolve({ store: createMemoryStore({ maxKeys: 1000 }) }));

// A fresh prefix per store: tests never see each other's keys.
describeCounterStoreContract('redis', () => Promise.resolve({ store: createRedisStore(client, `t${++prefixSeq}:`) }));

// Two connections taking the calls in turn (counters.redis.connections).
describeCounterStoreContract('redis over two connections', () => {
  const second = client.duplicate();
  return Promise.resolve({
    store: createRedisStore([client, second], `p${++prefixSeq}:`),
    dispose: () => {
      second.disconnect();
      return Promise.resolve();
    },
  });
});

describeCounterStoreContract('redis behind the fallback store', () => {
  const store = createFallbackStore({
    shared: createRedisStore(client, `f${++prefixSeq}:`),
    local: createMemoryStore({ maxKeys: 1000 }),
    breaker: createCircuitBreaker({ failures: 3, coolDownMs: 1000, now: () => performance.now() }),
    // Generous: this suite is about semantics, not deadlines (CI is busy).
    timeoutMs: 2000,
    report: (event) => {
      throw new Error(`unexpected fallback: ${JSON.stringify(event)}`);
    },
  });
  return Promise.resolve({
    store,
    dispose: () => {
      store.close();
      return Promise.resolve();
    },
  });
});

describe('redis data model', () => {
  const w = { windowMs: 60_000, buckets: 12 }; // 5 s buckets; the expiry is two windows, 120 s
  const t0 = 1_700_000_000_000; // bucket 1_700_000_000_000 / 5000 = 340_000_000, slot 340_000_000 mod 12 = 4
  const stored = async (key: string) => decodeCounterValue(await client.getBuffer(key));

  test('one string per counter at <prefix>{<key>}, with a TTL: spec, newest bucket and the ring, packed', async () => {
    const store = createRedisStore(client, 'model:');
    await store.apply([{ key: 'per-ip|198.51.100.7', amount: 3, window: w }], t0);
    expect(await client.keys('model:*')).toEqual(['model:{per-ip|198.51.100.7}']);
    expect(store.redisKey('per-ip|198.51.100.7')).toBe('model:{per-ip|198.51.100.7}');
    const raw = await client.getBuffer('model:{per-ip|198.51.100.7}');
    // 1 byte spec length, the spec, the newest bucket as a big-endian double, 12 big-endian uint32 counts.
    const expected = Buffer.alloc(1 + 8 + 8 + 48);
    expected[0] = 8;
    expected.write('60000/12', 1, 'latin1');
    expected.writeDoubleBE(340_000_000, 9);
    expected.writeUInt32BE(3, 17 + 4 * 4);
    expect(raw).toEqual(expected);
    expect(decodeCounterValue(raw)).toEqual({ spec: '60000/12', newest: 340_000_000, counts: Uint32Array.from([0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]) });
    const ttl = await client.pttl('model:{per-ip|198.51.100.7}');
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
  });

  test('decodeCounterValue refuses what is not a whole counter value', () => {
    expect(decodeCounterValue(null)).toBeUndefined();
    expect(decodeCounterValue(Buffer.alloc(0))).toBeUndefined();
    expect(decodeCounterValue(Buffer.from([8, 0x36, 0x30]))).toBeUndefined(); // truncated spec
    const odd = Buffer.alloc(1 + 8 + 8 + 6);
    odd[0] = 8;
    expect(decodeCounterValue(odd)).toBeUndefined(); // counts not a multiple of 4 bytes
    const nan = Buffer.alloc(1 + 8 + 8 + 4);
    nan[0] = 8;
    nan.writeDoubleBE(Number.NaN, 9);
    expect(decodeCounterValue(nan)).toBeUndefined();
  });

  test('increment, expiry and read are one script (no separate EXPIRE call)', () => {
    // The race haraka-plugin-limit has: INCR, then EXPIRE only if the result was 1.
    for (const script of [COUNT_SCRIPT, COUNT_MANY_SCRIPT]) {
      // The count and its expiry are one SET in the same atomic script, never a bare INCR with an EXPIRE after it.
      expect(script).toMatch(/redis\.call\('SET', key, struct\.pack\([^\n]*\), 'PX', ttl\)/);
      expect(script).not.toMatch(/'INCR'|'EXPIRE'|'PEXPIRE'/);
    }
  });

  test('the batched call packs the step of each counter into one argument, and refuses steps that do not pair up with the keys, counting nothing', async () => {
    expect(countStep({ key: 'k', amount: 3, window: w }, t0)).toBe('340000000 3 60000/12 12 120000;');
    expect(countStep({ key: 'k', amount: 0.5, window: w }, Number.NaN)).toBe(' 0 60000/12 12 120000;');
    const steps = countStep({ key: 'a', amount: 2, window: w }, t0) + countStep({ key: 'b', amount: 5, window: w }, t0);
    expect(await client.eval(COUNT_MANY_SCRIPT, 2, 'pack:{a}', 'pack:{b}', steps)).toEqual([2, 5]);
    for (const [keys, packed] of [
      [['pack:{c}', 'pack:{d}'], countStep({ key: 'c', amount: 1, window: w }, t0)], // one step for two keys
      [['pack:{c}'], steps], // two steps for one key
      [['pack:{c}'], '340000000 1 60000/12 12;'], // a step without its TTL
    ] as const) {
      await expect(client.eval(COUNT_MANY_SCRIPT, keys.length, ...keys, packed)).rejects.toThrow(/levee: \d+ counter steps for \d+ keys/);
    }
    expect((await client.keys('pack:*')).sort()).toEqual(['pack:{a}', 'pack:{b}']);
  });

  test('every count sets the expiry again; a read that changes nothing writes nothing; a read of a new counter creates it', async () => {
    const store = createRedisStore(client, 'ttl:');
    await store.apply([{ key: 'k', amount: 1, window: w }], t0);
    await client.pexpire('ttl:{k}', 50_000); // as if 70 s had passed in Redis's clock
    expect(await store.apply([{ key: 'k', amount: 0, window: w }], t0 + 1000)).toEqual([1]); // a read, same bucket
    expect(await client.pttl('ttl:{k}')).toBeLessThanOrEqual(50_000);
    expect(await store.apply([{ key: 'k', amount: 1, window: w }], t0 + 2000)).toEqual([2]); // a count, same bucket
    expect(await client.pttl('ttl:{k}')).toBeGreaterThan(110_000);
    // A read of a counter that does not exist records the window position, as the memory store does.
    expect(await store.apply([{ key: 'never-counted', amount: 0, window: w }], t0)).toEqual([0]);
    expect(await stored('ttl:{never-counted}')).toEqual({ spec: '60000/12', newest: 340_000_000, counts: new Uint32Array(12) });
  });

  test('a window that slid past some buckets drops exactly those slots', async () => {
    const store = createRedisStore(client, 'slide:');
    for (let i = 0; i < 4; i++) await store.apply([{ key: 'k', amount: i + 1, window: w }], t0 + i * 5000); // slots 4..7: 1, 2, 3, 4
    // Ten buckets on (bucket 340_000_013, slot 5): the window now holds slots 6..5, so slots 4 and 5 slid out.
    expect(await store.apply([{ key: 'k', amount: 10, window: w }], t0 + 13 * 5000)).toEqual([3 + 4 + 10]);
    expect(await stored('slide:{k}')).toEqual({ spec: '60000/12', newest: 340_000_013, counts: Uint32Array.from([0, 0, 0, 0, 0, 10, 3, 4, 0, 0, 0, 0]) });
    expect(await store.peek([{ key: 'k', window: w }], t0 + 13 * 5000)).toEqual([17]);
  });

  test('a counter of another window, or a hash left by an earlier layout, starts afresh', async () => {
    const store = createRedisStore(client, 'fresh:');
    await store.apply([{ key: 'k', amount: 5, window: w }], t0);
    expect(await store.apply([{ key: 'k', amount: 1, window: { windowMs: 60_000, buckets: 6 } }], t0)).toEqual([1]);
    await client.hset('fresh:{old}', 's', '60000/12', 'n', '340000000', '4', '9');
    expect(await store.peek([{ key: 'old', window: w }], t0).catch(() => 'refused')).toBe('refused'); // WRONGTYPE: the daemon falls back
    expect(await store.apply([{ key: 'old', amount: 2, window: w }], t0)).toEqual([2]);
    expect(await client.type('fresh:{old}')).toBe('string');
    expect(await store.peek([{ key: 'old', window: w }], t0)).toEqual([2]);
  });

  test('with several connections the calls go to each in turn, and a probe asks every one', async () => {
    const pool = [client.duplicate(), client.duplicate(), client.duplicate()];
    try {
      // Connected first: a command issued while connecting is handed to sendCommand twice (queued, then sent).
      await Promise.all(pool.map((c) => c.ping()));
      const sent = pool.map((c) => jest.spyOn(c, 'sendCommand'));
      const store = createRedisStore(pool, 'pool:');
      const w = { windowMs: 60_000, buckets: 12 };
      for (let i = 0; i < 6; i++) {
        expect(await store.apply([{ key: 'a', amount: 1, window: w }, { key: 'b', amount: 2, window: w }], 1_700_000_000_000)).toEqual([i + 1, 2 * (i + 1)]);
      }
      const scriptCalls = (spy: jest.SpiedFunction<typeof client.sendCommand>) => spy.mock.calls.filter(([command]) => /^eval/i.test(command.name)).length;
      expect(sent.map(scriptCalls)).toEqual([2, 2, 2]);
      await store.probe();
      expect(sent.map((spy) => spy.mock.calls.filter(([command]) => command.name === 'ping').length)).toEqual([1, 1, 1]);
    } finally {
      for (const c of pool) c.disconnect();
    }
  });

  test('a request with several counters is applied in one script call on a single server, one call per counter on a Cluster, with equal totals', async () => {
    const w = { windowMs: 60_000, buckets: 12 };
    const w5 = { windowMs: 300_000, buckets: 5 };
    const hits = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 5}`, amount: i % 3, window: i % 5 === 4 ? w5 : w }));
    const calls: string[] = [];
    const monitor = await client.monitor();
    monitor.on('monitor', (_time: string, args: string[]) => calls.push(String(args[0]).toLowerCase()));
    try {
      const together = await createRedisStore(client, 'multi:').apply(hits, 1_700_000_000_000);
      // The same hits through the per-counter path a Cluster takes.
      const perKeyClient = client.duplicate();
      Object.defineProperty(perKeyClient, 'isCluster', { value: true });
      try {
        const apart = await createRedisStore(perKeyClient, 'apart:').apply(hits, 1_700_000_000_000);
        expect(apart).toEqual(together);
      } finally {
        perKeyClient.disconnect();
      }
      expect(together.slice(15)).toEqual([3, 4, 5, 3, 4]);
      // MONITOR reports on its own connection: let it catch up (bounded).
      for (let i = 0; i < 100 && calls.filter((c) => c === 'evalsha' || c === 'eval').length < 21; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      monitor.disconnect();
    }
    expect((await client.keys('multi:*')).sort()).toEqual(['multi:{k0}', 'multi:{k1}', 'multi:{k2}', 'multi:{k3}', 'multi:{k4}']);
    // One script call (EVALSHA, or EVAL the first time) for the 20 hits together; 20 apart.
    const scripts = calls.filter((c) => c === 'evalsha' || c === 'eval');
    expect(scripts.length).toBeGreaterThanOrEqual(21);
    expect(scripts.length).toBeLessThanOrEqual(23);
  });
});

describe('redis request batching (single server)', () => {
  const w = { windowMs: 60_000, buckets: 12 };
  const t0 = 1_700_000_000_000;
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  const scriptCalls = (spy: jest.SpiedFunction<typeof client.sendCommand>) => spy.mock.calls.filter(([command]) => /^eval/i.test(command.name)).length;

  /** A connected client of its own whose commands are counted (the script already loaded: no NOSCRIPT retry). */
  async function countedClient(): Promise<{ c: Redis; spy: jest.SpiedFunction<typeof client.sendCommand> }> {
    const c = client.duplicate();
    await createRedisStore(c, 'warm:').apply([{ key: 'w', amount: 1, window: w }], t0);
    return { c, spy: jest.spyOn(c, 'sendCommand') };
  }

  test('the counters of the requests of one event-loop turn go in one script call; each request gets its own totals, in order', async () => {
    const { c, spy } = await countedClient();
    try {
      const store = createRedisStore(c, 'batch:');
      const requests = Array.from({ length: 5 }, (_, i) =>
        store.apply([{ key: 'shared', amount: 1, window: w }, { key: `own${i}`, amount: i + 1, window: w }], t0),
      );
      // The shared counter is added in request order, as five calls would have added it.
      expect(await Promise.all(requests)).toEqual([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]);
      expect(scriptCalls(spy)).toBe(1);
    } finally {
      c.disconnect();
    }
  });

  test(`more than ${MAX_COUNTERS_PER_CALL} counters in one turn: several calls, the same totals`, async () => {
    const { c, spy } = await countedClient();
    try {
      const store = createRedisStore(c, 'big:');
      const requests = Array.from({ length: 200 }, () => store.apply([{ key: 'a', amount: 1, window: w }, { key: 'b', amount: 2, window: w }, { key: 'c', amount: 0, window: w }], t0));
      const totals = await Promise.all(requests);
      expect(totals).toEqual(Array.from({ length: 200 }, (_, i) => [i + 1, 2 * (i + 1), 0]));
      expect(scriptCalls(spy)).toBe(Math.ceil(600 / (MAX_COUNTERS_PER_CALL - (MAX_COUNTERS_PER_CALL % 3))));
    } finally {
      c.disconnect();
    }
  });

  test('while the connection has a call in flight, new requests wait and go together as soon as it answers', async () => {
    const { c, spy } = await countedClient();
    try {
      const store = createRedisStore(c, 'inflight:');
      redis.pause(); // nothing is answered: the first call stays in flight
      let first: Promise<readonly number[]>;
      let later: Promise<readonly number[]>[];
      try {
        first = store.apply([{ key: 'k', amount: 1, window: w }], t0);
        await turn();
        await turn();
        expect(scriptCalls(spy)).toBe(1);
        // Two more requests, in two later turns: held back while the only connection waits.
        later = [store.apply([{ key: 'k', amount: 1, window: w }], t0)];
        await turn();
        later.push(store.apply([{ key: 'k', amount: 1, window: w }], t0));
        await turn();
        expect(scriptCalls(spy)).toBe(1);
      } finally {
        redis.resume();
      }
      expect(await first).toEqual([1]);
      expect(await Promise.all(later)).toEqual([[2], [3]]);
      expect(scriptCalls(spy)).toBe(2);
    } finally {
      c.disconnect();
    }
  });

  test('a call that fails rejects every request that was in it, and the next turn counts again', async () => {
    const offline = new Redis(redis.url, { enableOfflineQueue: false, lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      const store = createRedisStore(offline, 'fail:');
      const outcomes = await Promise.allSettled([0, 1, 2].map(() => store.apply([{ key: 'k', amount: 1, window: w }], t0)));
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
      // The first command started the connection (lazyConnect); once it is up, counting works again.
      if (offline.status !== 'ready') await new Promise((resolve) => offline.once('ready', resolve));
      expect(await store.apply([{ key: 'k', amount: 1, window: w }], t0)).toEqual([1]);
    } finally {
      offline.disconnect();
    }
  });

  test('a client that throws instead of rejecting: every request of the batch is rejected, nothing escapes', async () => {
    const c = client.duplicate();
    try {
      const store = createRedisStore(c, 'throws:');
      // After createRedisStore, which defines the command on the client.
      jest.spyOn(c as unknown as { leveeCountMany: () => never }, 'leveeCountMany').mockImplementation(() => {
        throw new Error('thrown, not rejected');
      });
      const outcomes = await Promise.allSettled([0, 1].map(() => store.apply([{ key: 'k', amount: 1, window: w }], t0)));
      expect(outcomes.map((o) => (o.status === 'rejected' ? String(o.reason) : 'fulfilled'))).toEqual(['Error: thrown, not rejected', 'Error: thrown, not rejected']);
    } finally {
      c.disconnect();
    }
  });

  test('a request with a distinct count is not held in the batch and keeps its marker semantics', async () => {
    const { c } = await countedClient();
    try {
      const store = createRedisStore(c, 'mixed:');
      const [plain, distinctA, distinctAgain] = await Promise.all([
        store.apply([{ key: 'p', amount: 1, window: w }, { key: 'q', amount: 1, window: w }], t0),
        store.apply([{ key: 'd', amount: 1, window: w, distinct: 'example.com' }], t0),
        store.apply([{ key: 'd', amount: 1, window: w, distinct: 'example.com' }], t0),
      ]);
      expect(plain).toEqual([1, 1]);
      expect(distinctA).toEqual([1]);
      expect(distinctAgain).toEqual([1]);
    } finally {
      c.disconnect();
    }
  });
});
