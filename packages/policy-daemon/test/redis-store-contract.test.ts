// The same CounterStore suite against the memory store, the Redis store on a
// real redis-server, and the Redis store behind the fallback store: equal
// window semantics, proven by running identical tests.
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { createCircuitBreaker } from '../src/circuit-breaker.js';
import { createFallbackStore } from '../src/fallback-store.js';
import { createMemoryStore } from '../src/memory-store.js';
import { createRedisStore, COUNT_MANY_SCRIPT, COUNT_SCRIPT } from '../src/redis-store.js';
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
  test('one hash per counter at <prefix>{<key>}, with a TTL, the spec and the ring', async () => {
    const store = createRedisStore(client, 'model:');
    await store.apply([{ key: 'per-ip|198.51.100.7', amount: 3, window: { windowMs: 60_000, buckets: 12 } }], 1_700_000_000_000);
    expect(await client.keys('model:*')).toEqual(['model:{per-ip|198.51.100.7}']);
    expect(store.redisKey('per-ip|198.51.100.7')).toBe('model:{per-ip|198.51.100.7}');
    const hash = await client.hgetall('model:{per-ip|198.51.100.7}');
    // 1_700_000_000_000 / 5000 = 340_000_000, slot 340_000_000 mod 12 = 4.
    expect(hash).toEqual({ s: '60000/12', n: '340000000', '4': '3' });
    const ttl = await client.pttl('model:{per-ip|198.51.100.7}');
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
  });

  test('increment, expiry and read are one script (no separate EXPIRE call)', () => {
    // The race haraka-plugin-limit has: INCR, then EXPIRE only if the result was 1.
    for (const script of [COUNT_SCRIPT, COUNT_MANY_SCRIPT]) {
      // The increment and the expiry in the same atomic script, never a bare INCR with an EXPIRE after it.
      expect(script).toContain("redis.call('PEXPIRE', key, ttl)");
      expect(script).toContain("redis.call('HINCRBY', key, slot, amount)");
      expect(script).not.toMatch(/'INCR'|'EXPIRE'/);
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
