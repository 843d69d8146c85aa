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

import type { CounterStore, LeveeConfig, RecipientDirectory, Ruleset } from '@levee/rules';
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
  /** Swap in a new config (already validated) and its recipient directory, together. */
  reload(config: LeveeConfig, ruleset: Ruleset, source: string, directory?: RecipientDirectory): void;
  /** Stop accepting, let in-flight requests finish, close idle connections; bounded by `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

interface Live {
  readonly config: LeveeConfig;
  readonly ruleset: Ruleset;
  readonly directory: RecipientDirectory | undefined;
}

/** startDaemon - open every listener the config names; rejects if any cannot be opened. */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { log } = options;
  const now = options.now ?? Date.now;
  let live: Live = { config: options.config, ruleset: options.ruleset, directory: options.directory };
  const localStore = createMemoryStore({ maxKeys: options.config.counters.maxKeys });
  const metrics = createMetrics({ counterKeys: () => localStore.size, counterEvictions: () => localStore.evictions });
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
  };
  const policy = createPolicyService({
    decider,
    metrics,
    log,
    settings: () => live.config.policy,
  });

  const milter = createMilterService({
    decider,
    shedContent: () => load.tier === 'shed' || load.tier === 'refuse',
    metrics,
    log,
    settings: () => live.config.policy,
  });

  const opened: Listener[] = [];
  const milterListeners: Listener[] = [];
  let metricsServer: MetricsServer | undefined;
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
  } catch (error) {
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
    milterConcurrency: (address) => milter.concurrency(address),
    metricsServer,
    metrics,
    store,
    localStore,
    counters,
    reload(config, ruleset, source, directory) {
      if (JSON.stringify(config.listen) !== JSON.stringify(live.config.listen) || JSON.stringify(config.metrics) !== JSON.stringify(live.config.metrics)) {
        log.warn('listen or metrics addresses changed: they take effect at the next restart');
      }
      if (JSON.stringify(config.counters) !== JSON.stringify(live.config.counters)) {
        log.warn('counters settings changed: they take effect at the next restart');
      }
      live = { config, ruleset, directory };
      metrics.configReloads.labels('ok').inc();
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
      log.info('levee stopped');
    },
  };
}
