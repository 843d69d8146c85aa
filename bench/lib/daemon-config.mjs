// Starting a daemon for the benchmarks: free loopback ports, the generated
// Levee configuration (bench/config/*.yaml), waiting for a listener. Shared by
// bench/run.mjs and bench/instructions.mjs.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The daemon the benchmarks run: the built CLI. */
export const CLI = path.join(ROOT, 'packages/policy-daemon/dist/cli.js');

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The benchmark's Levee configuration: base.yaml with its ports and limits filled in, rules-common.yaml (+ milter-extra.yaml). */
export function configText({ policyPort, milterPort, metricsPort, maxKeys, logLevel, milterRules, redisUrl }) {
  let base = readFileSync(path.join(ROOT, 'bench/config/base.yaml'), 'utf8')
    .replace('@POLICY_PORT@', String(policyPort))
    .replace('@MILTER_PORT@', String(milterPort))
    .replace('@METRICS_PORT@', String(metricsPort))
    .replace('@MAX_KEYS@', String(maxKeys))
    .replace('@LOG_LEVEL@', logLevel);
  if (redisUrl !== undefined) {
    // A 250ms deadline instead of the default 25ms: on 2 cores shared by the daemon, the load
    // generator, redis-server (and, often, other work) a scheduling stall passes 25ms now and
    // then, the breaker opens and the run would measure the local counters instead. The
    // "counted locally" column shows whether any request missed Redis all the same.
    base = base.replace('  backend: memory\n', `  backend: redis\n  redis:\n    url: "${redisUrl}"\n    key_prefix: "levee-bench:"\n    timeout: 250ms\n`);
    if (!base.includes('backend: redis')) throw new Error('bench/config/base.yaml: no "  backend: memory" line to replace');
  }
  const rules = readFileSync(path.join(ROOT, 'bench/config/rules-common.yaml'), 'utf8');
  const extra = milterRules ? readFileSync(path.join(ROOT, 'bench/config/milter-extra.yaml'), 'utf8') : '';
  return base + rules + extra;
}

/** Resolves once something accepts connections on 127.0.0.1:`port`; rejects after `deadlineMs`. */
export function waitForPort(port, deadlineMs) {
  const until = Date.now() + deadlineMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > until) reject(new Error(`daemon did not listen on ${port} within ${deadlineMs} ms`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}
