// Process, port and namespace helpers shared by the real-server test harnesses
// (support/postfix.ts, support/sendmail.ts; usable by any harness that starts a
// throw-away server on a loopback port).
//
// Why they exist:
// - Real MTAs run inside `unshare --mount --uts` (a private mount and UTS
//   namespace) so that their private /etc/hosts, resolv.conf and host name never
//   touch the machine, and nothing in them can ask a real DNS server.
// - Ports are reserved with lock files in os.tmpdir(), one per harness kind
//   (levee-<kind>-port-<port>.lock holding the owner's PID), so parallel jest
//   workers, and the different harnesses, never hand out the same port.
// - Leftovers are killed by PID, never by name: the spawned namespace script, the
//   daemon, and every process in the instance's mount namespace. Killing by
//   namespace identity is only done while that namespace is pinned by an open
//   fd: a dead namespace's inode number can be reused by a new namespace (another
//   worker's instance, or swaks), and a late teardown must never hit that one.
//
// Linux only (/proc); the namespace parts need root.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';

const UNSHARE = '/usr/bin/unshare';

/** The harnesses that hand out loopback ports; each one's lock files are respected by all the others. */
const PORT_LOCK_KINDS = ['postfix', 'sendmail', 'redis', 'levee'] as const;
export type PortLockKind = (typeof PORT_LOCK_KINDS)[number];

// ---------------------------------------------------------------- basics

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until done() is true or timeoutMs has passed; resolves with the last done(). */
export async function waitUntil(done: () => boolean, timeoutMs: number, pollMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() >= end) return false;
    await sleep(pollMs);
  }
  return true;
}

/** The file's text, or '' if it cannot be read (missing, removed meanwhile). */
export function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Quotes a string for /bin/sh (single quotes). */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** True if the process exists and is not a zombie (an exited daemon waits for PID 1 to reap it). */
export function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/**
 * Runs a binary (no shell) with a minimal environment and resolves with its
 * stdout; rejects with stderr on failure or after timeoutMs (SIGKILL). Its stdin
 * gets `input`, or is closed right away.
 */
export function execCapture(file: string, args: readonly string[], timeoutMs: number, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
    // A command that does not read its stdin may exit before we write: ignore EPIPE.
    child.stdin?.on('error', () => undefined);
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

// ---------------------------------------------------------------- loopback ports

/** True if ::1 is configured on the loopback interface. */
export function ipv6LoopbackAvailable(): boolean {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv6' && a.address === '::1' && a.internal) return true;
  }
  return false;
}

/** Binds host:port exclusively and closes again; resolves with the port bound (port 0: the one the kernel chose), undefined if busy. */
export function tryListen(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ host, port, exclusive: true }, () => {
      const addr = srv.address();
      const got = typeof addr === 'object' && addr !== null ? addr.port : undefined;
      srv.close(() => resolve(got));
    });
  });
}

/**
 * `count` distinct loopback ports free right now, held open together until
 * each has its number: tryListen(host, 0) after another closed may be given
 * the same port again, and a daemon whose two listeners share a port does not
 * start.
 */
async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve);
      });
    }
    return servers.map((server) => {
      const addr = server.address();
      if (typeof addr !== 'object' || addr === null) throw new Error('no port for a loopback listener');
      return addr.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

/** Two distinct free loopback ports (freeLoopbackPorts), e.g. a daemon's policy and metrics listeners. */
export async function freeLoopbackPortPair(): Promise<[number, number]> {
  const [first, second] = await freeLoopbackPorts(2);
  if (first === undefined || second === undefined) throw new Error('no free loopback ports');
  return [first, second];
}

/** The lock file that reserves `port` for a harness of the given kind. */
export function portLockPath(kind: PortLockKind, port: number): string {
  return join(tmpdir(), `levee-${kind}-port-${port}.lock`);
}

function lockHolder(path: string): number | undefined {
  const holder = Number(readIfExists(path).trim());
  return Number.isInteger(holder) && holder > 0 ? holder : undefined;
}

function lockHeldByLiveProcess(path: string): boolean {
  const holder = lockHolder(path);
  return holder !== undefined && alive(holder);
}

function heldByOtherKind(kind: PortLockKind, port: number): boolean {
  return PORT_LOCK_KINDS.some((k) => k !== kind && lockHeldByLiveProcess(portLockPath(k, port)));
}

/** Creates path holding our PID, atomically (content and all: link(2) of a finished temp file); false if it exists. */
function createLockFile(path: string): boolean {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${process.pid}\n`);
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Takes the cross-process lock for a port (a file holding our PID); steals it
 * only from a dead PID. Refuses a port that a live harness of another kind has
 * locked, checked before and again after taking ours (so two kinds racing for
 * one port cannot both win).
 */
export function lockPort(kind: PortLockKind, port: number): boolean {
  if (heldByOtherKind(kind, port)) return false;
  const path = portLockPath(kind, port);
  for (let i = 0; i < 2; i++) {
    if (createLockFile(path)) {
      if (!heldByOtherKind(kind, port)) return true;
      rmSync(path, { force: true });
      return false;
    }
    if (lockHeldByLiveProcess(path)) return false;
    rmSync(path, { force: true }); // stale
  }
  return false;
}

/** Removes the port's lock file (idempotent). */
export function releasePort(kind: PortLockKind, port: number): void {
  rmSync(portLockPath(kind, port), { force: true });
}

/**
 * A loopback port that is free now (on 127.0.0.1, and on ::1 when ipv6), not in
 * `avoid`, and locked for this process (see lockPort). The lock matters: Postfix's
 * master binds with SO_REUSEPORT, so two instances given the same port would
 * both listen and share connections silently; the lock files keep parallel jest
 * workers and the harnesses apart (a port already bound makes the probe fail).
 */
export async function reservePort(
  kind: PortLockKind,
  opts: { readonly ipv6?: boolean; readonly avoid?: readonly number[] } = {},
): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await tryListen('127.0.0.1', 0);
    if (port === undefined || opts.avoid?.includes(port) === true) continue;
    if (opts.ipv6 === true && (await tryListen('::1', port)) === undefined) continue;
    if (lockPort(kind, port)) return port;
  }
  throw new Error('could not find a free loopback port');
}

// ---------------------------------------------------------------- private namespaces

/** The unshare binary spawnInPrivateNamespace runs (for the harnesses' availability checks). */
export function unshareBinary(): string {
  return UNSHARE;
}

/** The namespace script spawned by spawnInPrivateNamespace. */
export interface NamespaceChild {
  /** PID of unshare, which becomes /bin/sh script (undefined if the spawn failed). */
  readonly pid: number | undefined;
  /** True once Node has seen it exit: from then on the PID may belong to someone else. */
  exited(): boolean;
}

/**
 * Spawns `unshare --mount --uts /bin/sh script` (a private mount and UTS
 * namespace), stdout/stderr appended to logFile, minimal environment, not keeping
 * this process alive (the script is expected to stop itself when its owner is gone).
 */
export function spawnInPrivateNamespace(script: string, cwd: string, logFile: string): NamespaceChild {
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(UNSHARE, ['--mount', '--uts', '/bin/sh', script], {
      stdio: ['ignore', logFd, logFd],
      cwd,
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', TZ: process.env['TZ'] ?? 'UTC' },
    });
  } finally {
    closeSync(logFd);
  }
  child.unref();
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  child.once('error', () => {
    exited = true;
  });
  return { pid: child.pid, exited: () => exited };
}

/** The process's mount namespace identity ("mnt:[inode]"), undefined if it is gone. */
export function mountNamespaceOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** An open fd on a mount namespace, and that namespace's identity: while the fd is open, the identity cannot be reused. */
export interface NamespacePin {
  readonly fd: number;
  readonly ns: string;
}

/**
 * Pins the process's mount namespace. The identity is read from the pinned fd
 * itself, so it is the namespace that is held open. Undefined if the process is
 * gone or (unshare not switched yet) still shares this process's namespace.
 */
export function pinMountNamespace(pid: number): NamespacePin | undefined {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/ns/mnt`, 'r');
  } catch {
    return undefined;
  }
  let ns: string | undefined;
  try {
    ns = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    ns = undefined;
  }
  if (ns === undefined || ns === mountNamespaceOf(process.pid)) {
    closeSync(fd);
    return undefined;
  }
  return { fd, ns };
}

/**
 * Pins the namespace of a spawned namespace script. Only its PID is safe to
 * take it from: until Node has seen the child exit, the child is not reaped,
 * so its PID cannot belong to anyone else.
 */
export function pinChildNamespace(child: NamespaceChild | undefined): NamespacePin | undefined {
  if (child?.pid === undefined || child.exited()) return undefined;
  return pinMountNamespace(child.pid);
}

export function unpinMountNamespace(pin: NamespacePin | undefined): void {
  if (pin !== undefined) closeSync(pin.fd);
}

/** PIDs of all processes in the given mount namespace (never this process). */
export function pidsInMountNamespace(ns: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    if (mountNamespaceOf(pid) === ns) pids.push(pid);
  }
  return pids;
}

/** What teardownNamespaceInstance needs to know about one instance. */
export interface NamespaceInstance {
  /** The instance's temp dir: gets the `stop` file the script watches for, removed at the end. */
  readonly base: string;
  /** The namespace script; undefined if it was never spawned. */
  readonly child: NamespaceChild | undefined;
  /** The server daemon's PID (Postfix master, sendmail -bD), if known. */
  readonly daemonPid: number | undefined;
  /** Pin taken when the instance became ready; closed by the teardown. */
  readonly pin: NamespacePin | undefined;
  /** Port lock file to remove at the end. */
  readonly lockFile: string | undefined;
}

/**
 * Stops an instance run by spawnInPrivateNamespace: asks its script to stop (the
 * `stop` file) and waits up to 15 s, then SIGKILLs by PID whatever is left: the
 * script, the daemon, and every process in the instance's mount namespace; then
 * removes the temp dir and the port lock. Killing by namespace happens only
 * under a pin: the one taken at ready, or else one taken now from the (still
 * unreaped) script. Closes the pin.
 */
export async function teardownNamespaceInstance(t: NamespaceInstance): Promise<void> {
  const child = t.child;
  const pin = t.pin ?? pinChildNamespace(child);
  try {
    try {
      writeFileSync(join(t.base, 'stop'), '');
    } catch {
      // base already gone
    }
    const scriptAlive = (): boolean => child?.pid !== undefined && !child.exited() && alive(child.pid);
    const daemonAlive = (): boolean => t.daemonPid !== undefined && alive(t.daemonPid);
    await waitUntil(() => !scriptAlive() && !daemonAlive(), 15_000);
    const leftovers = new Set<number>();
    if (scriptAlive() && child?.pid !== undefined) leftovers.add(child.pid);
    if (daemonAlive() && t.daemonPid !== undefined) leftovers.add(t.daemonPid);
    if (pin !== undefined) for (const pid of pidsInMountNamespace(pin.ns)) leftovers.add(pid);
    for (const pid of leftovers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (leftovers.size > 0) await sleep(100);
    rmSync(t.base, { recursive: true, force: true });
    if (t.lockFile !== undefined) rmSync(t.lockFile, { force: true });
  } finally {
    unpinMountNamespace(pin);
  }
}
