#!/usr/bin/env node
// Levee benchmark runner (`pnpm bench`). For every scenario and run it starts
// the daemon as its own process from the built dist/ (fresh counters, fresh
// RSS high-water mark), drives it with bench/policy-load.mjs or
// bench/milter-load.mjs in another process over loopback, reads the daemon's
// CPU time (/proc/PID/stat) and peak RSS (/proc/PID/status VmHWM), stops it,
// and reports the median of the runs. Then the micro-benchmarks
// (bench/micro.bench.mjs) and the memory benchmark. Writes
// bench/results/<date>.json and regenerates the results section of
// docs/benchmarks.md.
//
//   node bench/run.mjs [--quick] [--runs 3] [--duration 10] [--warmup 2]
//        [--only policy,milter,memory,micro] [--scenario NAME-SUBSTRING[,...]]
//        [--label TEXT] [--no-docs] [--quiet-wait SECONDS]
//        [--memory-requests N] [--flood-requests N] [--check] [--help]
//
// --check judges the issue's targets that the run measured (targetVerdicts in
// bench/lib/report.mjs) and exits 1 if one is missed, 2 if the run measured
// none; it writes no results file and leaves docs/benchmarks.md alone.
// `pnpm bench:check` runs `--only memory --check`: the memory target (1M keys
// under 300 MB, bounded under a flood) holds whatever the host's load, unlike
// the throughput targets, so it can guard every change.
//
// The scenarios reference-c-* run a plain C epoll server instead of the
// daemon (built with cc; skipped without one): bench/reference/dunno-server.c
// answers every policy request DUNNO, bench/reference/noop-milter.c answers
// every milter command the MTA waits for "continue". What they reach is the
// ceiling of the machine for the policy and the milter runs. The scenarios
// reference-node-* run the same two servers written on Node's net module
// (bench/reference/*.mjs): what Node's sockets alone cost per request or
// message, the floor under any Node.js daemon, Levee included. The scenarios
// competitor-* run what postmasters run instead of Levee, installed from
// Debian by scripts/install-bench-deps.sh (`pnpm bench` runs it first; a
// competitor that is missing is skipped, and the table says so): postfwd2,
// the Perl rate-limiting policy daemon, with the benchmark's rules
// (bench/config/postfwd.cf); a no-op milter on Sendmail's libmilter
// (bench/reference/libmilter-noop.c); and rspamd's milter with its ratelimit
// and multimap modules doing the benchmark's rate limits and attachment and
// subject checks (bench/config/rspamd/), its counters in a private
// redis-server. CPU and RSS are counted over a server's whole process tree,
// since postfwd2 answers from pre-forked children and rspamd from a worker.
//
// Before each run it waits (up to --quiet-wait s) until other processes use
// under 15% of the machine, and records the busy share it saw.
//
// Everything is bounded: each load run by --duration, each daemon by a
// SIGTERM then SIGKILL deadline, the whole runner by the scenario list.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createMilterClient } from '../packages/milter-proto/dist/index.js';
import { descendants, median, memoryKiB, processStart, sleep, treeMemoryKiB } from './lib/common.mjs';
import { CLI, configText, daemonPorts, freePort, measuredCommit, printUsage, ROOT, runNode, waitForPort } from './lib/daemon-config.mjs';
import { renderResults, targetGate, targetVerdicts } from './lib/report.mjs';


const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    only: { type: 'string', default: 'policy,milter,memory,micro' },
    scenario: { type: 'string' },
    label: { type: 'string', default: '' },
    'no-docs': { type: 'boolean', default: false },
    'flood-requests': { type: 'string' },
    'memory-requests': { type: 'string' },
    'quiet-wait': { type: 'string', default: '30' },
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  printUsage(import.meta.url);
  process.exit(0);
}
const runs = Number(opt.runs ?? (opt.quick ? 1 : 3));
const duration = Number(opt.duration ?? (opt.quick ? 3 : 10));
const warmup = Number(opt.warmup ?? (opt.quick ? 1 : 2));
const only = new Set(opt.only.split(','));
const memoryRequests = opt['memory-requests'] ?? (opt.quick ? '100000' : '1000000');
const floodRequests = opt['flood-requests'] ?? (opt.quick ? '200000' : '1500000');

if (!existsSync(CLI)) {
  process.stderr.write(`${CLI} is missing: build first (npx --yes pnpm@10.34.9 build)\n`);
  // With --check, 1 would read as "a target was missed".
  process.exit(opt.check ? 2 : 1);
}

// ---- scenarios -------------------------------------------------------------
// target: which issue target a scenario is judged against.
const SCENARIOS = [
  { name: 'policy-c8-d1', kind: 'policy', connections: 8, distinct: '1' },
  { name: 'policy-c8-d1k', kind: 'policy', connections: 8, distinct: '1k' },
  { name: 'policy-c8-d1M', kind: 'policy', connections: 8, distinct: '1M', target: 'policy' },
  { name: 'policy-c8-d1M-info', kind: 'policy', connections: 8, distinct: '1M', logLevel: 'info' },
  { name: 'policy-c1-d1M', kind: 'policy', connections: 1, distinct: '1M' },
  { name: 'policy-c64-d1M', kind: 'policy', connections: 64, distinct: '1M' },
  { name: 'milter-persistent-c8-d1', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1' },
  { name: 'milter-persistent-c8-d1k', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1k' },
  { name: 'milter-persistent-c8-d1M', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1M', target: 'milter' },
  { name: 'milter-persistent-c8-d1M-info', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1M', logLevel: 'info' },
  { name: 'milter-per-message-c8-d1M', kind: 'milter', mode: 'per-message', connections: 8, distinct: '1M' },
  // The Redis counter store (a private redis-server per run, auto-pipelining
  // on); the report compares it with policy-c8-d1M (target: at least half).
  { name: 'policy-c8-d1M-redis', kind: 'policy', connections: 8, distinct: '1M', store: 'redis', target: 'redis' },
  { name: 'policy-c64-d1M-redis', kind: 'policy', connections: 64, distinct: '1M', store: 'redis' },
  // The milter target's load with the counters in Redis: like for like with rspamd below, which keeps its counters there.
  { name: 'milter-persistent-c8-d1M-redis', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1M', store: 'redis' },
  // The reference point: a plain C epoll server answering DUNNO (bench/reference/dunno-server.c),
  // driven by the same generator on the same machine: the ceiling of this machine's loopback.
  { name: 'reference-c-dunno-c8', kind: 'policy', connections: 8, distinct: '1M', store: 'reference', reference: 'dunno-server' },
  // The same for milter: a C milter that answers "continue" (bench/reference/noop-milter.c) with Levee's protocol flags.
  { name: 'reference-c-milter-c8', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1M', store: 'reference', reference: 'noop-milter' },
  // The same two on Node's own net module (bench/reference/*.mjs): what Node's sockets cost any
  // Node.js daemon per request or message, before any work of Levee's.
  { name: 'reference-node-dunno-c8', kind: 'policy', connections: 8, distinct: '1M', store: 'reference', reference: 'dunno-server.mjs' },
  { name: 'reference-node-milter-c8', kind: 'milter', mode: 'persistent', connections: 8, distinct: '1M', store: 'reference', reference: 'noop-milter.mjs' },
  // Competitors, from Debian's packages (scripts/install-bench-deps.sh), on the same load.
  // competitor: the table's label; about: the sentence under it.
  {
    name: 'competitor-postfwd2-c8',
    kind: 'policy',
    connections: 8,
    distinct: '1M',
    store: 'reference',
    reference: 'postfwd2',
    competitor: 'postfwd2 (Perl), the same rules',
    about: "postfwd2, the Perl rate-limiting policy daemon (Debian's postfwd), with bench/config/postfwd.cf, the benchmark's 20 rules and 3 rate limits as postfwd writes them",
  },
  {
    name: 'competitor-libmilter-noop-c8',
    kind: 'milter',
    mode: 'persistent',
    connections: 8,
    distinct: '1M',
    store: 'reference',
    reference: 'libmilter-noop',
    competitor: 'libmilter no-op (C), no rules',
    about: "a milter on Sendmail's own libmilter that answers \"continue\" and does nothing else (bench/reference/libmilter-noop.c), with Levee's protocol flags",
  },
  {
    name: 'competitor-rspamd-c8',
    kind: 'milter',
    mode: 'persistent',
    connections: 8,
    distinct: '1M',
    store: 'reference',
    reference: 'rspamd',
    // Its counters live in a private redis-server, as Levee's do in milter-persistent-c8-d1M-redis.
    redis: true,
    competitor: 'rspamd (C + Lua), 3 rate limits in Redis, attachment and subject checks',
    about:
      "rspamd 3.4's milter (Debian's rspamd; its rspamd_proxy worker scanning in-process) with only its ratelimit module (the benchmark's 3 rate limits, counters in Redis) and multimap module (the executable-attachment and spam-subject checks) enabled (bench/config/rspamd/); it answers only at end of message (one round trip per message where Levee answers at every stage, ten)",
  },
];
const REDIS_SERVER = '/usr/bin/redis-server';

// ---- daemon lifecycle --------------------------------------------------------
const tmpDir = path.join(os.tmpdir(), `levee-bench-${process.pid}`);

// Generated configs, compiled reference servers and redis-server's directory: removed at exit, however the runner ends.
process.on('exit', () => rmSync(tmpDir, { recursive: true, force: true }));

// Every process this runner starts, so an interrupted run leaves none behind.
const children = new Set();
// Of those, the servers that forked into the background: ended at exit too, whatever ended the runner.
const daemonized = new Set();
process.on('exit', () => {
  for (const server of daemonized) server.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    for (const child of children) child.kill('SIGKILL');
    process.exit(130);
  });
}

/** Share of all CPUs busy over `ms` (from /proc/stat): what else runs on the machine. */
async function machineBusy(ms = 500) {
  const read = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
}

/** Wait (bounded) until the machine is quiet, so other work does not skew a run; the busy share seen. */
async function waitForQuiet(limit = 0.15, maxWaitMs = Number(opt['quiet-wait']) * 1000) {
  const until = Date.now() + maxWaitMs;
  let busy = await machineBusy();
  while (busy > limit && Date.now() < until) {
    process.stderr.write(`  (machine ${Math.round(busy * 100)}% busy with other work; waiting)\r`);
    await sleep(2000);
    busy = await machineBusy();
  }
  return busy;
}
mkdirSync(tmpDir, { recursive: true });


/**
 * Spawn a server that listens on `port`, wait until it accepts connections
 * (or fail if it exits first), and return it with a stop(): SIGTERM, then
 * SIGKILL after `killAfterMs`, resolving with how it exited.
 */
async function startServer(name, command, args, port, killAfterMs, { tree = false, startMs = 10_000 } = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  // With tree, a SIGKILL (an interrupted runner, a server that will not stop) takes the
  // server's descendants first: its workers would outlive it, orphaned.
  const handle = {
    kill(signal) {
      if (tree && signal === 'SIGKILL') {
        for (const pid of descendants(child.pid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone in between
          }
        }
      }
      child.kill(signal);
    },
  };
  children.add(handle);
  child.once('exit', () => children.delete(handle));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await Promise.race([waitForPort(port, startMs), exited.then((e) => Promise.reject(new Error(`${name} exited ${JSON.stringify(e)}: ${stderr}`)))]);
  } catch (error) {
    handle.kill('SIGKILL');
    throw error;
  }
  return {
    pid: child.pid,
    async stop() {
      handle.kill('SIGTERM');
      const timer = setTimeout(() => handle.kill('SIGKILL'), killAfterMs);
      const how = await exited;
      clearTimeout(timer);
      return how;
    },
  };
}

/** A private redis-server on loopback (no persistence), for the Redis store scenarios. */
async function startRedisServer() {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is missing: run scripts/install-redis-test-deps.sh`);
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--dir', tmpDir];
  const server = await startServer('redis-server', REDIS_SERVER, args, port, 5000);
  return { url: `redis://127.0.0.1:${port}`, pid: server.pid, stop: server.stop };
}

/**
 * Installed competitors, started as a postmaster would run them, each in a
 * directory of its own that its unprivileged user can write. verify(port)
 * throws unless the server answers as its rules say (were they loaded?).
 *
 * postfwd2 has no foreground server mode: it forks into the background and
 * writes its master's PID to --pidfile (its cache daemon and pre-forking
 * policy server are that master's descendants). Its --file must be absolute
 * (it chdirs to / first); the pid file and cache socket are made after it
 * drops privileges; the --summary and --cache options are Debian's defaults
 * (/etc/default/postfwd).
 *
 * rspamd runs in the foreground (-f) with its milter worker as its child;
 * prepare() writes its configuration (bench/config/rspamd/, with the run's
 * directory, port and redis-server filled in) to the run's directory.
 */
const COMPETITORS = {
  postfwd2: {
    program: '/usr/sbin/postfwd2',
    install: 'postfwd',
    rules: path.join(ROOT, 'bench/config/postfwd.cf'),
    args: (port, dir) => [
      '--file', COMPETITORS.postfwd2.rules,
      '--interface', '127.0.0.1',
      '--port', String(port),
      '--pidfile', path.join(dir, 'postfwd2.pid'),
      '--cache_port', path.join(dir, 'postfwd2-cache.socket'),
      ...unprivilegedUser(),
      '--summary=600', '--cache=600', '--cache-rdomain-only', '--cache-no-size',
    ],
    pidFile: (dir) => path.join(dir, 'postfwd2.pid'),
    // The rules are loaded when the backup MX is let through (OK) rather than DUNNO for everyone.
    async verify(port) {
      const answer = await policyAction(port, { client_address: '198.51.100.7' });
      if (answer !== 'OK') throw new Error(`postfwd2 answered ${answer} where its rules say OK: did it load ${COMPETITORS.postfwd2.rules}?`);
    },
  },
  rspamd: {
    program: '/usr/bin/rspamd',
    install: 'rspamd',
    rules: path.join(ROOT, 'bench/config/rspamd'),
    prepare(dir, port, redisUrl) {
      const redis = new URL(redisUrl);
      for (const file of readdirSync(COMPETITORS.rspamd.rules)) {
        const text = readFileSync(path.join(COMPETITORS.rspamd.rules, file), 'utf8');
        writeFileSync(path.join(dir, file), text.replaceAll('@DIR@', dir).replaceAll('@PORT@', String(port)).replaceAll('@REDIS@', `${redis.hostname}:${redis.port}`));
      }
    },
    // It will not run its workers as root: -u/-g when root, as its Debian service does with _rspamd.
    args: (port, dir) => ['-f', '-c', path.join(dir, 'rspamd.conf'), ...(process.getuid() === 0 ? ['-u', 'nobody', '-g', 'nogroup'] : [])],
    // Its multimap rules are loaded when a message with an .exe attachment is refused at end of message.
    async verify(port) {
      const reply = await milterEomReply(port, 'invoice.exe');
      const refused = reply.type === 'REJECT' || (reply.type === 'REPLYCODE' && reply.text.startsWith('5'));
      if (!refused) throw new Error(`rspamd answered ${JSON.stringify(reply)} to an .exe attachment where its rules say reject: did it load ${COMPETITORS.rspamd.rules}?`);
    },
  },
};

/** --user and --group for a daemon that drops privileges: nobody/nogroup (Debian's names) as root, else this user. */
function unprivilegedUser() {
  if (process.getuid() === 0) return ['--user', 'nobody', '--group', 'nogroup'];
  return ['--user', os.userInfo().username, '--group', execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim()];
}

/** Libraries a C reference server links with. */
const REFERENCE_LIBS = { 'libmilter-noop': { libs: ['-lmilter', '-lpthread'], install: 'libmilter-dev' } };

/**
 * How to start a reference server, as { command, args(port) }, or { skipped }
 * with the reason: bench/reference/NAME.mjs runs on this Node.js;
 * bench/reference/NAME.c is compiled once per runner; a competitor
 * (COMPETITORS) is the installed program.
 */
function referenceServerCommand(name) {
  const script = path.join(ROOT, 'bench/reference', name);
  if (name.endsWith('.mjs')) return { command: process.execPath, args: (port) => [script, String(port)] };
  const competitor = COMPETITORS[name];
  if (competitor !== undefined) {
    if (!existsSync(competitor.program)) return { skipped: `${competitor.program} is missing (Debian package ${competitor.install}: scripts/install-bench-deps.sh)` };
    return { command: competitor.program, args: competitor.args, competitor };
  }
  const binary = referenceServerBinary(name);
  if (binary === undefined) {
    const install = REFERENCE_LIBS[name]?.install;
    return { skipped: `bench/reference/${name}.c did not compile (needs cc${install === undefined ? '' : ` and ${install}: scripts/install-bench-deps.sh`})` };
  }
  return { command: binary, args: (port) => [String(port)] };
}

/** bench/reference/NAME.c compiled once per runner: its path, or undefined when cc failed. */
const referenceBinaries = new Map();
function referenceServerBinary(name) {
  if (referenceBinaries.has(name)) return referenceBinaries.get(name) || undefined;
  const out = path.join(tmpDir, name);
  try {
    const libs = REFERENCE_LIBS[name]?.libs ?? [];
    execFileSync('cc', ['-O2', '-o', out, path.join(ROOT, `bench/reference/${name}.c`), ...libs], { stdio: ['ignore', 'ignore', 'pipe'] });
    referenceBinaries.set(name, out);
  } catch (error) {
    process.stderr.write(`  no C reference server ${name} (cc failed: ${String(error.message).split('\n')[0]})\n`);
    referenceBinaries.set(name, '');
  }
  return referenceBinaries.get(name) || undefined;
}

/** A reference server on a free loopback port, shaped like startDaemon's result (the same port for both protocols). */
async function startReferenceServer(name, { command, args, competitor }, redisUrl) {
  const port = await freePort();
  if (competitor?.pidFile !== undefined) return startDaemonizingServer(name, command, competitor, port);
  if (competitor !== undefined) return startForegroundCompetitor(name, command, competitor, port, redisUrl);
  return oneServerHandle(port, await startServer(name, command, args(port), port, 8000), memoryKiB);
}

/** startDaemon's shape for a server started by startServer (one port for both protocols); `memory(pid)` is read just before it stops. */
function oneServerHandle(port, server, memory) {
  return {
    policyPort: port,
    milterPort: port,
    pid: server.pid,
    async stop() {
      const mem = memory(server.pid);
      return { ...mem, exit: await server.stop(), stderr: '' };
    },
  };
}

/**
 * A competitor that stays in the foreground with workers of its own (rspamd):
 * started in a directory its user can write, checked with verify(), stopped
 * by its PID; its CPU and RSS are those of all its processes.
 */
async function startForegroundCompetitor(name, command, competitor, port, redisUrl) {
  const dir = mkdtempSync(path.join(tmpDir, `${name}-`));
  chmodSync(dir, 0o777);
  competitor.prepare?.(dir, port, redisUrl);
  // rspamd compiles its maps and URL tables before it forks its worker: give it 20 s, then 20 s to stop (it waits 16 s for its worker).
  const server = await startServer(name, command, competitor.args(port, dir), port, 20_000, { tree: true, startMs: 20_000 });
  try {
    await competitor.verify(port);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return oneServerHandle(port, server, treeMemoryKiB);
}

/** Is `pid` still the process that started at `start` (not gone, not a later process given the same PID)? */
const sameProcess = (pid, start) => start !== undefined && processStart(pid) === start;

/**
 * A server that forks into the background (postfwd2): run its command, wait
 * for its pid file and port, check that it answers as its rules say, and
 * stop it by the master's PID (SIGTERM, SIGKILL after 8 s), then any of the
 * master's descendants that outlived it.
 */
async function startDaemonizingServer(name, command, competitor, port) {
  const dir = mkdtempSync(path.join(tmpDir, `${name}-`));
  chmodSync(dir, 0o777); // its user writes the pid file and socket after dropping privileges
  execFileSync(command, competitor.args(port, dir), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
  let master;
  for (const until = Date.now() + 5000; master === undefined && Date.now() < until; await sleep(50)) {
    const text = existsSync(competitor.pidFile(dir)) ? readFileSync(competitor.pidFile(dir), 'utf8').trim() : '';
    if (/^\d+$/.test(text)) master = Number(text);
  }
  if (master === undefined) throw new Error(`${name}: no PID in ${competitor.pidFile(dir)}`);
  const masterStart = processStart(master);
  const signalIfSame = (pid, start, signal) => {
    try {
      if (sameProcess(pid, start)) process.kill(pid, signal);
    } catch {
      // gone in between
    }
  };
  // SIGKILL (an interrupted runner) takes the whole tree: the master's children would outlive it.
  const handle = {
    kill(signal) {
      if (signal === 'SIGKILL' && sameProcess(master, masterStart)) for (const pid of descendants(master)) signalIfSame(pid, processStart(pid), signal);
      signalIfSame(master, masterStart, signal);
    },
  };
  children.add(handle);
  daemonized.add(handle);
  const stop = async () => {
    const forked = descendants(master).map((pid) => ({ pid, start: processStart(pid) }));
    handle.kill('SIGTERM');
    for (const until = Date.now() + 8000; sameProcess(master, masterStart) && Date.now() < until; ) await sleep(100);
    handle.kill('SIGKILL');
    for (const { pid, start } of forked) signalIfSame(pid, start, 'SIGKILL');
    children.delete(handle);
    daemonized.delete(handle);
  };
  try {
    await waitForPort(port, 10_000);
    await competitor.verify(port);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    policyPort: port,
    milterPort: port,
    pid: master,
    async stop() {
      const mem = treeMemoryKiB(master);
      await stop();
      return { ...mem, exit: { code: 0, signal: null }, stderr: '' };
    },
  };
}

/**
 * The end-of-message reply of a milter to one message (the project's client,
 * every command with a 5 s deadline) whose attachment is named `filename`.
 */
async function milterEomReply(port, filename) {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const client = createMilterClient(socket, { timeoutMs: 5000 });
  try {
    await client.negotiate();
    await client.connect({ hostname: '[192.0.2.25]', family: '4', port: 41000, address: '192.0.2.25' });
    await client.helo('mail.example.org');
    await client.mail('<someone@example.org>');
    await client.rcpt('<user@example.com>');
    await client.data();
    const boundary = 'levee-check';
    for (const [name, value] of [['From', '<someone@example.org>'], ['To', '<user@example.com>'], ['Subject', 'invoice'], ['MIME-Version', '1.0'], ['Content-Type', `multipart/mixed; boundary="${boundary}"`]]) await client.header(name, value);
    await client.eoh();
    const body = [`--${boundary}`, 'Content-Type: text/plain', '', 'see attached', `--${boundary}`, `Content-Type: application/octet-stream; name="${filename}"`, `Content-Disposition: attachment; filename="${filename}"`, 'Content-Transfer-Encoding: base64', '', 'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=', `--${boundary}--`, ''].join('\r\n');
    await client.body(Buffer.from(body));
    return (await client.eom()).reply;
  } finally {
    client.close();
  }
}

/** The action a policy server answers to one RCPT request with these attributes (bounded by a 5 s deadline). */
function policyAction(port, attributes) {
  const request = { request: 'smtpd_access_policy', protocol_state: 'RCPT', protocol_name: 'ESMTP', sender: 'someone@example.org', recipient: 'user@example.com', ...attributes };
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 5 s')), 5000);
    socket.on('data', (d) => {
      reply += d;
      if (reply.includes('\n\n')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(/^action=(\S+)/m.exec(reply)?.[1]);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(`${Object.entries(request).map(([k, v]) => `${k}=${v}`).join('\n')}\n\n`);
  });
}

/**
 * Start a daemon; logs (one JSON line per decision at info) go to /dev/null:
 * the daemon pays for serialising and write(2), not a reader such as journald.
 */
async function startDaemon({ maxKeys = 1_000_000, logLevel = 'warn', milterRules = true, redisUrl } = {}) {
  const ports = await daemonPorts();
  const file = path.join(tmpDir, `levee-${ports.policyPort}.yaml`);
  writeFileSync(file, configText({ ...ports, maxKeys, logLevel, milterRules, redisUrl }));
  const child = spawn(process.execPath, [CLI, 'run', '--config', file, '--log-level', logLevel], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await Promise.race([waitForPort(ports.policyPort, 10_000), exited.then((e) => Promise.reject(new Error(`daemon exited ${JSON.stringify(e)}: ${stderr || 'nothing on stderr (its log, on stdout, is discarded); run it by hand with this config to see why'}`)))]);
    await waitForPort(ports.milterPort, 10_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  const idle = memoryKiB(child.pid);
  return {
    ...ports,
    pid: child.pid,
    idleRssKiB: idle.rssKiB,
    async metric(name) {
      const res = await fetch(`http://127.0.0.1:${ports.metricsPort}/metrics`);
      const text = await res.text();
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
      return m === null ? NaN : Number(m[1]);
    },
    /** The sum of every labelled series of a metric (0 when it has none yet). */
    async metricSum(name) {
      const res = await fetch(`http://127.0.0.1:${ports.metricsPort}/metrics`);
      const text = await res.text();
      let sum = 0;
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
      return sum;
    },
    async stop() {
      const mem = memoryKiB(child.pid);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
      const how = await exited;
      clearTimeout(timer);
      return { ...mem, exit: how, stderr: stderr.slice(0, 2000) };
    },
  };
}

// ---- one scenario ------------------------------------------------------------
/** Levee's Redis store scenarios, and competitors that keep their counters in Redis: each run gets a private redis-server. */
const usesRedis = (s) => s.store === 'redis' || s.redis === true;

/** How to start a scenario's reference server, or { skipped } when what it needs is missing (undefined for Levee's own scenarios). */
function serverOf(s) {
  if (usesRedis(s) && !existsSync(REDIS_SERVER)) return { skipped: `${REDIS_SERVER} is missing (scripts/install-bench-deps.sh)` };
  return s.store === 'reference' ? referenceServerCommand(s.reference) : undefined;
}

/** Run `r` (0-based) of scenario `s`: start its server, drive it, stop it; the generator's figures with the server's. */
async function runOnce(s, reference, r) {
  const busyBefore = await waitForQuiet();
  const redis = usesRedis(s) ? await startRedisServer() : undefined;
  let load;
  let redisFallbacks;
  let stopped;
  try {
    const daemon =
      reference === undefined ? await startDaemon({ logLevel: s.logLevel ?? 'warn', milterRules: s.kind === 'milter', redisUrl: redis?.url }) : await startReferenceServer(s.reference, reference, redis?.url);
    try {
      const common = ['--connections', String(s.connections), '--duration', String(duration), '--warmup', String(warmup), '--distinct', s.distinct, '--pid', String(daemon.pid)];
      if (redis !== undefined) common.push('--other-pid', String(redis.pid));
      load =
        s.kind === 'policy'
          ? await runNode('policy-load.mjs', ['--port', String(daemon.policyPort), ...common], (duration + warmup + 30) * 1000, children)
          : await runNode('milter-load.mjs', ['--port', String(daemon.milterPort), '--mode', s.mode, ...common], (duration + warmup + 30) * 1000, children);
      // Requests answered from local counts (timeout, error, breaker open): the Redis figures hold only if this is ~0.
      if (redis !== undefined && reference === undefined) redisFallbacks = await daemon.metricSum('levee_counter_backend_errors_total');
    } finally {
      stopped = await daemon.stop();
    }
  } finally {
    await redis?.stop();
  }
  delete load.rssSamples;
  const unit = s.kind === 'policy' ? 'req/s' : 'msg/s';
  process.stderr.write(
    `  ${s.name} run ${r + 1}/${runs}: ${load.throughput.toFixed(0)} ${unit}, p50 ${load.latencyMs.p50.toFixed(3)} p99 ${load.latencyMs.p99.toFixed(3)} p99.9 ${load.latencyMs.p999.toFixed(3)} ms, errors ${load.errors}, daemon ${((s.kind === 'policy' ? load.daemonCpuUsPerRequest : load.daemonCpuUsPerMessage) ?? NaN).toFixed(1)} µs CPU each, peak RSS ${(stopped.hwmKiB / 1024).toFixed(0)} MiB${redis === undefined ? '' : `, redis ${(load.otherCpuUsPerRequest ?? load.otherCpuUsPerMessage).toFixed(1)} µs CPU each`}${redisFallbacks === undefined ? '' : `, ${redisFallbacks} ${s.kind === 'policy' ? 'requests' : 'decisions'} counted locally`}${(load.loadCpuUsPerRequest ?? load.loadCpuUsPerMessage) === undefined ? '' : `, load generator ${(load.loadCpuUsPerRequest ?? load.loadCpuUsPerMessage).toFixed(1)} µs CPU each`}\n`,
  );
  await sleep(300);
  return { ...load, daemonPeakRssKiB: stopped.hwmKiB, daemonExit: stopped.exit, machineBusyBefore: busyBefore, ...(redis === undefined ? {} : { redisFallbacks }) };
}

/** A scenario's runs summed up: medians, total errors, and every run as measured. */
function summarize(s, perRun) {
  const med = (f) => median(perRun.map(f));
  return {
    ...s,
    runs: perRun.length,
    median: {
      throughput: med((x) => x.throughput),
      p50: med((x) => x.latencyMs.p50),
      p99: med((x) => x.latencyMs.p99),
      p999: med((x) => x.latencyMs.p999),
      ...(s.kind === 'milter' ? { commandP50: med((x) => x.commandLatencyMs.p50), commandP99: med((x) => x.commandLatencyMs.p99), commandP999: med((x) => x.commandLatencyMs.p999) } : {}),
      errors: med((x) => x.errors),
      cpuUsPerUnit: med((x) => x.daemonCpuUsPerRequest ?? x.daemonCpuUsPerMessage),
      daemonCpuShare: med((x) => x.daemonCpuSeconds / x.seconds),
      peakRssMiB: med((x) => x.daemonPeakRssKiB / 1024),
      ...(usesRedis(s) ? { redisCpuUsPerUnit: med((x) => x.otherCpuUsPerRequest ?? x.otherCpuUsPerMessage) } : {}),
      ...(s.store === 'redis' ? { redisFallbacks: med((x) => x.redisFallbacks) } : {}),
      loadCpuUsPerUnit: med((x) => x.loadCpuUsPerRequest ?? x.loadCpuUsPerMessage),
    },
    totalErrors: perRun.reduce((a, x) => a + x.errors, 0),
    perRun,
  };
}

// ---- memory --------------------------------------------------------------------
async function memoryScenario(name, { maxKeys, distinct, requests }) {
  await waitForQuiet();
  const daemon = await startDaemon({ maxKeys, logLevel: 'warn', milterRules: false });
  let load;
  try {
    load = await runNode(
      'policy-load.mjs',
      ['--port', String(daemon.policyPort), '--connections', '8', '--warmup', '0', '--duration', '300', '--distinct', distinct, '--max-requests', String(requests), '--pid', String(daemon.pid)],
      360_000,
      children,
    );
    var keys = await daemon.metric('levee_counter_keys');
  } finally {
    var stopped = await daemon.stop();
  }
  const samples = load.rssSamples ?? [];
  const result = {
    name,
    maxKeys,
    distinct,
    requests: load.requests,
    errors: load.errors,
    seconds: load.seconds,
    keys,
    idleRssMiB: daemon.idleRssKiB / 1024,
    finalRssMiB: stopped.rssKiB / 1024,
    peakRssMiB: stopped.hwmKiB / 1024,
    bytesPerKey: keys > 0 ? ((stopped.rssKiB - daemon.idleRssKiB) * 1024) / keys : NaN,
    // RSS over the run, thinned to at most 12 points: it must level off once max_keys is reached.
    rssTimeline: samples.filter((_, i) => i % Math.max(1, Math.ceil(samples.length / 12)) === 0).map((x) => ({ t: x.t, requests: x.completed, rssMiB: Math.round(x.rssKiB / 1024) })),
  };
  process.stderr.write(`  ${name}: ${result.requests} requests, ${keys} keys, RSS idle ${result.idleRssMiB.toFixed(0)} final ${result.finalRssMiB.toFixed(0)} peak ${result.peakRssMiB.toFixed(0)} MiB, errors ${result.errors}\n`);
  return result;
}

// ---- main ------------------------------------------------------------------------
const started = new Date();
const machine = {
  nproc: os.availableParallelism?.() ?? os.cpus().length,
  cpuModel: (readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) ?? [])[1] ?? 'unknown',
  memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
  node: process.version,
  kernel: os.release(),
};
const results = { date: started.toISOString(), label: opt.label, commit: measuredCommit(), machine, settings: { runs, duration, warmup }, scenarios: [], memory: [], micro: undefined };
const selected = SCENARIOS.filter((s) => only.has(s.kind) && (opt.scenario === undefined || opt.scenario.split(',').some((part) => s.name.includes(part))));
const runsText = selected.length === 0 ? '' : `; ${runs} run(s) of ${duration}s (+${warmup}s warm-up) per scenario`;
process.stderr.write(`levee bench: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}${runsText}\n`);
// Round by round: run 1 of every scenario, then run 2 of every scenario, ... so that a
// stretch of a busy host falls on every scenario alike, not on one, when they are compared.
const servers = new Map(selected.map((s) => [s.name, serverOf(s)]));
const perRuns = new Map(selected.map((s) => [s.name, []]));
for (const s of selected) {
  const skipped = servers.get(s.name)?.skipped;
  if (skipped !== undefined) process.stderr.write(`  ${s.name} skipped: ${skipped}\n`);
}
for (let r = 0; r < runs; r++) {
  for (const s of selected) {
    if (servers.get(s.name)?.skipped !== undefined) continue;
    perRuns.get(s.name).push(await runOnce(s, servers.get(s.name), r));
  }
}
for (const s of selected) {
  const skipped = servers.get(s.name)?.skipped;
  results.scenarios.push(skipped === undefined ? summarize(s, perRuns.get(s.name)) : { ...s, runs: 0, skipped, median: {}, totalErrors: 0, perRun: [] });
}
if (only.has('memory') && opt.scenario === undefined) {
  process.stderr.write('memory\n');
  const n = Number(memoryRequests);
  results.memory.push(await memoryScenario(`memory-${n >= 1e6 ? `${n / 1e6}M` : n}-distinct-ips`, { maxKeys: Math.ceil(n * 1.05) + 10_000, distinct: 'sequential', requests: n }));
  results.memory.push(await memoryScenario('memory-flood-random-max-keys-250k', { maxKeys: 250_000, distinct: 'random', requests: Number(floodRequests) }));
}
if (only.has('micro') && opt.scenario === undefined) {
  process.stderr.write('micro-benchmarks\n');
  results.micro = await runNode('micro.bench.mjs', ['--json', ...(opt.quick ? ['--quick'] : [])], 600_000, children);
}

if (opt.check) {
  process.stdout.write(`${renderResults(results, 'this run (--check: not written)')}\n`);
  process.exit(targetGate(targetVerdicts(results), (line) => process.stdout.write(`${line}\n`)));
}

mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*$/, '');
const outFile = path.join(ROOT, 'bench/results', `${stamp}.json`);
writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
process.stderr.write(`results: ${path.relative(ROOT, outFile)}\n`);

const table = renderResults(results, path.relative(ROOT, outFile));
process.stdout.write(`${table}\n`);
if (!opt['no-docs'] && !opt.quick && opt.scenario === undefined && only.size === 4) {
  const docs = path.join(ROOT, 'docs/benchmarks.md');
  const text = readFileSync(docs, 'utf8');
  const start = '<!-- bench:results:start -->';
  const end = '<!-- bench:results:end -->';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`docs/benchmarks.md lacks the ${start} ... ${end} markers`);
  writeFileSync(docs, `${text.slice(0, i + start.length)}\n${table}\n${text.slice(j)}`);
  process.stderr.write('docs/benchmarks.md: results section regenerated\n');
} else {
  process.stderr.write('docs/benchmarks.md not touched (partial or quick run; a full run regenerates it)\n');
}
