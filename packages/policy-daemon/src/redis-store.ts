/**
 * redis-store - sliding-window counters shared by several MX hosts in Redis
 * (ioredis, single server or Cluster). The same window semantics as the
 * memory store: the Lua script below is advanceWindow + addToWindow from
 * @levee/rules written against a hash, and the total is computed on this side
 * by the very same `windowTotal`, so both stores give equal totals for equal
 * hits and times (the shared contract test proves it).
 *
 * Data model: one string per counter, `<prefix>{<counter key>}`. The braces
 * are a Cluster hash tag, so everything about one counter sits in one slot and
 * a future multi-key layout stays legal. The value is packed big-endian
 * (written by COUNT_FUNCTION's struct.pack, read back by decodeCounterValue):
 *   1 byte   the length L of the window spec text;
 *   L bytes  the window spec "windowMs/buckets"; a different spec resets the
 *            counter (the memory store does the same: see memory-store's header);
 *   8 bytes  the newest absolute bucket index, floor(t / width), an IEEE double
 *            (exact below 2^53);
 *   4 bytes per bucket  the ring of counts, unsigned, slot = bucket index mod buckets.
 * A string read and written whole (GET, then SET ... PX) costs Redis half of
 * what the same steps on a hash of `buckets` + 2 fields did (measured: 28 ->
 * 15 us per three-counter script call; docs/benchmarks.md).
 * Reading, moving the window, the increment, the expiry and the total all
 * happen in ONE script call (never INCR and then a separate EXPIRE, the race
 * that leaves haraka-plugin-limit's keys without a TTL). On a single server
 * (or Sentinel) the counters of all requests that arrive in one event-loop
 * turn go in one call (COUNT_MANY_SCRIPT): with 8 busy connections that is one
 * command, one reply and one script run for several requests instead of one
 * per request (docs/benchmarks.md). On a Cluster one call per counter, since
 * several keys in one script would be a CROSSSLOT error there (auto-pipelining
 * still sends them in one write).
 *
 * The expiry (PX) is garbage collection only (two windows, at least a minute, of Redis time): the
 * window arithmetic uses the `now` Levee passes, so clocks of different MX
 * hosts only need to agree to within a bucket width, and a host a little behind
 * counts into the newest bucket (time never goes backwards for a window).
 *
 * This module has no deadline or fallback of its own: fallback-store wraps it.
 *
 * LIMITATIONS: a command that timed out on our side may still run later on
 * the server (Redis never cancels it), counting that request once more in the
 * shared total: an error towards refusing, bounded by the requests of one
 * stall. Counts saturate at 2^32-1 per bucket, as in memory.
 */

import { Cluster, Redis } from 'ioredis';
import { bucketWidth, effectiveWindowMs, MAX_BUCKET_COUNT, windowTotal, type CounterHit, type CounterRead, type RedisSettings, type WindowSpec } from '@levee/rules';

/** The shared store: always a Promise (fallback-store bounds it). */
export interface RedisCounterStore {
  apply(hits: readonly CounterHit[], now: number): Promise<readonly number[]>;
  peek(keys: readonly CounterRead[], now: number): Promise<readonly number[]>;
  /** A PING on every connection: resolves when the server answers on all. */
  probe(): Promise<void>;
  /** The Redis key of a counter key. */
  redisKey(key: string): string;
}

export type RedisClient = Redis | Cluster;

/**
 * The window step for one counter `key`: `bucketText` the bucket index
 * floor(now/width) as decimal text ("" when now is not finite), `amountText`
 * the whole amount to add (0 = none), `spec` "windowMs/buckets", `n` buckets,
 * `ttl` in ms. Returns the window's total after the step, as an integer.
 *
 * One GET reads the counter; a value of another spec (or of another type: the
 * hash of earlier development versions, removed with DEL) starts it afresh. The
 * step is worked out here and written back with one SET ... PX (the count and
 * its expiry, two windows and at least a minute, together) unless nothing
 * changed: a read (amount 0) of an existing counter whose window did not move
 * writes nothing. A read of a counter that does not exist creates it at this
 * window position, as the memory store does: a count from a host whose clock
 * is behind then lands in that newest bucket, not in an older one.
 *
 * The total is the sum of the ring after moving the window forward (slots
 * that slid out are zeroed, all of them past a whole window), so it is exactly
 * what windowTotal adds up for this `now` (the contract test runs the memory
 * store's tests against this to prove it).
 */
const COUNT_FUNCTION = `
local formatOf = {}
local function count(key, bucketText, amountText, spec, n, ttl)
  local format = formatOf[n]
  if format == nil then
    format = '>Bc0d' .. string.rep('I4', n)
    formatOf[n] = format
  end
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' then
    redis.call('DEL', key)
    raw = false
  end
  local v
  local exists = false
  if raw and string.byte(raw, 1) == #spec and #raw == 9 + #spec + 4 * n and string.sub(raw, 2, 1 + #spec) == spec then
    v = {struct.unpack(format, raw)}
    exists = true
  else
    v = {spec, 0}
    for i = 3, n + 2 do v[i] = 0 end
  end
  local changed = not exists
  local newest = v[2]
  local b = tonumber(bucketText)
  if b ~= nil and b > newest then
    local steps = b - newest
    if steps >= n then
      for i = 3, n + 2 do v[i] = 0 end
    else
      for i = 1, steps do v[(newest + i) % n + 3] = 0 end
    end
    newest = b
    v[2] = b
    changed = true
  end
  local amount = tonumber(amountText)
  if amount > 0 then
    local slot = newest % n + 3
    local value = v[slot] + amount
    if value > ${MAX_BUCKET_COUNT} then value = ${MAX_BUCKET_COUNT} end
    v[slot] = value
    changed = true
  end
  if changed then redis.call('SET', key, struct.pack(format, #spec, spec, newest, unpack(v, 3, n + 2)), 'PX', ttl) end
  local total = 0
  for i = 3, n + 2 do total = total + v[i] end
  return total
end
`;

/** KEYS[1] the counter; ARGV[1..5] bucket, amount, spec, buckets, TTL (see COUNT_FUNCTION). */
export const COUNT_SCRIPT = `${COUNT_FUNCTION}
return count(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5])
`;

/**
 * COUNT_SCRIPT for limit.distinct: KEYS[2] the marker of one value
 * (`<counter key>#<value>`, same hash tag, same slot) holding when the value
 * stops being "seen" in Levee's time; ARGV[6] now, ARGV[7] that expiry (now +
 * one window), ARGV[8] the marker's TTL (garbage collection, like the hash's).
 * The amount counts only when the marker is absent or expired: Levee's clock,
 * not Redis's, decides, as for the windows.
 */
export const COUNT_DISTINCT_SCRIPT = `${COUNT_FUNCTION}
local amount = ARGV[2]
if tonumber(amount) > 0 then
  local seenUntil = tonumber(redis.call('GET', KEYS[2]) or '')
  if seenUntil ~= nil and seenUntil > tonumber(ARGV[6]) then
    amount = '0'
  else
    redis.call('SET', KEYS[2], ARGV[7], 'PX', ARGV[8])
  end
end
return count(KEYS[1], ARGV[1], amount, ARGV[3], tonumber(ARGV[4]), ARGV[5])
`;

/**
 * Several counters in one call (single server and Sentinel only: on a Cluster
 * the keys may live in different slots). KEYS[k] the counters; ARGV[1] their
 * steps in key order, each COUNT_SCRIPT's five arguments as
 * "bucket amount spec buckets ttl;" (countStep). One packed argument instead of
 * five per counter: ioredis's work grows with the arguments (~70 per call at 8
 * busy connections); packed, the daemon spends 1.2-3.3 us less per request and
 * redis-server 0.3-1.3 us more (docs/benchmarks.md). Returns the totals in
 * key order. Steps that do not pair up with the keys are refused before
 * anything is counted.
 */
export const COUNT_MANY_SCRIPT = `${COUNT_FUNCTION}
local steps = {}
local s = 0
for b, a, spec, n, ttl in string.gmatch(ARGV[1], '(%d*) (%d+) (%S+) (%d+) (%d+);') do
  steps[s + 1], steps[s + 2], steps[s + 3], steps[s + 4], steps[s + 5] = b, a, spec, n, ttl
  s = s + 5
end
if s ~= 5 * #KEYS then
  return redis.error_reply('levee: ' .. (s / 5) .. ' counter steps for ' .. #KEYS .. ' keys')
end
local out = {}
for k = 1, #KEYS do
  local a = (k - 1) * 5
  out[k] = count(KEYS[k], steps[a + 1], steps[a + 2], steps[a + 3], tonumber(steps[a + 4]), steps[a + 5])
end
return out
`;

/**
 * Counters per script call at most: a turn with more requests sends more
 * calls, so one script never holds Redis (single-threaded) for long. 512
 * counters are ~170 requests of three limits, ~0.5 ms of script time.
 */
export const MAX_COUNTERS_PER_CALL = 512;

/** A request waiting for its slice [from, from + count) of a batch's totals. */
interface BatchWaiter {
  readonly from: number;
  readonly count: number;
  readonly resolve: (totals: readonly number[]) => void;
  readonly reject: (error: unknown) => void;
}

/** The counters queued in one event-loop turn: keys, their steps (countStep, packed as COUNT_MANY_SCRIPT reads them), who waits. */
interface CountBatch {
  readonly keys: string[];
  steps: string;
  readonly waiters: BatchWaiter[];
}

interface WithCountCommand {
  leveeCount(key: string, bucket: string, amount: string, spec: string, buckets: string, ttlMs: string): Promise<unknown>;
  /** numberOfKeys first (the command is defined with a variable key count), then the keys, then their packed steps. */
  leveeCountMany(numberOfKeys: number, ...keysThenSteps: string[]): Promise<unknown>;
  leveeCountDistinct(
    key: string,
    marker: string,
    ...args: [bucket: string, amount: string, spec: string, buckets: string, ttlMs: string, now: string, seenUntil: string, markerTtlMs: string]
  ): Promise<unknown>;
}

function specText(w: WindowSpec): string {
  return `${w.windowMs}/${w.buckets}`;
}

/** addToWindow's rule for amounts: whole, at least 1, or nothing; never more than a bucket holds. */
function wholeAmount(amount: number): number {
  if (!Number.isFinite(amount) || amount < 1) return 0;
  return Math.min(Math.floor(amount), MAX_BUCKET_COUNT);
}

/** A total from the count scripts (an integer reply). */
function countOf(reply: unknown): number {
  const n = typeof reply === 'number' ? reply : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new Error('malformed counter reply from redis');
  return n;
}

/** A counter as stored in Redis (see the module header for the layout). */
export interface CounterValue {
  readonly spec: string;
  readonly newest: number;
  readonly counts: Uint32Array;
}

/**
 * decodeCounterValue - the counter packed in `raw`, or undefined when `raw`
 * is not a whole counter value (absent, truncated, or of another layout).
 */
export function decodeCounterValue(raw: Buffer | null | undefined): CounterValue | undefined {
  if (raw === null || raw === undefined || raw.length < 1) return undefined;
  const specLength = raw[0] ?? 0;
  const countsAt = 1 + specLength + 8;
  if (raw.length < countsAt || (raw.length - countsAt) % 4 !== 0) return undefined;
  const newest = raw.readDoubleBE(1 + specLength);
  if (!Number.isSafeInteger(newest)) return undefined;
  const counts = new Uint32Array((raw.length - countsAt) / 4);
  for (let i = 0; i < counts.length; i++) counts[i] = raw.readUInt32BE(countsAt + 4 * i);
  return { spec: raw.toString('latin1', 1, 1 + specLength), newest, counts };
}

/**
 * Two windows, at least a minute: long enough for a host whose clock is
 * ahead, and for tiny windows long enough that Redis's clock expiring a key
 * never races the window arithmetic (which alone decides what counts).
 */
function ttlMs(w: WindowSpec): number {
  return Math.max(2 * effectiveWindowMs(w), MIN_TTL_MS);
}

const MIN_TTL_MS = 60_000;

/** One counter's script arguments, as COUNT_FUNCTION takes them: bucket, amount, spec, buckets, TTL. */
function countArgs(hit: CounterHit, now: number): [bucket: string, amount: string, spec: string, buckets: string, ttlMs: string] {
  const w = hit.window;
  const bucket = Number.isFinite(now) ? String(Math.floor(now / bucketWidth(w))) : '';
  return [bucket, String(wholeAmount(hit.amount)), specText(w), String(w.buckets), String(ttlMs(w))];
}

/** The same arguments as one step of COUNT_MANY_SCRIPT's packed ARGV[1]: "bucket amount spec buckets ttl;". */
export function countStep(hit: CounterHit, now: number): string {
  return `${countArgs(hit, now).join(' ')};`;
}

/**
 * createRedisStore - counters under `keyPrefix` through `clients` (one, or a
 * pool of connections to the same Redis); defines the Lua commands on each.
 * Calls go to the connections in turn, at most one batch in flight on each,
 * so a second connection sends the next batch while the first waits for its
 * reply.
 */
export function createRedisStore(clients: RedisClient | readonly RedisClient[], keyPrefix: string): RedisCounterStore {
  const pool: readonly RedisClient[] = Array.isArray(clients) ? clients : [clients as RedisClient];
  const head = pool[0];
  if (head === undefined) throw new RangeError('createRedisStore needs at least one client');
  const first: RedisClient = head;
  for (const client of pool) {
    client.defineCommand('leveeCount', { numberOfKeys: 1, lua: COUNT_SCRIPT });
    client.defineCommand('leveeCountMany', { lua: COUNT_MANY_SCRIPT });
    client.defineCommand('leveeCountDistinct', { numberOfKeys: 2, lua: COUNT_DISTINCT_SCRIPT });
  }
  let turn = 0;
  const counting = (): WithCountCommand => pool[turn++ % pool.length] as unknown as WithCountCommand;
  const redisKey = (key: string): string => `${keyPrefix}{${key}}`;
  // A request's counters in one script call where all keys may be touched together.
  const together = !first.isCluster;

  /**
   * Auto-pipelining of whole requests: the counters of every request that
   * arrives while a call is on its way are collected in `pending` and sent as
   * ONE script call (one command, one reply, one script run for several
   * requests), at the end of the event-loop turn, or, when every connection
   * already has a call in flight, as soon as one of them answers. Each request
   * gets its own slice of the totals. The script adds the counters in order,
   * so two requests on the same key see the totals two calls would give.
   */
  let pending: CountBatch | undefined;
  let sendScheduled = false;
  let inFlight = 0;

  function send(full: CountBatch): void {
    if (pending === full) pending = undefined;
    inFlight++;
    let call: Promise<unknown>;
    try {
      call = counting().leveeCountMany(full.keys.length, ...full.keys, full.steps);
    } catch (error) {
      // A client that throws instead of rejecting: every waiter still gets its answer.
      call = Promise.reject(error);
    }
    call
      .then((reply) => {
        if (!Array.isArray(reply) || reply.length !== full.keys.length) throw new Error('malformed counter reply from redis');
        const totals = reply.map(countOf);
        for (const waiter of full.waiters) waiter.resolve(totals.slice(waiter.from, waiter.from + waiter.count));
      })
      .catch((error: unknown) => {
        for (const waiter of full.waiters) waiter.reject(error);
      })
      .finally(() => {
        inFlight--;
        if (pending !== undefined && !sendScheduled) send(pending);
      });
  }

  /** At the end of the turn: send what was collected, unless every connection is busy (then a reply sends it). */
  function sendAtTurnEnd(): void {
    sendScheduled = false;
    if (pending !== undefined && inFlight < pool.length) send(pending);
  }

  function applyBatched(hits: readonly CounterHit[], now: number): Promise<readonly number[]> {
    // A full batch goes at once: one script call never holds Redis for long.
    if (pending !== undefined && pending.keys.length + hits.length > MAX_COUNTERS_PER_CALL) send(pending);
    pending ??= { keys: [], steps: '', waiters: [] };
    if (!sendScheduled) {
      sendScheduled = true;
      setImmediate(sendAtTurnEnd);
    }
    const batch = pending;
    const from = batch.keys.length;
    for (const h of hits) {
      batch.keys.push(redisKey(h.key));
      batch.steps += countStep(h, now);
    }
    return new Promise((resolve, reject) => {
      batch.waiters.push({ from, count: hits.length, resolve, reject });
    });
  }

  async function applyOne(hit: CounterHit, now: number): Promise<number> {
    const w = hit.window;
    const key = redisKey(hit.key);
    const args = countArgs(hit, now);
    const reply =
      hit.distinct === undefined
        ? await counting().leveeCount(key, ...args)
        : await counting().leveeCountDistinct(key, `${key}#${hit.distinct}`, ...args, String(now), String(now + effectiveWindowMs(w)), String(ttlMs(w)));
    return countOf(reply);
  }

  async function peekOne(read: CounterRead, now: number): Promise<number> {
    const value = decodeCounterValue(await first.getBuffer(redisKey(read.key)));
    if (value === undefined || value.spec !== specText(read.window) || value.counts.length !== read.window.buckets) return 0;
    return windowTotal({ newest: value.newest, counts: value.counts }, now, read.window);
  }

  return {
    // Distinct counts (rare: contain limits on recipient domains) take the per-counter script with their marker key.
    apply: (hits, now) =>
      together && hits.length > 0 && hits.every((h) => h.distinct === undefined) ? applyBatched(hits, now) : Promise.all(hits.map((h) => applyOne(h, now))),
    peek: (keys, now) => Promise.all(keys.map((k) => peekOne(k, now))),
    // Every connection: the breaker closes only when all of them can count again.
    async probe() {
      await Promise.all(pool.map((client) => client.ping()));
    },
    redisKey,
  };
}

/** Reconnect quickly at first, then every second: the breaker's probe needs a connection to find. */
function reconnectDelay(times: number): number {
  return Math.min(50 * 2 ** Math.min(times, 10), 1000);
}

/**
 * createRedisClient - an ioredis client that fails fast: no offline queue (a
 * command while disconnected is rejected at once instead of waiting for a
 * reconnect), no replay after a reconnect, a per-command timeout (default: the
 * request deadline; the shared lists' connection passes a longer one), and
 * reconnection in the background forever. Auto-pipelining is on: the
 * commands issued in one event-loop turn go out in one write. The counting
 * call of a single server is left out of it (autoPipeliningIgnoredCommands):
 * the store already batches whole requests into that one call, with one call
 * in flight per connection (see createRedisStore), so ioredis's second
 * deferral to the next turn would only add latency.
 * Attach an 'error' listener (the daemon does), or ioredis reports nothing.
 */
export function createRedisClient(settings: RedisSettings, commandTimeoutMs = settings.timeoutMs): RedisClient {
  // The fail-fast options every node connection gets (no undefined values: ioredis's option
  // types do not accept them under exactOptionalPropertyTypes).
  const perNode = { maxRetriesPerRequest: 0, commandTimeout: commandTimeoutMs, connectTimeout: 1000 };
  const single = { ...perNode, enableOfflineQueue: false, enableAutoPipelining: true, autoPipeliningIgnoredCommands: ['leveeCountMany'], lazyConnect: false, retryStrategy: reconnectDelay };
  if (settings.clusterNodes !== undefined) {
    return new Cluster(
      settings.clusterNodes.map((n) => ({ host: n.host, port: n.port })),
      {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: reconnectDelay,
        redisOptions: perNode,
      },
    );
  }
  if (settings.sentinels !== undefined && settings.sentinelName !== undefined) {
    return new Redis({
      sentinels: settings.sentinels.map((n) => ({ host: n.host, port: n.port })),
      name: settings.sentinelName,
      ...(settings.password === undefined ? {} : { password: settings.password }),
      ...single,
      sentinelRetryStrategy: reconnectDelay,
    });
  }
  if (settings.url === undefined) throw new Error('counters.redis needs url, cluster_nodes or sentinels');
  return new Redis(settings.url, single);
}

/** Where the client points, without credentials (for logs and /healthz). */
export function describeRedisTarget(settings: RedisSettings): string {
  if (settings.clusterNodes !== undefined) return `cluster ${settings.clusterNodes.map((n) => n.text).join(',')}`;
  if (settings.sentinels !== undefined) return `sentinel ${settings.sentinelName ?? ''} via ${settings.sentinels.map((n) => n.text).join(',')}`;
  try {
    const url = new URL(settings.url ?? '');
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return 'redis';
  }
}
