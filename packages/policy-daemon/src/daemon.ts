/**
 * daemon - wire a loaded config to listeners, the counter store, metrics and
 * logs. Everything with a lifecycle is created here and closed by close().
 *
 * A reload swaps the compiled rules and settings in one assignment, so every
 * request sees either the old config or the new one, never a mix. Counters
 * live in the store keyed by rule name and window, so a reload keeps the
 * counters of every rule whose name, key and window did not change
 * (memory-store explains why the window is part of the identity).
 * LIMITATIONS: listener, metrics and admin addresses, the counters section
 * (backend, store size, Redis, snapshot), the log settings and the load
 * sampling interval are read at start only; changing them needs a restart (a
 * reload logs a warning).
 */

import {
  batvSign,
  canonicalIp,
  clientIpOf,
  compileBlockList,
  compileCidrList,
  liveBlocks,
  type BatvKey,
  type Facts,
  type IpAddress,
  type BlockList, type CounterStore, type LeveeConfig, type RecipientDirectory, type Ruleset } from '@levee/rules';
import { readFileSync } from 'node:fs';
import { startAdminServer, type AdminActions, type AdminServer } from './admin-server.js';
import { BLOCK_CODEC, blockListOf, BLOCKS_LIST, type BlockValue } from './block-records.js';
import type { SharedList } from './shared-list.js';
import { createEvidenceStore } from './evidence.js';
import { createContainmentService, type ContainmentService } from './containment-service.js';
import { CONTAIN_CODEC, CONTAINED_LIST, type ContainValue } from './containment-book.js';
import { HELD_CODEC, HELD_LIST, type HeldRecord } from './held-mail.js';
import { createRedactor, randomRedactKey, showEvidence, SHOW_ALL, type Redactor } from './log-redaction.js';
import { startCounterBackend, type CounterBackend } from './counter-backend.js';
import { createLogLimiter, LOG_INTERVAL_MS } from './log-limiter.js';
import type { Logger } from './logger.js';
import { createMemoryStore, type MemoryStore } from './memory-store.js';
import { createMetrics, type Metrics } from './metrics.js';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';
import type { DeciderDeps } from './decider.js';
import { createLoadMonitor, type LoadMonitor, type LoadSources } from './load-monitor.js';
import { createMilterService } from './milter-service.js';
import { createPolicyService } from './policy-service.js';
import { listenOn, type Listener } from './socket-listener.js';

export interface DaemonOptions {
  readonly config: LeveeConfig;
  readonly ruleset: Ruleset;
  readonly source: string;
  readonly log: Logger;
  readonly now?: () => number;
  /** The recipient directory read from recipients.file, if any. */
  readonly directory?: RecipientDirectory | undefined;
  /** Load readings for outbreak tiers (tests inject them; default: this machine). */
  readonly loadSources?: LoadSources;
  /** The BATV key read from batv.secret_file, if BATV is configured. */
  readonly batvKey?: BatvKey | undefined;
  /** The key read from log.redact_key_file, if configured (else one is drawn at start). */
  readonly redactKey?: string | undefined;
}

export interface Daemon {
  readonly policyListeners: readonly Listener[];
  readonly milterListeners: readonly Listener[];
  /** Open milter connections from `address` (what client_concurrency reads). */
  milterConcurrency(address: string): number;
  readonly metricsServer: MetricsServer | undefined;
  readonly metrics: Metrics;
  /** What decisions count with: the memory store, or the Redis store with its local fallback. */
  readonly store: CounterStore;
  /** The local counters (all of them for backend memory; the fallback for redis). */
  readonly localStore: MemoryStore;
  readonly counters: CounterBackend;
  readonly load: LoadMonitor;
  readonly admin: AdminServer | undefined;
  /** Contained customers and held mail. */
  readonly containment: ContainmentService;
  /** The postmaster's block list as it is now. */
  blocks(): BlockList;
  /** Where the block list is kept (memory, or Redis shared by every host). */
  readonly blockList: SharedList<BlockValue>;
  /** Swap in a new config (already validated) and its recipient directory, together. */
  reload(config: LeveeConfig, ruleset: Ruleset, source: string, directory?: RecipientDirectory, batvKey?: BatvKey, redactKey?: string): void;
  /** Stop accepting, let in-flight requests finish, close idle connections; bounded by `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

interface Live {
  readonly config: LeveeConfig;
  readonly ruleset: Ruleset;
  readonly directory: RecipientDirectory | undefined;
  readonly batvKey: BatvKey | undefined;
  /** Networks whose mail is BATV-signed besides authenticated clients. */
  readonly signClients: (address: IpAddress | undefined) => boolean;
  /** What log lines and admin answers may show (log.redact). */
  readonly redactor: Redactor;
}

function liveState(
  config: LeveeConfig,
  ruleset: Ruleset,
  directory: RecipientDirectory | undefined,
  batvKey: BatvKey | undefined,
  redactKey: string | Buffer,
): Live {
  const redactor = config.log.redact.length === 0 ? SHOW_ALL : createRedactor(config.log.redact, redactKey, ruleset);
  return { config, ruleset, directory, batvKey, signClients: compileCidrList(config.batv?.signClients ?? []), redactor };
}

/** startDaemon - open every listener the config names; rejects if any cannot be opened. */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { log } = options;
  const now = options.now ?? Date.now;
  // Without log.redact_key_file, one key per run: tokens stay the same across reloads.
  const runKey = randomRedactKey();
  let live: Live = liveState(options.config, options.ruleset, options.directory, options.batvKey, options.redactKey ?? runKey);
  const evidence = createEvidenceStore();
  let adminToken = readToken(options.config.admin.tokenFile, log);
  const startedAt = now();
  const localStore = createMemoryStore({ maxKeys: options.config.counters.maxKeys });
  const metrics = createMetrics({ counterKeys: () => localStore.size, counterEvictions: () => localStore.evictions });
  metrics.configLoadedAt.set(now() / 1000);
  const counters = await startCounterBackend({ settings: options.config.counters, log, metrics, now, local: localStore });
  const store = counters.store;
  // The block list: read by every decision (no I/O), swapped on every change.
  let blocks: BlockList = [];
  let blockLookup = compileBlockList(blocks);
  let blockList: SharedList<BlockValue>;
  // Contained customers and held mail: shared like the blocks (containment-service).
  let containedList: SharedList<ContainValue>;
  let heldList: SharedList<HeldRecord>;
  try {
    blockList = await counters.openList(BLOCKS_LIST, BLOCK_CODEC, (records) => {
      blocks = blockListOf(records);
      blockLookup = compileBlockList(blocks);
    });
    containedList = await counters.openList(CONTAINED_LIST, CONTAIN_CODEC);
    heldList = await counters.openList(HELD_LIST, HELD_CODEC);
  } catch (error) {
    await counters.close();
    throw error;
  }
  const load = createLoadMonitor({
    settings: () => ({
      thresholds: live.config.load.thresholds,
      policy: { calmRatio: live.config.load.calmRatio, holdMs: live.config.load.holdMs },
      queueFilesystem: live.config.load.queueFilesystem,
      queueDirectories: live.config.load.queueDirectories,
    }),
    intervalMs: options.config.load.sampleIntervalMs,
    log,
    registry: metrics.registry,
    now,
    ...(options.loadSources === undefined ? {} : { sources: options.loadSources }),
  });
  load.start();
  const containment = createContainmentService({
    containedList,
    heldList,
    held: () => live.config.held,
    notify: () => live.config.notify,
    log,
    now,
    registry: metrics.registry,
  });
  const decider: DeciderDeps = {
    ruleset: () => live.ruleset,
    store,
    now,
    directory: () => live.directory,
    tier: () => load.tier,
    loadDelayMs: () => live.config.load.delayMs,
    observe: (facts) => {
      if (facts.protocol === 'policy') load.noteRequest(facts.stress === true);
    },
    // The address the listener parsed already (facts.clientIp), not a second parse per request.
    blocked: (facts) => (blocks.length === 0 ? undefined : blockLookup(clientIpOf(facts), now())),
    decided: (facts, verdict, decision) => {
      evidence.note(facts, verdict, now());
      containment.note(facts, decision);
    },
    containment: containment.reader,
    batv: () => (live.batvKey === undefined || live.config.batv === undefined ? undefined : { key: live.batvKey, domains: live.config.batv.domains }),
  };

  /** The BATV-signed envelope sender for outbound mail of our domains, or undefined. */
  const signSender = (facts: Facts): string | undefined => {
    const batv = live.config.batv;
    const key = live.batvKey;
    const sender = facts.sender;
    if (batv === undefined || key === undefined || sender === undefined || sender === '') return undefined;
    const domain = sender.slice(sender.lastIndexOf('@') + 1).toLowerCase();
    if (!batv.domains.includes(domain)) return undefined;
    const authenticated = facts.saslUsername !== undefined && facts.saslUsername !== '';
    if (!authenticated && !live.signClients(clientIpOf(facts))) return undefined;
    return batvSign(sender, key, now(), batv.validDays);
  };
  const policy = createPolicyService({
    decider,
    metrics,
    log,
    settings: () => live.config.policy,
    redactor: () => live.redactor,
  });

  const milter = createMilterService({
    decider,
    shedContent: () => load.tier === 'shed' || load.tier === 'refuse',
    signSender,
    metrics,
    log,
    settings: () => ({ failAction: live.config.policy.failAction, idleTimeoutMs: live.config.milter.idleTimeoutMs }),
    redactor: () => live.redactor,
  });

  // Connections closed on arrival at max_connections: counted always, logged at most every LOG_INTERVAL_MS per protocol.
  const refusedLogs = { policy: createLogLimiter(LOG_INTERVAL_MS, () => performance.now()), milter: createLogLimiter(LOG_INTERVAL_MS, () => performance.now()) };
  const refused = (protocol: 'policy' | 'milter'): void => {
    metrics.connectionsRefused.labels(protocol).inc();
    const suppressed = refusedLogs[protocol]();
    if (suppressed === undefined) return;
    // `refused`: this connection and those refused since the last such line.
    log.warn({ proto: protocol, refused: suppressed + 1, max_connections: live.config[protocol].maxConnections }, 'connection limit reached, closing new connections');
  };
  metrics.connectionsRefused.labels('policy').inc(0);
  metrics.connectionsRefused.labels('milter').inc(0);

  const opened: Listener[] = [];
  const policyListeners: Listener[] = [];
  const milterListeners: Listener[] = [];
  let metricsServer: MetricsServer | undefined;
  let admin: AdminServer | undefined;

  /** What the admin endpoint reads and changes. */
  function adminActions(): AdminActions {
    return {
      status: () => ({
        config: live.config === options.config ? options.source : 'reloaded',
        rules: live.config.rules.length,
        uptimeSeconds: Math.round((now() - startedAt) / 1000),
        tier: load.tier,
        loadReadings: load.lastReadings,
        counters: { backend: live.config.counters.backend, degraded: counters.degraded(), keys: localStore.size, evictions: localStore.evictions },
        connections: { policy: policy.connections.size, milter: milter.connections.size },
        blocks: liveBlocks(blocks, now()).length,
        held: containment.held().length,
        contained: containment.contained().length,
        blocksPending: blockList.pending(),
      }),
      held: () => containment.held(),
      heldRecord: (id) => containment.heldRecord(id),
      forgetHeld: (id, how) => containment.forget(id, how),
      contained: () => containment.contained(),
      endContainment: (key) => containment.endContainment(key),
      top: (n) => topCounters(n),
      blocks: () => [...liveBlocks(blocks, now())],
      evidence: (address, n) => {
        if (address === undefined) return evidence.top(n).map((e) => showEvidence(e, live.redactor));
        const found = evidence.get(canonicalIp(address) ?? address);
        return found === undefined ? undefined : showEvidence(found, live.redactor);
      },
      block: async (network, forMs, reason) => {
        const at = now();
        const entry = { network, until: forMs === undefined ? undefined : at + forMs, reason, since: at };
        const write = await blockList.put(network, { reason, since: at }, entry.until);
        const shared = sharedScope(write);
        log.warn({ network, until: entry.until === undefined ? 'unblocked by hand' : new Date(entry.until).toISOString(), reason, shared }, 'blocked by the postmaster');
        return { ...entry, shared };
      },
      unblock: async (network) => {
        const result = await blockList.remove(network);
        const shared = sharedScope(result.write);
        if (result.removed) log.warn({ network, shared }, 'unblocked by the postmaster');
        return { removed: result.removed, shared };
      },
    };
  }

  /** How far a change reached: this host only (backend memory), every host (Redis), or this host until Redis is back. */
  function sharedScope(write: 'stored' | 'pending'): 'no' | 'redis' | 'pending' {
    return write === 'pending' ? 'pending' : counters.backend === 'redis' ? 'redis' : 'no';
  }

  /** The n counters nearest their limits, from the local store (on Redis: this host's share). */
  function topCounters(n: number): unknown[] {
    const byName = new Map(live.ruleset.rules.map((r) => [r.name, r]));
    const at = now();
    const rows: { key: string; rule: string; count: number; limit: number; windowMs: number; share: number }[] = [];
    for (const key of localStore.keysOldestFirst()) {
      const name = key.slice(0, key.indexOf('|'));
      const limit = byName.get(name)?.limit;
      if (limit === undefined) continue;
      const count = localStore.peek([{ key, window: limit.window }], at)[0] ?? 0;
      if (count > 0) rows.push({ key: live.redactor.showKey(key), rule: name, count, limit: limit.max, windowMs: limit.window.windowMs, share: count / limit.max });
    }
    return rows.sort((a, b) => b.share - a.share).slice(0, n);
  }
  try {
    for (const address of options.config.listen.policy) {
      const listener = await listenOn(address, policy.accept, { maxConnections: options.config.policy.maxConnections, onRefused: () => refused('policy') });
      opened.push(listener);
      policyListeners.push(listener);
      log.info({ proto: 'policy', listen: listener.bound }, 'listening');
    }
    for (const address of options.config.listen.milter) {
      const listener = await listenOn(address, milter.accept, { maxConnections: options.config.milter.maxConnections, onRefused: () => refused('milter') });
      opened.push(listener);
      milterListeners.push(listener);
      log.info({ proto: 'milter', listen: listener.bound }, 'listening');
    }
    const metricsListen = options.config.metrics.listen;
    if (metricsListen !== false) {
      metricsServer = await startMetricsServer(metrics.registry, metricsListen.host, metricsListen.port, () => ({
        backend: counters.backend,
        degraded: counters.degraded(),
      }));
      log.info({ listen: `${metricsListen.host}:${metricsServer.port}` }, 'metrics listening');
    }
    const adminListen = options.config.admin.listen;
    if (adminListen !== false) {
      admin = await startAdminServer(adminActions(), adminListen.host, adminListen.port, () => adminToken);
      log.info({ listen: `${adminListen.host}:${admin.port}`, changes: adminToken === undefined ? 'disabled (no admin.token_file)' : 'token' }, 'admin listening');
    }
  } catch (error) {
    await admin?.close();
    load.stop();
    await Promise.all(opened.map((l) => l.close()));
    await metricsServer?.close();
    await counters.close();
    throw error;
  }
  log.info({ config: options.source, rules: options.config.rules.length }, 'levee started');

  return {
    policyListeners,
    milterListeners,
    load,
    get admin() {
      return admin;
    },
    blocks: () => liveBlocks(blocks, now()),
    containment,
    blockList,
    milterConcurrency: (address) => milter.concurrency(address),
    metricsServer,
    metrics,
    store,
    localStore,
    counters,
    reload(config, ruleset, source, directory, batvKey, redactKey) {
      if (JSON.stringify(config.listen) !== JSON.stringify(live.config.listen) || JSON.stringify(config.metrics) !== JSON.stringify(live.config.metrics)) {
        log.warn('listen or metrics addresses changed: they take effect at the next restart');
      }
      if (JSON.stringify(config.counters) !== JSON.stringify(live.config.counters)) {
        log.warn('counters settings changed: they take effect at the next restart');
      }
      const startOnly = startOnlyChanges(live.config, config);
      if (startOnly.length > 0) log.warn({ settings: startOnly }, 'settings read at start only changed: they take effect at the next restart');
      live = liveState(config, ruleset, directory, batvKey, redactKey ?? runKey);
      for (const l of policyListeners) l.server.maxConnections = config.policy.maxConnections;
      for (const l of milterListeners) l.server.maxConnections = config.milter.maxConnections;
      adminToken = readToken(config.admin.tokenFile, log);
      metrics.configReloads.labels('ok').inc();
      metrics.configLoadedAt.set(now() / 1000);
      log.info({ config: source, rules: config.rules.length }, 'configuration reloaded');
    },
    async close(graceMs = 5000) {
      const closing = Promise.all(opened.map((l) => l.close()));
      // Idle policy connections are ended now, busy ones after their reply;
      // Postfix reconnects to whoever listens next.
      policy.drain();
      milter.drain();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([closing, deadline]);
      for (const socket of [...policy.connections, ...milter.connections]) socket.destroy();
      load.stop();
      await containment.idle();
      // After the last decision: the final snapshot then holds every count.
      await counters.close();
      await metricsServer?.close();
      await admin?.close();
      log.info('levee stopped');
    },
  };
}

/**
 * Settings besides listen, metrics and counters that are read once, at start:
 * the log (its level and buffering are set when the logger is made), the
 * admin listener and the load sampling interval.
 */
export function startOnlyChanges(running: LeveeConfig, next: LeveeConfig): string[] {
  const changed: string[] = [];
  if (running.log.level !== next.log.level) changed.push('log.level');
  if (running.log.buffered !== next.log.buffered) changed.push('log.buffered');
  if (JSON.stringify(running.admin.listen) !== JSON.stringify(next.admin.listen)) changed.push('admin.listen');
  if (running.load.sampleIntervalMs !== next.load.sampleIntervalMs) changed.push('load.sample_interval');
  return changed;
}

/** The admin token from admin.token_file; unreadable or empty means changes stay disabled (logged). */
function readToken(file: string | undefined, log: Logger): string | undefined {
  if (file === undefined) return undefined;
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length >= 16) return token;
    log.error({ file }, 'admin.token_file holds fewer than 16 characters: admin changes disabled');
  } catch (error) {
    log.error({ file, err: (error as Error).message }, 'cannot read admin.token_file: admin changes disabled');
  }
  return undefined;
}
