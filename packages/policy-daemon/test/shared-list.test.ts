// The shared list (shared-list.ts): the pure change semantics, the memory
// list, and the Redis list against a real redis-server, as two hosts would
// use it (two connections, two clocks).
import { Redis } from 'ioredis';
import { createLogger } from '../src/logger.js';
import { createRedisSharedList } from '../src/redis-shared-list.js';
import { createRedisClient, type RedisClient } from '../src/redis-store.js';
import { applyChange, applyChanges, createMemorySharedList, liveRecords, type SharedCodec, type SharedList, type SharedRecord } from '../src/shared-list.js';
import { startRedis, type RedisInstance } from './support/redis.js';

jest.setTimeout(60_000);

const text: SharedCodec<string> = { encode: (v) => JSON.stringify(v), decode: (t) => (t.startsWith('"') ? (JSON.parse(t) as string) : undefined) };
const rec = (id: string, value: string, at: number, until?: number): SharedRecord<string> => ({ id, value, at, until });

describe('change semantics', () => {
  test('put adds or replaces, remove deletes; a change older than the record is ignored', () => {
    let list = applyChanges<string>([], [{ kind: 'put', record: rec('a', '1', 10) }, { kind: 'put', record: rec('b', '2', 10) }]);
    expect(list.map((r) => r.id)).toEqual(['a', 'b']);
    list = applyChange(list, { kind: 'put', record: rec('a', 'newer', 20) });
    expect(list.map((r) => r.value)).toEqual(['newer', '2']);
    expect(applyChange(list, { kind: 'put', record: rec('a', 'older', 15) })).toBe(list);
    expect(applyChange(list, { kind: 'remove', id: 'a', at: 19 })).toBe(list);
    expect(applyChange(list, { kind: 'remove', id: 'a', at: 20 }).map((r) => r.id)).toEqual(['b']);
    expect(applyChange(list, { kind: 'remove', id: 'zz', at: 99 })).toBe(list);
  });

  test('liveRecords keeps records without expiry and those not yet expired', () => {
    const list = [rec('a', '1', 0, 100), rec('b', '2', 0)];
    expect(liveRecords(list, 99)).toBe(list);
    expect(liveRecords(list, 100).map((r) => r.id)).toEqual(['b']);
  });

  test('the memory list stores at once and reports every change', async () => {
    let clock = 1000;
    const seen: number[] = [];
    const list = createMemorySharedList<string>('t', { now: () => clock, onChange: (r) => seen.push(r.length) });
    expect(await list.put('a', 'x', 2000)).toBe('stored');
    expect(await list.put('b', 'y', undefined)).toBe('stored');
    expect(await list.remove('b')).toEqual({ removed: true, write: 'stored' });
    expect(await list.remove('b')).toEqual({ removed: false, write: 'stored' });
    clock = 2000;
    expect(await list.remove('a')).toEqual({ removed: false, write: 'stored' });
    expect(list.records()).toEqual([]);
    expect(seen).toEqual([1, 2, 1, 0]);
    expect(list.pending()).toBe(0);
  });
});

describe('in Redis', () => {
  let redis: RedisInstance;
  const clients: RedisClient[] = [];
  const lists: SharedList<string>[] = [];
  const logs: Record<string, unknown>[] = [];
  const log = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(() => {
    for (const l of lists.splice(0)) l.close();
    for (const c of clients.splice(0)) c.disconnect();
  });
  afterAll(async () => {
    await redis.stop();
  });

  async function host(name: string, clock: () => number): Promise<SharedList<string>> {
    const client = createRedisClient({ url: redis.url, keyPrefix: 'sl:', timeoutMs: 2000, connections: 1, breaker: { failures: 3, coolDownMs: 1000 } });
    client.on('error', () => undefined);
    clients.push(client);
    await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
    // A refresh interval far beyond the test: syncs happen only when the test asks.
    const list = createRedisSharedList<string>({ client, keyPrefix: 'sl:', name, codec: text, log, now: clock, refreshMs: 3_600_000 });
    lists.push(list);
    expect(await list.sync()).toBe(true);
    return list;
  }

  test('what one host writes the other reads at its next sync', async () => {
    const a = await host('one', () => 1000);
    const b = await host('one', () => 1000);
    expect(await a.put('x', 'from a', undefined)).toBe('stored');
    expect(a.records().map((r) => r.value)).toEqual(['from a']);
    expect(b.records()).toEqual([]);
    expect(await b.sync()).toBe(true);
    expect(b.records()).toEqual([{ id: 'x', value: 'from a', at: 1000, until: undefined }]);
    expect(await b.remove('x')).toEqual({ removed: true, write: 'stored' });
    expect(await a.sync()).toBe(true);
    expect(a.records()).toEqual([]);
  });

  test('the newer change wins whichever host writes last', async () => {
    const ahead = await host('two', () => 2000);
    const behind = await host('two', () => 1000);
    await ahead.put('x', 'newer', undefined);
    // Written after, but made earlier (by its clock): Redis keeps the newer one.
    await behind.put('x', 'older', undefined);
    await behind.sync();
    await ahead.sync();
    expect(behind.records().map((r) => r.value)).toEqual(['newer']);
    expect(ahead.records().map((r) => r.value)).toEqual(['newer']);
  });

  /** Redis loses the list (as a restart without persistence does): its three keys are gone. */
  async function loseList(name: string): Promise<void> {
    const peek = new Redis(redis.url);
    try {
      await peek.del(`sl:{list:${name}}`, `sl:{list:${name}}:exp`, `sl:{list:${name}}:ver`);
    } finally {
      peek.disconnect();
    }
  }

  async function storedIds(name: string): Promise<string[]> {
    const peek = new Redis(redis.url);
    try {
      return Object.keys(await peek.hgetall(`sl:{list:${name}}`)).sort();
    } finally {
      peek.disconnect();
    }
  }

  // A host whose last contact with the list before the loss was a write of its own
  // (it had read "no list" before it) must notice the loss too, on its next write
  // or read, and write back what it knew (found by redis-blocks.test.ts under load).
  test('Redis loses the list after this host wrote to it: its next write writes back what it knew, and the other host reads it', async () => {
    const writer = await host('lost-write', () => 1000);
    const reader = await host('lost-write', () => 1000);
    expect(await writer.put('x', 'before the loss', undefined)).toBe('stored');
    expect(await reader.sync()).toBe(true);
    expect(reader.records().map((r) => r.id)).toEqual(['x']);
    await loseList('lost-write');

    expect(await writer.put('y', 'after the loss', undefined)).toBe('stored');
    expect(await storedIds('lost-write')).toEqual(['x', 'y']);
    expect(writer.records().map((r) => r.id).sort()).toEqual(['x', 'y']);
    expect(await reader.sync()).toBe(true);
    expect(reader.records().map((r) => r.id).sort()).toEqual(['x', 'y']);
    expect(logs.some((l) => l['msg'] === 'shared list: redis came back without the list; writing back the records this host knew' && l['records'] === 1)).toBe(true);
  });

  test('Redis loses the list after this host wrote to it: its next read writes back what it knew', async () => {
    const writer = await host('lost-read', () => 1000);
    expect(await writer.put('x', 'before the loss', undefined)).toBe('stored');
    await loseList('lost-read');
    expect(await writer.sync()).toBe(true);
    expect(writer.records().map((r) => r.id)).toEqual(['x']);
    expect(await storedIds('lost-read')).toEqual(['x']);
  });

  test('a host that never saw a list writes the first record without writing anything back', async () => {
    const first = await host('fresh', () => 1000);
    const before = logs.length;
    expect(await first.put('x', 'first', undefined)).toBe('stored');
    expect(await first.sync()).toBe(true);
    expect(await storedIds('fresh')).toEqual(['x']);
    expect(logs.slice(before).some((l) => String(l['msg']).includes('writing back'))).toBe(false);
  });

  test('a record this version cannot read is skipped and reported', async () => {
    const peek = new Redis(redis.url);
    try {
      await peek.hset('sl:{list:three}', 'bad', 'not a record', 'worse', '5 - {not json');
      await peek.set('sl:{list:three}:ver', '7');
    } finally {
      peek.disconnect();
    }
    const a = await host('three', () => 1000);
    await a.put('good', 'ok', undefined);
    await a.sync();
    expect(a.records().map((r) => r.id)).toEqual(['good']);
    expect(logs.some((l) => l['msg'] === 'shared list: records this version cannot read were skipped' && l['unreadable'] === 2)).toBe(true);
  });
});
