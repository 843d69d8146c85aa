/**
 * daemon - wire a loaded config to listeners, the counter store, metrics and
 * logs. Everything with a lifecycle is created here and closed by close().
 *
 * A reload swaps the compiled rules and settings in one assignment, so every
 * request sees either the old config or the new one, never a mix. Counters
 * live in the store keyed by rule name and window, so a reload keeps the
 * counters of every rule whose name, key and window did not change
 * (memory-store explains why the window is part of the identity).
 * LIMITATIONS: listener and metrics addresses and the counters section
 * (backend, store size, Redis, snapshot) are read at start only; changing
 * them needs a restart (a reload logs a warning).
 */

import {
  batvSign,
  blockAdd,
  blockedBy,
  blockRemove,
  canonicalIp,
  compileCidrList,
  liveBlocks,
  parseIp,
  type BatvKey,
  type Facts,
  type IpAddress,
  type BlockList, type CounterStore, type LeveeConfig, type RecipientDirectory, type Ruleset } from '@levee/rules';
import { readFileSync } from 'node:fs';
import { startAdminServer, type AdminActions, type AdminServer } from './admin-server.js';
import { createEvidenceStore } from './evidence.js';
import { createRedactor, randomRedactKey, showEvidence, SHOW_ALL, type Redactor } from './log-redaction.js';
import { startCounterBackend, type CounterBackend } from './counter-backend.js';
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
  /** The postmaster's block list as it is now. */
  blocks(): BlockList;
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
  let blocks: BlockList = [];
  const evidence = createEvidenceStore();
  let adminToken = readToken(options.config.admin.tokenFile, log);
  const startedAt = now();
  const localStore = createMemoryStore({ maxKeys: options.config.counters.maxKeys });
  const metrics = createMetrics({ counterKeys: () => localStore.size, counterEvictions: () => localStore.evictions });
  metrics.configLoadedAt.set(now() / 1000);
  const counters = await startCounterBackend({ settings: options.config.counters, log, metrics, now, local: localStore });
  const store = counters.store;
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
    blocked: (address) => blockedBy(blocks, address, now()),
    decided: (facts, verdict) => evidence.note(facts, verdict, now()),
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
    if (!authenticated && !live.signClients(facts.clientAddress === undefined ? undefined : parseIp(facts.clientAddress))) return undefined;
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
    settings: () => live.config.policy,
    redactor: () => live.redactor,
  });

  const opened: Listener[] = [];
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
      }),
      top: (n) => topCounters(n),
      blocks: () => [...liveBlocks(blocks, now())],
      evidence: (address, n) => {
        if (address === undefined) return evidence.top(n).map((e) => showEvidence(e, live.redactor));
        const found = evidence.get(canonicalIp(address) ?? address);
        return found === undefined ? undefined : showEvidence(found, live.redactor);
      },
      block: (network, forMs, reason) => {
        const at = now();
        const entry = { network, until: forMs === undefined ? undefined : at + forMs, reason, since: at };
        blocks = blockAdd(blocks, entry, at);
        log.warn({ network, until: entry.until === undefined ? 'unblocked by hand' : new Date(entry.until).toISOString(), reason }, 'blocked by the postmaster');
        return entry;
      },
      unblock: (network) => {
        const result = blockRemove(blocks, network, now());
        blocks = result.list;
        if (result.removed) log.warn({ network }, 'unblocked by the postmaster');
        return result.removed;
      },
    };
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
      const listener = await listenOn(address, policy.accept);
      opened.push(listener);
      log.info({ proto: 'policy', listen: listener.bound }, 'listening');
    }
    for (const address of options.config.listen.milter) {
      const listener = await listenOn(address, milter.accept);
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

  const policyListeners = opened.filter((l) => !milterListeners.includes(l));
  return {
    policyListeners,
    milterListeners,
    load,
    get admin() {
      return admin;
    },
    blocks: () => liveBlocks(blocks, now()),
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
      live = liveState(config, ruleset, directory, batvKey, redactKey ?? runKey);
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
      // After the last decision: the final snapshot then holds every count.
      await counters.close();
      await metricsServer?.close();
      await admin?.close();
      log.info('levee stopped');
    },
  };
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
