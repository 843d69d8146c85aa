// Test harness: private, throw-away redis-server processes on loopback ports.
//
// Each instance gets a temp dir (mkdtemp) holding its redis.conf, log and the
// watchdog script. Nothing is persisted (save "" and appendonly no), it binds
// 127.0.0.1 only, and never uses 6379 or any system Redis.
//
// The server runs under a small shell watchdog (watchdog.sh) so that nothing
// outlives the test process: the watchdog stops redis-server (SIGCONT first, in
// case a test left it SIGSTOPped, then SIGTERM, then SIGKILL) when the harness
// asks (stop file), when the owning Node process is gone, or after a maximum
// lifetime. Every signal goes to a PID we started, never by name.
//
// Ports: a port free on 127.0.0.1 is locked for this process with an O_EXCL
// lock file in the temp dir (like support/postfix.ts), so parallel jest workers
// never pick the same one, and the lock is kept across kill/restart of the
// same instance.
import { alive, execCapture, releasePort, reservePort, sleep } from './process-tools.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_SERVER = '/usr/bin/redis-server';
const INSTALL_HINT = 'run `bash scripts/install-redis-test-deps.sh` (as root) to install redis-server';

export interface RedisInstance {
  readonly port: number;
  readonly url: string;
  /** The redis-server PID of the current run (changes after restart()). */
  readonly pid: number;
  /** SIGKILL the server (the port stays locked for restart()). */
  kill(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Start a fresh (empty) server on the same port after kill(). */
  restart(): Promise<void>;
  /** Stop everything, remove the temp dir and the port lock. Idempotent. */
  stop(): Promise<void>;
}

/** Resolves when a TCP connection to the port succeeds and PING answers PONG. */
async function waitForPong(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      const done = (v: boolean): void => {
        socket.destroy();
        resolve(v);
      };
      socket.setTimeout(500, () => done(false));
      socket.once('error', () => done(false));
      socket.once('connect', () => socket.write('PING\r\n'));
      socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs}ms`);
}

const WATCHDOG = `#!/bin/sh
# watchdog.sh OWNER_PID MAX_SECONDS DIR: run redis-server, stop it when asked, when the owner is gone, or at the deadline.
owner=$1; max=$2; dir=$3
/usr/bin/redis-server "$dir/redis.conf" $(cat "$dir/mode" 2>/dev/null) >>"$dir/redis.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/redis.pid.tmp" && mv "$dir/redis.pid.tmp" "$dir/redis.pid"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  if [ -e "$dir/stop" ] || ! kill -0 "$owner" 2>/dev/null || [ $(( $(date +%s) - start )) -ge "$max" ]; then
    kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL "$pid" 2>/dev/null
    break
  fi
  sleep 0.2
done
wait "$pid" 2>/dev/null
exit 0
`;

export interface RedisOptions {
  /** The server stops itself after this many seconds even if nobody calls stop(). Default 600. */
  readonly maxLifetimeSec?: number;
  /** Run as a Sentinel (redis-server --sentinel) monitoring this master under this name. */
  readonly sentinelOf?: { readonly port: number; readonly name: string };
  /** Run as a Redis Cluster node (cluster-enabled); join the nodes with createRedisCluster. */
  readonly clusterNode?: boolean;
}

/** True if redis-server is installed. */
export function redisAvailable(): boolean {
  return existsSync(REDIS_SERVER);
}

/** startRedis - a private redis-server on 127.0.0.1 at a free port; resolves once it answers PING. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisInstance> {
  if (!redisAvailable()) throw new Error(`${REDIS_SERVER} is missing; ${INSTALL_HINT}`);
  const dir = mkdtempSync(join(tmpdir(), 'levee-redis-'));
  // 6379 is avoided: a system Redis may own it.
  const port = await reservePort('redis', { avoid: [6379] });
  const sentinel = options.sentinelOf;
  const conf =
    sentinel === undefined
      ? [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode yes',
          'daemonize no',
          'save ""',
          'appendonly no',
          `dir ${dir}`,
          'loglevel warning',
          ...(options.clusterNode === true ? ['cluster-enabled yes', 'cluster-config-file nodes.conf', 'cluster-node-timeout 5000'] : ['databases 1']),
        ]
      : [
          `port ${port}`,
          'bind 127.0.0.1',
          'daemonize no',
          `dir ${dir}`,
          'loglevel warning',
          'sentinel resolve-hostnames no',
          `sentinel monitor ${sentinel.name} 127.0.0.1 ${sentinel.port} 1`,
          `sentinel down-after-milliseconds ${sentinel.name} 5000`,
        ];
  writeFileSync(join(dir, 'redis.conf'), `${conf.join('\n')}\n`);
  if (sentinel !== undefined) writeFileSync(join(dir, 'mode'), '--sentinel');
  writeFileSync(join(dir, 'watchdog.sh'), WATCHDOG, { mode: 0o755 });
  let watchdog: ChildProcess | undefined;
  let pid = 0;
  let stopped = false;

  async function launch(): Promise<void> {
    rmSync(join(dir, 'stop'), { force: true });
    rmSync(join(dir, 'redis.pid'), { force: true });
    watchdog = spawn('/bin/sh', [join(dir, 'watchdog.sh'), String(process.pid), String(options.maxLifetimeSec ?? 600), dir], {
      stdio: 'ignore',
      detached: true,
    });
    watchdog.unref();
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(dir, 'redis.pid'))) {
      if (Date.now() > deadline) throw new Error('redis watchdog did not start redis-server');
      await sleep(20);
    }
    pid = Number(readFileSync(join(dir, 'redis.pid'), 'utf8').trim());
    try {
      await waitForPong(port, 10_000);
    } catch (error) {
      const log = existsSync(join(dir, 'redis.log')) ? readFileSync(join(dir, 'redis.log'), 'utf8') : '';
      throw new Error(`${(error as Error).message}\n${log}`);
    }
  }

  async function waitGone(target: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (alive(target) && Date.now() < deadline) await sleep(20);
  }

  await launch();
  const instance: RedisInstance = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return pid;
    },
    async kill() {
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5000);
      // The watchdog notices and exits by itself.
      if (watchdog?.pid !== undefined) await waitGone(watchdog.pid, 5000);
    },
    pause() {
      process.kill(pid, 'SIGSTOP');
    },
    resume() {
      process.kill(pid, 'SIGCONT');
    },
    async restart() {
      if (alive(pid)) throw new Error('restart() needs the server killed first');
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      writeFileSync(join(dir, 'stop'), '');
      await waitGone(pid, 8000);
      if (pid > 0 && alive(pid)) {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      }
      if (watchdog?.pid !== undefined) await waitGone(watchdog.pid, 3000);
      rmSync(dir, { recursive: true, force: true });
      releasePort('redis', port);
    },
  };
  return instance;
}

export const REDIS_CLI = '/usr/bin/redis-cli';

/**
 * createRedisCluster - `n` cluster nodes on loopback joined into one Redis
 * Cluster (all 16384 slots, no replicas) with `redis-cli --cluster create`;
 * resolves once every node reports cluster_state:ok. (Each node also uses
 * its port + 10000 for the cluster bus, on loopback.)
 */
export async function createRedisCluster(n = 3): Promise<RedisInstance[]> {
  const nodes: RedisInstance[] = [];
  try {
    for (let i = 0; i < n; i++) nodes.push(await startRedis({ clusterNode: true }));
    await execCapture(REDIS_CLI, ['--cluster', 'create', ...nodes.map((x) => `127.0.0.1:${x.port}`), '--cluster-replicas', '0', '--cluster-yes'], 30_000);
    const deadline = Date.now() + 20_000;
    for (const node of nodes) {
      for (;;) {
        const info = await execCapture(REDIS_CLI, ['-p', String(node.port), 'cluster', 'info'], 5000);
        if (/cluster_state:ok/.test(info)) break;
        if (Date.now() > deadline) throw new Error(`redis cluster node ${node.port} not ok:\n${info}`);
        await sleep(100);
      }
    }
    return nodes;
  } catch (error) {
    await Promise.all(nodes.map((x) => x.stop()));
    throw error;
  }
}
