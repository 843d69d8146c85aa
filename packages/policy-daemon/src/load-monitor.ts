/**
 * load-monitor - sample the machine's load off the request path and keep the
 * outbreak tier (rules' load-tier.ts) up to date: load average per CPU,
 * event-loop lag, free space on the queue filesystem, files in the MTA's
 * queue directories, and the share of policy requests Postfix marked
 * stress=yes. Each tier change is one audit log line and a metric.
 *
 * The sources are injectable so tests drive the readings; the default ones
 * are Node's os.loadavg(), monitorEventLoopDelay(), fs.statfs() and a
 * bounded directory walk (at most maxQueueFiles entries per sample, so a
 * queue of a million files costs a bounded time and says "at least").
 */

import { availableParallelism, loadavg } from 'node:os';
import { readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from 'prom-client';
import { INITIAL_TIER_STATE, stepTier, TIERS, type LoadReadings, type Tier, type TierPolicy, type TierState, type TierThresholds } from '@levee/rules';
import type { Logger } from './logger.js';

export interface LoadSources {
  loadPerCpu(): number;
  /** p99 event-loop delay since the last call, ms. */
  eventLoopLagMs(): number;
  freeBytes(path: string): Promise<number | undefined>;
  countFiles(directories: readonly string[], max: number): Promise<number | undefined>;
  /** Release what sampling holds (the event-loop delay histogram). */
  close?(): void;
}

/** What one sample uses; read at every sample, so a reload takes effect at the next one. */
export interface LoadMonitorSettings {
  readonly thresholds: TierThresholds;
  readonly policy: TierPolicy;
  /** Filesystem whose free space is watched (e.g. /var/spool/postfix). */
  readonly queueFilesystem?: string | undefined;
  /** Directories whose files are counted (e.g. .../incoming, .../active, .../deferred). */
  readonly queueDirectories?: readonly string[];
  readonly maxQueueFiles?: number;
}

export interface LoadMonitorOptions {
  readonly settings: () => LoadMonitorSettings;
  readonly intervalMs: number;
  readonly log: Logger;
  readonly registry: Registry;
  readonly now: () => number;
  readonly sources?: LoadSources;
}

export interface LoadMonitor {
  readonly tier: Tier;
  readonly state: TierState;
  readonly lastReadings: LoadReadings;
  /** Policy requests report here whether Postfix said stress=yes. */
  noteRequest(stress: boolean): void;
  /** Take one sample now (the timer calls this). */
  sample(): Promise<TierState>;
  start(): void;
  stop(): void;
}

/** defaultLoadSources - the real machine. */
export function defaultLoadSources(): LoadSources {
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const cpus = Math.max(1, availableParallelism());
  return {
    loadPerCpu: () => (loadavg()[0] ?? 0) / cpus,
    eventLoopLagMs() {
      const p99 = lag.percentile(99) / 1e6;
      lag.reset();
      return p99;
    },
    close() {
      lag.disable();
    },
    async freeBytes(path) {
      try {
        const s = await statfs(path);
        return s.bavail * s.bsize;
      } catch {
        return undefined;
      }
    },
    async countFiles(directories, max) {
      let count = 0;
      const pending = [...directories];
      try {
        while (pending.length > 0 && count < max) {
          const dir = pending.pop() as string;
          for (const entry of await readdir(dir, { withFileTypes: true })) {
            if (entry.isDirectory()) pending.push(join(dir, entry.name));
            else if (++count >= max) break;
          }
        }
      } catch {
        return undefined;
      }
      return count;
    },
  };
}

/** createLoadMonitor - a monitor that is idle until start(). */
export function createLoadMonitor(options: LoadMonitorOptions): LoadMonitor {
  const sources = options.sources ?? defaultLoadSources();
  const registers = [options.registry];
  const tierGauge = new Gauge({ name: 'levee_load_tier', help: 'Outbreak tier: 0 normal, 1 delay, 2 shed, 3 refuse.', registers });
  const tierChanges = new Counter({
    name: 'levee_load_tier_changes_total',
    help: 'Tier changes, by the tier entered.',
    labelNames: ['tier'] as const,
    registers,
  });
  tierGauge.set(0);
  let state: TierState = INITIAL_TIER_STATE;
  let readings: LoadReadings = {};
  let requests = 0;
  let stressed = 0;
  let timer: NodeJS.Timeout | undefined;
  let sampling = false;

  async function sample(): Promise<TierState> {
    const share = requests === 0 ? undefined : stressed / requests;
    requests = 0;
    stressed = 0;
    const settings = options.settings();
    const free = settings.queueFilesystem === undefined ? undefined : await sources.freeBytes(settings.queueFilesystem);
    const depth =
      settings.queueDirectories === undefined || settings.queueDirectories.length === 0
        ? undefined
        : await sources.countFiles(settings.queueDirectories, settings.maxQueueFiles ?? 100_000);
    readings = {
      loadPerCpu: sources.loadPerCpu(),
      eventLoopLagMs: sources.eventLoopLagMs(),
      ...(free === undefined ? {} : { queueFreeBytes: free }),
      ...(depth === undefined ? {} : { queueDepth: depth }),
      ...(share === undefined ? {} : { stressShare: share }),
    };
    const next = stepTier(state, readings, settings.thresholds, settings.policy, options.now());
    if (next.tier !== state.tier) {
      const raised = TIERS.indexOf(next.tier) > TIERS.indexOf(state.tier);
      options.log.warn(
        { tier: next.tier, from: state.tier, cause: raised ? next.cause : 'calm', readings },
        raised ? 'load tier raised' : 'load tier lowered',
      );
      tierGauge.set(TIERS.indexOf(next.tier));
      tierChanges.labels(next.tier).inc();
    }
    state = next;
    return state;
  }

  return {
    get tier() {
      return state.tier;
    },
    get state() {
      return state;
    },
    get lastReadings() {
      return readings;
    },
    noteRequest(stress) {
      requests++;
      if (stress) stressed++;
    },
    sample,
    start() {
      if (timer !== undefined) return;
      timer = setInterval(() => {
        if (sampling) return; // a slow statfs must not pile samples up
        sampling = true;
        sample()
          .catch((error: unknown) => options.log.error({ err: String(error) }, 'load sampling failed'))
          .finally(() => {
            sampling = false;
          });
      }, options.intervalMs);
      timer.unref();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      sources.close?.();
    },
  };
}
