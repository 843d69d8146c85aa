// Helpers for tests that run Levee daemons against a private redis-server:
// a YAML config pointing at it, request load with per-request latency, and
// bounded waits on /healthz.
import { performance } from 'node:perf_hooks';
import { rcptRequest, startTestDaemon, type TestDaemon } from './daemon.js';

export interface RedisDaemonOptions {
  readonly url: string;
  readonly timeout?: string;
  readonly coolDown?: string;
  readonly failures?: number;
  /** Extra rule YAML (list items, indented by two spaces). */
  readonly rules?: string;
}

/** The rule every test uses: at most 10 RCPTs per sender and minute, shared. */
export function redisConfig(o: RedisDaemonOptions): string {
  return `
counters:
  backend: redis
  redis:
    url: "${o.url}"
    key_prefix: "levee-test:"
    timeout: ${o.timeout ?? '25ms'}
    breaker: { failures: ${o.failures ?? 3}, cool_down: ${o.coolDown ?? '300ms'} }
rules:
  - name: per-sender
    stage: rcpt
    limit: { key: "{sender}", max: 10, window: 60s }
    action: reject
    text: too many
${o.rules ?? ''}`;
}

export function startRedisDaemon(o: RedisDaemonOptions): Promise<TestDaemon> {
  return startTestDaemon(redisConfig(o), { metrics: true });
}

export async function health(d: TestDaemon): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${String(d.metricsPort)}/healthz`);
  return (await response.json()) as Record<string, unknown>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls /healthz until `degraded` equals `want`; rejects after timeoutMs. */
export async function waitDegraded(d: TestDaemon, want: boolean, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if ((await health(d))['degraded'] === want) return performance.now() - start;
    await sleep(25);
  }
  throw new Error(`degraded did not become ${String(want)} within ${timeoutMs}ms`);
}

export interface LoadResult {
  readonly latencies: number[];
  readonly actions: Map<string, number>;
  readonly errors: string[];
}

/**
 * Runs `connections` policy connections, each sending RCPT requests one after
 * the other (a unique sender each, so the shared limit never fires) until
 * `durationMs` is over; records each request's latency and answer.
 */
export async function runLoad(d: TestDaemon, connections: number, durationMs: number, onTick?: (elapsedMs: number) => void): Promise<LoadResult> {
  const latencies: number[] = [];
  const actions = new Map<string, number>();
  const errors: string[] = [];
  const start = performance.now();
  let seq = 0;
  const worker = async (w: number): Promise<void> => {
    const client = await d.client();
    // Bounded by time and, as a backstop, by count.
    for (let i = 0; i < 100_000 && performance.now() - start < durationMs; i++) {
      onTick?.(performance.now() - start);
      const t = performance.now();
      try {
        const reply = await client.request(rcptRequest({ sender: `load-${w}-${seq++}@example.net` }));
        latencies.push(performance.now() - t);
        actions.set(reply.action, (actions.get(reply.action) ?? 0) + 1);
      } catch (error) {
        errors.push((error as Error).message);
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)));
  return { latencies, actions, errors };
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}
