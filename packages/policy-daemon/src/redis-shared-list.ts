/**
 * redis-shared-list - a SharedList (shared-list.ts) kept in Redis, so every
 * MX host sharing the Redis sees the same records and they survive a restart
 * of any of them.
 *
 * Data model, for list NAME under the counters' key prefix P (the braces are a
 * Cluster hash tag: the three keys share a slot, so one script may touch all):
 *   P{list:NAME}       hash: id -> "<at> <until|-> <value text>"
 *   P{list:NAME}:exp   sorted set: id scored by `until`, for records that expire
 *   P{list:NAME}:ver   integer, incremented by every change (starting from
 *                      Redis's clock in µs when created, see BUMP)
 * Counter keys always hold a "|" inside their braces, so they never collide.
 *
 * Reading: every `refreshMs` (and at once after a reconnect) one script call
 * drops records whose `until` has passed (by this host's clock, like the
 * counters' window arithmetic), and returns the version and, only when it
 * differs from the one this host last read, the whole hash. A quiet list thus
 * costs one small round trip per host per interval; a change reaches every
 * host within one interval. Decisions never wait on any of this: they read
 * `records()`, the local copy.
 *
 * Writing: one script call per change, which applies it only if it is not
 * older (`at`) than the record it replaces or removes, and bumps the version.
 * When Redis does not answer, the change is applied to the local copy and
 * kept in order (at most MAX_PENDING_CHANGES) to be written when Redis is
 * back; replaying is idempotent, and a newer change made meanwhile on another
 * host wins. Pending changes are lost if this daemon stops before Redis is back.
 *
 * If Redis comes back empty (restarted without persistence: the version key is
 * gone though this host had read one, holds records read from it, or had a
 * write of its own answered), this host writes back the records it knew, so a
 * Redis restart does not silently lift every block; each host that notices
 * does the same with the same record times, so they agree. A host notices on
 * its next read (no version) or write (the script saw no version key). The
 * first host to write after the loss recreates the version key, so the others
 * then read a new list rather than none: they rely on that host having known
 * their records. LIMITATION: it did not know a record made on another host
 * within one refresh interval before the loss, if that host then notices
 * nothing (it reads the recreated list): such a record is lost with Redis's copy.
 *
 * The list uses its own connection (not the counters' auto-pipelined one): a
 * large list reply must never delay a request's counter round trip.
 */

import type { Logger } from './logger.js';
import type { RedisClient } from './redis-store.js';
import {
  applyChanges,
  liveRecords,
  MAX_PENDING_CHANGES,
  type SharedChange,
  type SharedCodec,
  type SharedList,
  type SharedListOptions,
  type SharedRecord,
  type SharedWrite,
} from './shared-list.js';

/** How often each host re-reads a list (a change made elsewhere reaches it within this). */
export const LIST_REFRESH_MS = 1000;
/** Records an expiry pass drops at most (the rest go at the next pass): bounds one script's run. */
const EXPIRE_BATCH = 1000;

/**
 * Bump the version. A new version key starts from Redis's clock in
 * microseconds, not from 0: after Redis lost the list, a version a host read
 * before can never come round again and hide the change (returned as an
 * integer reply: Lua's tostring would print it in exponent form).
 */
const BUMP = `
local function bump()
  if redis.call('EXISTS', KEYS[3]) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[3], t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return redis.call('INCR', KEYS[3])
end
`;

/**
 * KEYS: hash, expiry set, version. ARGV[1] now (ms), ARGV[2] the version the
 * caller holds ("" = none). Returns { version } when unchanged, else
 * { version, id1, value1, id2, value2, ... }; version "0": there is no list.
 */
export const LIST_READ_SCRIPT = `${BUMP}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ${EXPIRE_BATCH})
if #expired > 0 then
  redis.call('HDEL', KEYS[1], unpack(expired))
  redis.call('ZREM', KEYS[2], unpack(expired))
  bump()
end
local v = redis.call('GET', KEYS[3]) or '0'
if v == ARGV[2] then return { v } end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, v)
return out
`;

/**
 * KEYS: hash, expiry set, version. ARGV[1] "put" or "remove", ARGV[2] id,
 * ARGV[3] the change's time (ms), ARGV[4] until ("" = none), ARGV[5] the
 * stored text (put). A change older than the stored record is ignored.
 * Returns { 1 if applied (remove: the record was there) else 0, version,
 * 1 if the version key existed before (0: Redis never had or lost the list) }.
 */
export const LIST_WRITE_SCRIPT = `${BUMP}
local had = redis.call('EXISTS', KEYS[3])
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then
  local oldAt = tonumber(string.match(old, '^(%d+) '))
  if oldAt and oldAt > tonumber(ARGV[3]) then return { 0, redis.call('GET', KEYS[3]) or '0', had } end
end
if ARGV[1] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[5])
  if ARGV[4] == '' then redis.call('ZREM', KEYS[2], ARGV[2]) else redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2]) end
elseif old then
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  return { 0, redis.call('GET', KEYS[3]) or '0', had }
end
return { 1, bump(), had }
`;

interface WithListCommands {
  leveeListRead(hash: string, exp: string, ver: string, now: string, known: string): Promise<unknown>;
  leveeListWrite(hash: string, exp: string, ver: string, op: string, id: string, at: string, until: string, text: string): Promise<unknown>;
}

/** The stored text of a record: "<at> <until|-> <value>". */
export function recordText(at: number, until: number | undefined, valueText: string): string {
  return `${String(at)} ${until === undefined ? '-' : String(until)} ${valueText}`;
}

/** parseRecordText - the record stored under `id`, or undefined when the text is not one. */
export function parseRecordText<T>(id: string, text: string, codec: SharedCodec<T>): SharedRecord<T> | undefined {
  const m = /^(\d{1,16}) (\d{1,16}|-) /.exec(text);
  if (m === null) return undefined;
  const value = codec.decode(text.slice(m[0].length));
  if (value === undefined) return undefined;
  return { id, value, at: Number(m[1]), until: m[2] === '-' ? undefined : Number(m[2]) };
}

export interface RedisSharedListOptions<T> extends SharedListOptions {
  /** A connection for lists (fail-fast like the counters' one, with a longer command timeout). */
  readonly client: RedisClient;
  readonly keyPrefix: string;
  readonly name: string;
  readonly codec: SharedCodec<T>;
  readonly log: Logger;
  /** Default LIST_REFRESH_MS. */
  readonly refreshMs?: number;
  /** Reports the pending changes and each successful sync (metrics). */
  readonly observe?: (event: { readonly pending: number; readonly syncedAt?: number }) => void;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** createRedisSharedList - the list `name` in Redis; call sync() once before relying on it (the daemon does, at start). */
export function createRedisSharedList<T>(options: RedisSharedListOptions<T>): SharedList<T> {
  const { client, codec, log, now } = options;
  client.defineCommand('leveeListRead', { numberOfKeys: 3, lua: LIST_READ_SCRIPT });
  client.defineCommand('leveeListWrite', { numberOfKeys: 3, lua: LIST_WRITE_SCRIPT });
  const commands = client as unknown as WithListCommands;
  const base = `${options.keyPrefix}{list:${options.name}}`;
  const keys = [base, `${base}:exp`, `${base}:ver`] as const;
  const listLog = log.child({ list: options.name });

  let remote: readonly SharedRecord<T>[] = [];
  let version: string | undefined;
  /** Changes written to Redis since the last read began: kept in the view until a read includes them. */
  let written: SharedChange<T>[] = [];
  const pending: SharedChange<T>[] = [];
  let view: readonly SharedRecord<T>[] = [];
  let failing = false;
  let closed = false;

  const update = (): void => {
    const next = applyChanges(applyChanges(remote, written), pending);
    if (next === view) return;
    view = next;
    options.onChange?.(view);
  };
  const observe = (syncedAt?: number): void => options.observe?.({ pending: pending.length, ...(syncedAt === undefined ? {} : { syncedAt }) });
  const failed = (what: string, error: unknown): void => {
    if (closed) return; // a write still under way while the daemon stops
    if (!failing) listLog.warn({ err: errorText(error), pending: pending.length }, `shared list: redis ${what} failed; using the last known list and keeping changes made here until redis is back`);
    failing = true;
  };
  const succeeded = (): void => {
    if (failing) listLog.info({ records: view.length }, 'shared list: in step with redis again');
    failing = false;
  };

  async function writeOne(change: SharedChange<T>): Promise<{ applied: boolean; version: string; hadList: boolean }> {
    const reply =
      change.kind === 'put'
        ? await commands.leveeListWrite(...keys, 'put', change.record.id, String(change.record.at), change.record.until === undefined ? '' : String(change.record.until), recordText(change.record.at, change.record.until, codec.encode(change.record.value)))
        : await commands.leveeListWrite(...keys, 'remove', change.id, String(change.at), '', '');
    if (!Array.isArray(reply) || reply.length !== 3) throw new Error('malformed shared list reply from redis');
    return { applied: Number(reply[0]) === 1, version: String(reply[1]), hadList: Number(reply[2]) === 1 };
  }

  /**
   * Redis no longer has the list this host read (restarted without
   * persistence): queue the records this host knew, with their own times, so
   * newer changes (made anywhere) still win over them.
   */
  function writeBack(): void {
    const known = liveRecords(applyChanges(remote, written), now());
    listLog.warn({ records: known.length }, 'shared list: redis came back without the list; writing back the records this host knew');
    pending.push(...known.map((record): SharedChange<T> => ({ kind: 'put', record })));
    version = undefined;
    remote = [];
    written = [];
    update();
  }

  /**
   * Whether this host has seen the list in Redis: it read a version of it,
   * holds records read from it, or had `acknowledged` writes of its own
   * answered (each creates the version key). No version key after that means
   * Redis lost the list. Counting only the version read missed the host whose
   * last contact before the loss was a write (found by redis-blocks.test.ts).
   */
  const knewList = (acknowledged: number): boolean => (version !== undefined && Number(version) > 0) || remote.length > 0 || acknowledged > 0;

  /** Write the pending changes in order; false at the first failure (the rest stay pending). */
  async function flushLoop(): Promise<boolean> {
    // Bounded: every pass takes one change; a write-back adds at most the list once more.
    for (let i = 0; i <= 2 * MAX_PENDING_CHANGES && pending.length > 0 && !closed; i++) {
      const change = pending[0] as SharedChange<T>;
      let result;
      try {
        result = await writeOne(change);
      } catch (error) {
        failed('write', error);
        observe();
        return false;
      }
      pending.shift();
      if (!result.hadList && knewList(written.length)) writeBack();
      written.push(change);
      update();
    }
    observe();
    return pending.length === 0;
  }

  let flushing: Promise<boolean> | undefined;
  /** One flush at a time, in order: a change made during a flush is written by the next one. */
  function flush(): Promise<boolean> {
    const run = (flushing ?? Promise.resolve(true)).then(flushLoop, flushLoop);
    flushing = run;
    void run.finally(() => {
      if (flushing === run) flushing = undefined;
    });
    return run;
  }

  /** Re-read the list; 'lost' when Redis no longer has it and this host queued its records to write back. */
  async function read(): Promise<'ok' | 'failed' | 'lost'> {
    let reply: unknown;
    // Writes answered before this read was sent are in what it returns.
    const included = written.length;
    try {
      reply = await commands.leveeListRead(...keys, String(Math.floor(now())), version ?? '');
    } catch (error) {
      failed('read', error);
      return 'failed';
    }
    if (!Array.isArray(reply) || reply.length < 1 || reply.length % 2 !== 1) {
      failed('read', new Error('malformed shared list reply from redis'));
      return 'failed';
    }
    const v = String(reply[0]);
    // Before the "unchanged" answer: a host that last read "no list" and wrote since reads "0" again after a loss.
    if (v === '0' && knewList(included)) {
      writeBack();
      return 'lost';
    }
    if (reply.length === 1 && v === version) {
      if (included > 0) {
        written = written.slice(included);
        update();
      }
      return 'ok';
    }
    const records: SharedRecord<T>[] = [];
    let unreadable = 0;
    for (let i = 1; i + 1 < reply.length; i += 2) {
      const record = parseRecordText(String(reply[i]), String(reply[i + 1]), codec);
      if (record === undefined) unreadable++;
      else records.push(record);
    }
    if (unreadable > 0) listLog.warn({ unreadable }, 'shared list: records this version cannot read were skipped');
    remote = records;
    version = v;
    written = written.slice(included);
    update();
    return 'ok';
  }

  let syncing: Promise<boolean> | undefined;
  function sync(): Promise<boolean> {
    syncing ??= (async () => {
      await flush();
      let outcome = await read();
      // A write-back after Redis lost the list: write it now rather than at the next tick.
      if (outcome === 'lost' && (await flush())) outcome = await read();
      const ok = outcome === 'ok' && pending.length === 0;
      if (ok) {
        succeeded();
        observe(now());
      }
      return ok;
    })().finally(() => {
      syncing = undefined;
    });
    return syncing;
  }

  const refreshMs = options.refreshMs ?? LIST_REFRESH_MS;
  const timer = setInterval(() => void sync(), refreshMs);
  timer.unref();
  const onReady = (): void => void sync();
  client.on('ready', onReady);

  const change = async (c: SharedChange<T>): Promise<SharedWrite> => {
    if (pending.length >= MAX_PENDING_CHANGES) {
      throw new Error(`shared list ${options.name}: ${String(MAX_PENDING_CHANGES)} changes already wait for redis; not accepting more`);
    }
    pending.push(c);
    update();
    await flush();
    return pending.includes(c) ? 'pending' : 'stored';
  };

  return {
    name: options.name,
    records: () => view,
    put: (id, value, until) => change({ kind: 'put', record: { id, value, until, at: Math.floor(now()) } }),
    async remove(id) {
      // Read first: the record may have been put on another host since our last refresh.
      await read();
      const removed = liveRecords(view, now()).some((r) => r.id === id);
      const write = await change({ kind: 'remove', id, at: Math.floor(now()) });
      return { removed, write };
    },
    pending: () => pending.length,
    sync,
    close() {
      closed = true;
      clearInterval(timer);
      client.off('ready', onReady);
    },
  };
}
