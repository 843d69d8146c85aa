// What bench/run.mjs and bench/instructions.mjs share to start and drive a
// daemon: free loopback ports, the generated Levee configuration
// (bench/config/*.yaml), waiting for a listener, running a load generator,
// and a script's usage from its header comment.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The daemon the benchmarks run: the built CLI. */
export const CLI = path.join(ROOT, 'packages/policy-daemon/dist/cli.js');

/**
 * The commit whose code a run measures: `git rev-parse HEAD`, with a note when
 * the packages or the installed dependencies (lockfile, patches) differ from
 * it; 'unknown' outside a git checkout.
 */
export function measuredCommit() {
  try {
    const commit = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const measured = ['packages', 'pnpm-lock.yaml', 'pnpm-workspace.yaml', 'patches'];
    const changed = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no', '--', ...measured], { encoding: 'utf8' }).trim() !== '';
    return changed ? `${commit} (with uncommitted changes to packages/ or the dependencies)` : commit;
  } catch {
    return 'unknown';
  }
}

/**
 * `count` distinct TCP ports free on 127.0.0.1 right now. They are held open
 * together until each has its number: one listen(0) after another closes may
 * be given the same port again, and a daemon whose policy and milter
 * listeners share a port does not start (seen once in a full run: exit 78).
 */
export async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((server) => server.address().port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(() => resolve()))));
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort() {
  const [port] = await freePorts(1);
  return port;
}

/** The three ports of a benchmark daemon (configText), distinct. */
export async function daemonPorts() {
  const [policyPort, milterPort, metricsPort] = await freePorts(3);
  return { policyPort, milterPort, metricsPort };
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

/**
 * Run bench/`script` with this Node.js to completion, killed after
 * `deadlineMs`; its last stdout line parsed as JSON. `tracked` holds the
 * child while it runs, so an interrupted caller can end it.
 */
export function runNode(script, args, deadlineMs, tracked) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bench', script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    tracked.add(child);
    child.once('exit', () => tracked.delete(child));
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${script} exited ${code}: ${err}`));
      else {
        try {
          resolve(JSON.parse(out.trim().split('\n').pop()));
        } catch (error) {
          reject(new Error(`${script}: bad output ${out.slice(0, 500)} ${err}`));
        }
      }
    });
  });
}

/** Print the usage of the script at `url`: its header comment (the // lines after the #! line). */
export function printUsage(url) {
  const lines = readFileSync(fileURLToPath(url), 'utf8').split('\n').slice(1);
  const end = lines.findIndex((line) => !line.startsWith('//'));
  const header = lines.slice(0, end === -1 ? lines.length : end);
  process.stdout.write(`${header.map((line) => line.replace(/^\/\/ ?/, '')).join('\n')}\n`);
}
