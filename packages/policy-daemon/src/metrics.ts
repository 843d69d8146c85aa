/**
 * metrics - Levee's Prometheus metrics on a private prom-client registry.
 *
 * Labels are bounded by construction: protocol, stage, action, rule names
 * from the config and shared list names from the code. Never an address, a
 * sender or a counter key.
 *
 * The per-decision metrics are reached through cached label children
 * (`requestCount` ...): prom-client's labels() validates and hashes the label
 * values on every call, which showed in the policy path's profile.
 */

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'protocol' | 'stage' | 'action'>;
  readonly ruleHits: Counter<'rule' | 'action' | 'mode'>;
  readonly decisionSeconds: Histogram<'protocol'>;
  readonly protocolErrors: Counter<'protocol' | 'code'>;
  readonly internalErrors: Counter<'protocol'>;
  readonly connections: Gauge<'protocol'>;
  /** Connections closed on arrival because the listener was at its max_connections. */
  readonly connectionsRefused: Counter<'protocol'>;
  readonly counterKeys: Gauge;
  readonly configReloads: Counter<'outcome'>;
  /** When the running configuration was loaded (start or last good reload), seconds since the epoch. */
  readonly configLoadedAt: Gauge;
  /** Requests answered from local counts because the shared store failed or its breaker was open. */
  readonly counterBackendErrors: Counter<'backend' | 'outcome'>;
  /** 1 while the shared counter store is skipped (breaker open), else 0. */
  readonly counterStoreDegraded: Gauge;
  readonly counterEvictions: Counter;
  /** Counter snapshots written (counters.snapshot), by outcome: ok, failed (disk full, no permission, ...). */
  readonly counterSnapshots: Counter<'outcome'>;
  /** Changes to a shared list made here and not yet written to Redis. */
  readonly sharedListPending: Gauge<'list'>;
  /** When a shared list was last in step with Redis, seconds since the epoch. */
  readonly sharedListSyncedAt: Gauge<'list'>;
  /** levee_requests_total{protocol,stage,action}, cached. */
  requestCount(protocol: string, stage: string, action: string): CounterChild;
  /** levee_rule_hits_total{rule,action,mode}, cached. */
  ruleHitCount(rule: string, action: string, mode: string): CounterChild;
  /** levee_decision_duration_seconds{protocol}, cached. */
  decisionTime(protocol: string): HistogramChild;
}

/** memo3 - `make` called once per distinct (a, b, c); nested Maps, so a lookup allocates nothing. */
export function memo3<C>(make: (a: string, b: string, c: string) => C): (a: string, b: string, c: string) => C {
  const root = new Map<string, Map<string, Map<string, C>>>();
  return (a, b, c) => {
    let byB = root.get(a);
    if (byB === undefined) root.set(a, (byB = new Map()));
    let byC = byB.get(b);
    if (byC === undefined) byB.set(b, (byC = new Map()));
    let child = byC.get(c);
    if (child === undefined) byC.set(c, (child = make(a, b, c)));
    return child;
  };
}

/** Decisions take tens of microseconds; HTTP-style default buckets would hide them all in the first. */
export const DECISION_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1];

/** createMetrics - a fresh registry with every Levee metric (one per daemon, so tests stay independent). */
export function createMetrics(options: { readonly counterKeys?: () => number; readonly counterEvictions?: () => number } = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry, prefix: 'levee_' });
  const sizeOf = options.counterKeys ?? (() => 0);
  const evictionsOf = options.counterEvictions ?? (() => 0);
  let evictionsSeen = 0;
  const requests = new Counter({
    name: 'levee_requests_total',
    help: 'Decisions answered, by protocol, SMTP stage and action.',
    labelNames: ['protocol', 'stage', 'action'] as const,
    registers,
  });
  const ruleHits = new Counter({
    name: 'levee_rule_hits_total',
    help: 'Rules that decided (mode=enforce) or would have (mode=warn), by rule and action.',
    labelNames: ['rule', 'action', 'mode'] as const,
    registers,
  });
  const decisionSeconds = new Histogram({
    name: 'levee_decision_duration_seconds',
    help: 'Time from a whole request received to its answer ready.',
    labelNames: ['protocol'] as const,
    buckets: DECISION_BUCKETS,
    registers,
  });
  const decisionTimes = new Map<string, HistogramChild>();
  return {
    registry,
    requests,
    ruleHits,
    decisionSeconds,
    requestCount: memo3((protocol, stage, action) => requests.labels(protocol, stage, action)),
    ruleHitCount: memo3((rule, action, mode) => ruleHits.labels(rule, action, mode)),
    decisionTime(protocol) {
      let child = decisionTimes.get(protocol);
      if (child === undefined) decisionTimes.set(protocol, (child = decisionSeconds.labels(protocol)));
      return child;
    },
    sharedListPending: new Gauge({
      name: 'levee_shared_list_pending_changes',
      help: 'Changes to a shared list (e.g. blocks) made on this host and not yet written to Redis.',
      labelNames: ['list'] as const,
      registers,
    }),
    sharedListSyncedAt: new Gauge({
      name: 'levee_shared_list_last_sync_timestamp_seconds',
      help: 'When a shared list was last read from Redis with nothing left to write.',
      labelNames: ['list'] as const,
      registers,
    }),
    protocolErrors: new Counter({
      name: 'levee_protocol_errors_total',
      help: 'Malformed input from an MTA; the connection was closed.',
      labelNames: ['protocol', 'code'] as const,
      registers,
    }),
    internalErrors: new Counter({
      name: 'levee_internal_errors_total',
      help: 'Requests answered with the configured fail action because deciding failed.',
      labelNames: ['protocol'] as const,
      registers,
    }),
    connections: new Gauge({
      name: 'levee_connections',
      help: 'Open MTA connections, by protocol.',
      labelNames: ['protocol'] as const,
      registers,
    }),
    connectionsRefused: new Counter({
      name: 'levee_connections_refused_total',
      help: 'MTA connections closed on arrival because the listener had max_connections open, by protocol.',
      labelNames: ['protocol'] as const,
      registers,
    }),
    counterKeys: new Gauge({
      name: 'levee_counter_keys',
      help: 'Rate-limit keys held by the counter store.',
      registers,
      collect() {
        this.set(sizeOf());
      },
    }),
    configLoadedAt: new Gauge({
      name: 'levee_config_last_load_timestamp_seconds',
      help: 'When the running configuration was loaded (start or last successful reload).',
      registers,
    }),
    configReloads: new Counter({
      name: 'levee_config_reloads_total',
      help: 'Configuration reloads, by outcome (ok, failed).',
      labelNames: ['outcome'] as const,
      registers,
    }),
    counterBackendErrors: new Counter({
      name: 'levee_counter_backend_errors_total',
      help: 'Shared counter store failures, by backend and outcome (timeout, error, circuit_open: answered from local counts; probe_failed: background retry).',
      labelNames: ['backend', 'outcome'] as const,
      registers,
    }),
    counterStoreDegraded: new Gauge({
      name: 'levee_counter_store_degraded',
      help: '1 while the shared counter store is failing and requests are counted locally.',
      registers,
    }),
    counterEvictions: new Counter({
      name: 'levee_counter_evictions_total',
      help: 'Counter keys evicted (least recently used) to stay within counters.max_keys.',
      registers,
      collect() {
        // The store counts evictions itself (no per-eviction call into prom-client); catch up at scrape time.
        const total = evictionsOf();
        if (total > evictionsSeen) this.inc(total - evictionsSeen);
        evictionsSeen = total;
      },
    }),
    counterSnapshots: new Counter({
      name: 'levee_counter_snapshots_total',
      help: 'Counter snapshots written to counters.snapshot.file, by outcome (ok, failed); a failed one leaves the previous file in place.',
      labelNames: ['outcome'] as const,
      registers,
    }),
  };
}
