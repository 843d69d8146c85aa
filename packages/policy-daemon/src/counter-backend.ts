/**
 * counter-backend - build the counter store the config asks for, with its
 * lifecycle: the memory store (always: alone, or as the local fallback of a
 * shared store), the Redis client and fallback store when backend is redis,
 * the counter snapshot (restore at start, save periodically and at close),
 * and the metrics and log lines about all of it.
 *
 * Log lines about a failing shared store are rate-limited: the transition to
 * degraded and back is always logged, individual failures at most once per
 * LOG_INTERVAL_MS with the number suppressed since, so a dead Redis under
 * load produces a handful of lines, not one per request.
 *
 * It also opens the shared lists (shared-list.ts: the block list, ...): in
 * memory for backend memory, in Redis, on a second connection, for redis.
 *
 * ioredis is loaded only when backend is redis (idle memory of the default
 * setup: see docs/benchmarks.md).
 *
 * LIMITATIONS: the backend, Redis address and snapshot settings are read at
 * start only; a reload that changes them logs a warning and takes effect at
 * the next restart.
 */

import { performance } from 'node:perf_hooks';
import type { CounterBackend as BackendName, CounterSettings, CounterStore } from '@levee/rules';
import { createCircuitBreaker } from './circuit-breaker.js';
import { readSnapshot, writeSnapshot } from './counter-snapshot.js';
import { createFallbackStore, type FallbackEvent, type FallbackStore } from './fallback-store.js';
import type { Logger } from './logger.js';
import { createMemoryStore, type MemoryStore } from './memory-store.js';
import type { Metrics } from './metrics.js';
import type { RedisClient } from './redis-store.js';
import { createLogLimiter, LOG_INTERVAL_MS } from './log-limiter.js';
import { createMemorySharedList, type SharedCodec, type SharedList, type SharedRecord } from './shared-list.js';


export interface CounterBackend {
  readonly backend: BackendName;
  /** What the decider counts with (the memory store itself for backend memory). */
  readonly store: CounterStore;
  /** The local counters (the fallback, for backend redis). */
  readonly local: MemoryStore;
  /** Counting locally because the shared store fails. Always false for memory. */
  degraded(): boolean;
  /**
   * Open the shared list `name` (one per name per daemon): in Redis for backend
   * redis, read once before this resolves (bounded by the list timeout);
   * in memory otherwise. Closed by close().
   */
  openList<T>(name: string, codec: SharedCodec<T>, onChange?: (records: readonly SharedRecord<T>[]) => void): Promise<SharedList<T>>;
  /** Save a snapshot now (when configured); resolves when written. */
  snapshot(): Promise<void>;
  /** Stop timers, write the final snapshot, disconnect from Redis. */
  close(): Promise<void>;
}

export interface CounterBackendOptions {
  readonly settings: CounterSettings;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The decision clock (wall-clock ms): counters and snapshots use it. */
  readonly now: () => number;
  /** A monotonic clock for the breaker and log rate limits; performance.now by default. */
  readonly monotonic?: () => number;
  /** Local store to use (the daemon creates it first so metrics can read its size). */
  readonly local?: MemoryStore;
}

/** How long a start waits for the first Redis connection. */
export const START_WAIT_MS = 1000;
/** Command deadline of the shared lists' connection: the admin and the background refresh wait, never a request. */
export const LIST_TIMEOUT_MS = 2000;

/** Resolves true once the client is ready, false after `ms` (it keeps connecting in the background). */
function waitReady(client: RedisClient, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), ms);
    client.on('ready', onReady);
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** startCounterBackend - restore the snapshot (if any), connect to Redis (if configured, without waiting for it). */
export async function startCounterBackend(options: CounterBackendOptions): Promise<CounterBackend> {
  const { settings, log, metrics, now } = options;
  const monotonic = options.monotonic ?? (() => performance.now());
  const local = options.local ?? createMemoryStore({ maxKeys: settings.maxKeys });
  const snapshotSettings = settings.snapshot;

  if (snapshotSettings !== undefined) {
    const r = await readSnapshot(local, snapshotSettings.file, now());
    if (r.problem !== undefined) log.warn({ file: snapshotSettings.file, problem: r.problem }, 'counter snapshot not restored');
    else log.info({ file: snapshotSettings.file, restored: r.restored, skipped: r.skipped }, 'counter snapshot restored');
  }

  let store: CounterStore = local;
  let fallback: FallbackStore | undefined;
  let clients: RedisClient[] = [];
  let listClient: RedisClient | undefined;
  const lists: SharedList<unknown>[] = [];
  const redis = settings.redis;
  let listModule: typeof import('./redis-shared-list.js') | undefined;
  if (settings.backend === 'redis' && redis !== undefined) {
    const { createRedisClient, createRedisStore, describeRedisTarget } = await import('./redis-store.js');
    listModule = await import('./redis-shared-list.js');
    const target = describeRedisTarget(redis);
    const redisLog = log.child({ backend: 'redis', redis: target });
    clients = Array.from({ length: redis.connections }, () => createRedisClient(redis));
    listClient = createRedisClient(redis, LIST_TIMEOUT_MS);
    const clientErrors = createLogLimiter(LOG_INTERVAL_MS, monotonic);
    // One outage shows on every connection: one rate-limited log line for all of them.
    for (const client of clients) {
      client.on('error', (error: unknown) => {
        const suppressed = clientErrors();
        if (suppressed !== undefined) redisLog.warn({ err: errorText(error), suppressed }, 'redis connection error');
      });
    }
    clients[0]?.on('ready', () => redisLog.info('redis connected'));
    // The lists' connection: its errors are the same outage, already reported above.
    listClient.on('error', () => undefined);
    const fallbacks = createLogLimiter(LOG_INTERVAL_MS, monotonic);
    const errors = metrics.counterBackendErrors;
    const report = (event: FallbackEvent): void => {
      switch (event.kind) {
        case 'fallback': {
          errors.labels('redis', event.reason).inc();
          const suppressed = fallbacks();
          if (suppressed !== undefined) {
            redisLog.warn(
              { reason: event.reason, err: event.error === undefined ? undefined : errorText(event.error), suppressed },
              'shared counter store failed for a request, counted locally',
            );
          }
          return;
        }
        case 'probe-failed':
          errors.labels('redis', 'probe_failed').inc();
          return;
        case 'degraded':
          metrics.counterStoreDegraded.set(1);
          redisLog.warn(
            { failures: redis.breaker.failures, cool_down_ms: redis.breaker.coolDownMs },
            'shared counter store degraded: counting locally, retrying in the background',
          );
          return;
        case 'recovered':
          metrics.counterStoreDegraded.set(0);
          redisLog.info('shared counter store recovered: counting in redis again');
          return;
      }
    };
    fallback = createFallbackStore({
      shared: createRedisStore(clients, redis.keyPrefix),
      local,
      breaker: createCircuitBreaker({ failures: redis.breaker.failures, coolDownMs: redis.breaker.coolDownMs, now: monotonic }),
      timeoutMs: redis.timeoutMs,
      report,
    });
    store = fallback;
    // Give the first connection a moment before the listeners open, so the
    // first requests after a start count in Redis; a Redis still down after
    // that is handled like any outage (local counting, background retry).
    const ready = await Promise.all([listClient, ...clients].map((c) => waitReady(c, START_WAIT_MS)));
    redisLog.info(
      { key_prefix: redis.keyPrefix, timeout_ms: redis.timeoutMs, connections: redis.connections, connected: ready.every(Boolean) },
      'shared counters in redis',
    );
  }
  metrics.counterStoreDegraded.set(0);

  let writing: Promise<void> | undefined;
  const snapshot = (): Promise<void> => {
    if (snapshotSettings === undefined) return Promise.resolve();
    // One write at a time: a slow disk must not pile up writers.
    writing ??= writeSnapshot(local, snapshotSettings.file, now())
      .then(
        (r) => {
          metrics.counterSnapshots.labels('ok').inc();
          log.debug({ file: snapshotSettings.file, counters: r.counters, bytes: r.bytes }, 'counter snapshot written');
        },
        (error: unknown) => {
          // Mail keeps flowing: the counters stay in memory and the previous file stays in place.
          metrics.counterSnapshots.labels('failed').inc();
          log.error({ file: snapshotSettings.file, err: errorText(error) }, 'counter snapshot failed');
        },
      )
      .finally(() => {
        writing = undefined;
      });
    return writing;
  };
  const timer = snapshotSettings === undefined ? undefined : setInterval(() => void snapshot(), snapshotSettings.intervalMs);
  timer?.unref();

  return {
    backend: settings.backend,
    store,
    local,
    degraded: () => fallback?.degraded ?? false,
    snapshot,
    async openList<T>(name: string, codec: SharedCodec<T>, onChange?: (records: readonly SharedRecord<T>[]) => void): Promise<SharedList<T>> {
      const changed = onChange as ((records: readonly SharedRecord<unknown>[]) => void) | undefined;
      if (listClient === undefined || listModule === undefined || redis === undefined) {
        const list = createMemorySharedList<T>(name, { now, ...(changed === undefined ? {} : { onChange: changed }) });
        lists.push(list as SharedList<unknown>);
        return list;
      }
      const list = listModule.createRedisSharedList<T>({
        client: listClient,
        keyPrefix: redis.keyPrefix,
        name,
        codec,
        log: log.child({ backend: 'redis' }),
        now,
        ...(changed === undefined ? {} : { onChange: changed }),
        observe: (e) => {
          metrics.sharedListPending.labels(name).set(e.pending);
          if (e.syncedAt !== undefined) metrics.sharedListSyncedAt.labels(name).set(e.syncedAt / 1000);
        },
      });
      lists.push(list as SharedList<unknown>);
      metrics.sharedListPending.labels(name).set(0);
      await list.sync();
      return list;
    },
    async close() {
      if (timer !== undefined) clearInterval(timer);
      for (const list of lists) list.close();
      fallback?.close();
      if (writing !== undefined) await writing;
      await snapshot();
      // quit() waits for replies; a stalled server would hold it forever.
      for (const client of clients) client.disconnect();
      listClient?.disconnect();
    },
  };
}
