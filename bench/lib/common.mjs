// Helpers shared by the load generators and the runner: percentiles,
// /proc readings of the daemon, client address populations.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second for /proc/PID/stat utime/stime (sysconf(_SC_CLK_TCK)). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields 3 onwards of /proc/PID/stat (fields[0] is field 3), or undefined when the process is gone. */
function statFields(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name (which may contain spaces) start after the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The live descendants of `pid` (children, their children, ...), from the ppid field of every /proc/N/stat. */
export function descendants(pid) {
  const childrenOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields === undefined) continue;
    const ppid = Number(fields[1]);
    if (!childrenOf.has(ppid)) childrenOf.set(ppid, []);
    childrenOf.get(ppid).push(Number(entry));
  }
  const found = [];
  for (let queue = [pid]; queue.length > 0; ) {
    for (const child of childrenOf.get(queue.shift()) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** When process `pid` started (field 22 of stat(5), clock ticks since boot), or undefined when it is gone: tells a process from a later one given its PID. */
export function processStart(pid) {
  return statFields(pid)?.[19];
}

/**
 * CPU seconds (user + system) used so far by process `pid` and every process
 * under it: a pre-forking server (postfwd2) answers from its children, which
 * also come and go. utime and stime are fields 14 and 15 of stat(5), cutime
 * and cstime (16, 17) hold the children already reaped. For a single process,
 * such as Levee's daemon, that is its own utime + stime.
 */
export function cpuSeconds(pid) {
  const ticks = (fields) => Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  const own = statFields(pid);
  if (own === undefined) throw new Error(`process ${pid} is gone`);
  let total = ticks(own);
  for (const child of descendants(pid)) {
    const fields = statFields(child);
    if (fields !== undefined) total += ticks(fields);
  }
  return total / CLK_TCK;
}

/** { rssKiB, hwmKiB } of process `pid` from /proc/PID/status (VmRSS, VmHWM). */
export function memoryKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** memoryKiB summed over `pid` and its descendants (a server with workers): the pages they share are counted in each. */
export function treeMemoryKiB(pid) {
  return [pid, ...descendants(pid)].map(memoryKiB).reduce((x, y) => ({ rssKiB: x.rssKiB + y.rssKiB, hwmKiB: x.hwmKiB + y.hwmKiB }));
}

/** A growable Float64Array of samples. */
export function createSamples(initial = 1 << 16) {
  let data = new Float64Array(initial);
  let length = 0;
  return {
    push(v) {
      if (length === data.length) {
        const next = new Float64Array(data.length * 2);
        next.set(data);
        data = next;
      }
      data[length++] = v;
    },
    get length() {
      return length;
    },
    sorted() {
      return data.slice(0, length).sort();
    },
  };
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function latencySummary(samples) {
  const s = samples.sorted();
  return { p50: percentile(s, 50), p99: percentile(s, 99), p999: percentile(s, 99.9), max: s.length ? s[s.length - 1] : NaN };
}

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/**
 * Client address number `i` (0 <= i < 2^24) of a population: 10.a.b.c.
 * 10/8 is exempt from none of the bench rules' limits.
 */
export function populationAddress(i) {
  const n = i + 1;
  return `10.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** A uniformly random public-looking IPv4 address (first octet 1..223, never 10 or 127). */
export function randomAddress() {
  let a;
  do a = 1 + Math.floor(Math.random() * 223);
  while (a === 10 || a === 127);
  const r = Math.floor(Math.random() * 0x1000000);
  return `${a}.${r >>> 16}.${(r >>> 8) & 255}.${r & 255}`;
}

/**
 * An address picker: `distinct` values drawn uniformly at random ("1k", "1M"
 * or a number), or each request a new one (`sequential`: 0, 1, 2, ...;
 * `random`: random addresses).
 */
export function addressPicker(distinct) {
  if (distinct === 'sequential') {
    let i = 0;
    return () => populationAddress(i++);
  }
  if (distinct === 'random') return randomAddress;
  const n = parseCount(distinct);
  if (!(n >= 1 && n <= 0xffffff)) throw new RangeError(`distinct ${distinct}: 1 .. 16M`);
  if (n === 1) return () => '10.0.0.1';
  return () => populationAddress(Math.floor(Math.random() * n));
}

/** "1k" -> 1000, "1M" -> 1000000, "250000" -> 250000. */
export function parseCount(text) {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(String(text));
  if (m === null) return NaN;
  const mult = m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1e3 : 1e6;
  return Math.round(Number(m[1]) * mult);
}

/** Senders over 200 domains, recipients in our domain: what the rules key on besides the client. */
export const SENDERS = Array.from({ length: 1000 }, (_, i) => `user${i}@sender${i % 200}.example.org`);
export const RECIPIENTS = Array.from({ length: 100 }, (_, i) => `user${i}@example.com`);
export const pick = (list) => list[Math.floor(Math.random() * list.length)];

/** Sleep that does not keep the process alive past its caller. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
