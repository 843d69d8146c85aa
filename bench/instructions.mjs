#!/usr/bin/env node
// Instructions per policy request and per milter message, counted by
// valgrind's callgrind on the server's main thread: a figure that, unlike
// requests/s on a shared 2-core host, does not move with what else the machine
// is doing, so a change to the hot path can be compared with the one before it
// (docs/benchmarks.md, "Instruction counts").
//
//   node bench/instructions.mjs [--only policy,milter] [--requests N] [--messages N] [--json]
//   node bench/instructions.mjs --check [--tolerance PERCENT]   (= pnpm bench:check)
//   node bench/instructions.mjs --write-baseline
//
// Writes bench/results/<date>-instructions.json (the figures, N, Node.js
// version) and prints a table (or, with --json, that JSON).
//
// For Levee (the benchmark's config and rules) and for the Node.js floor
// (bench/reference/dunno-server.mjs, noop-milter.mjs), each protocol: the
// server runs under callgrind twice, driven by the benchmark's generators with
// N and then 3N requests (messages); instructions per unit = (I(3N) - I(N)) / 2N,
// so start-up, warm-up and shutdown cancel out. Levee's own work = Levee - floor.
// Only the main thread is counted: the others are V8's compiler and GC helpers,
// whose share follows the JIT's timing, not the requests.
//
// Needs valgrind (Debian package valgrind; scripts/install-bench-deps.sh).
// Slow by design (valgrind runs Node ~50x slower): ~13 min with the defaults.
// Everything is bounded: each server by a SIGTERM then SIGKILL deadline, each
// load by its request count and a deadline.
//
// --check is the regression gate ("and keep it so"): it counts Levee only
// (not the floor: half the time) and compares its instructions per request and
// per message with bench/baseline-instructions.json. Exit 0 within the
// tolerance (default 8 %: repeat runs of one build differ by up to ~5 %),
// 1 if a protocol is slower than that, 2 if it cannot judge (a baseline of
// another Node.js version, architecture or N, packages not rebuilt since their
// sources changed, a protocol without a baseline figure, a bad option, no
// valgrind). All of these are found before anything is counted. Counted faster by
// more than the tolerance: say so, and keep the gain with --write-baseline.
// --write-baseline counts Levee and the floor and writes the baseline file
// (with the commit it was counted at); commit it with the change it measures.
// --baseline FILE reads (or writes) another file.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CLI, configText, daemonPorts, freePort, measuredCommit, printUsage, ROOT, runNode, waitForPort } from './lib/daemon-config.mjs';
import { baselineGaps, baselineMismatch, compareInstructions, DEFAULT_TOLERANCE_PERCENT, formatComparison, stalePackages } from './lib/instruction-gate.mjs';

/** Stop before counting: a wrong invocation should not cost a quarter of an hour of valgrind first. */
function cannotJudge(why) {
  process.stderr.write(`instructions: ${why}\n`);
  process.exit(2);
}
let opt;
try {
  ({ values: opt } = parseArgs({
    options: {
      only: { type: 'string', default: 'policy,milter' },
      requests: { type: 'string', default: '20000' },
      messages: { type: 'string', default: '2000' },
      json: { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      tolerance: { type: 'string', default: String(DEFAULT_TOLERANCE_PERCENT) },
      'write-baseline': { type: 'boolean', default: false },
      baseline: { type: 'string', default: path.join('bench', 'baseline-instructions.json') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (error) {
  cannotJudge(`${error.message} (--help lists the options; a negative number needs --option=VALUE)`);
}
if (opt.help) {
  printUsage(import.meta.url);
  process.exit(0);
}
const tolerance = Number(opt.tolerance);
if (!Number.isFinite(tolerance) || tolerance < 0) cannotJudge(`--tolerance ${JSON.stringify(opt.tolerance)}: a percentage >= 0 expected`);
/** The protocols to count, and N (requests or messages) for each. */
const parts = opt.only.split(',');
const countOf = (kind) => Number(kind === 'policy' ? opt.requests : opt.messages);
const unknownPart = parts.find((kind) => kind !== 'policy' && kind !== 'milter');
if (unknownPart !== undefined) cannotJudge(`--only: unknown part ${JSON.stringify(unknownPart)} (policy, milter)`);
for (const name of ['requests', 'messages']) {
  if (!/^[1-9][0-9]*$/.test(opt[name])) cannotJudge(`--${name} ${JSON.stringify(opt[name])}: a whole number > 0 expected`);
}
if (opt.check && opt['write-baseline']) cannotJudge('--check and --write-baseline: one at a time');
const baselineFile = path.resolve(ROOT, opt.baseline);
let baseline;
if (opt.check) {
  try {
    baseline = JSON.parse(readFileSync(baselineFile, 'utf8'));
  } catch (error) {
    cannotJudge(`cannot read the baseline ${path.relative(ROOT, baselineFile)}: ${error.message} (write one with --write-baseline at the commit to compare against)`);
  }
  const planned = parts.map((kind) => ({ kind, n: countOf(kind) }));
  const mismatch = baselineMismatch(baseline, { node: process.version, arch: process.arch }) ?? baselineGaps(baseline, planned);
  if (mismatch !== undefined) cannotJudge(`${path.relative(ROOT, baselineFile)} cannot judge this run: ${mismatch}. Count a baseline on this machine at the commit to compare against (--write-baseline), then --check the change.`);
}
if (opt.check || opt['write-baseline']) {
  const stale = stalePackages(ROOT);
  if (stale.length > 0) cannotJudge(`packages/${stale.join(', packages/')}: sources newer than dist/ (run pnpm build first; the counts would be of the previous build)`);
}
const VALGRIND = '/usr/bin/valgrind';
try {
  execFileSync(VALGRIND, ['--version'], { stdio: 'ignore' });
} catch {
  // Exit 2, not 1: for --check, 1 means "slower than the baseline".
  cannotJudge(`${VALGRIND} is missing: scripts/install-bench-deps.sh installs it`);
}

const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'levee-instructions-'));
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  rmSync(tmpDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => process.exit(130));

/** Main-thread instructions of `command` run under callgrind while `drive(port)` loads it. */
async function countInstructions(label, serverArgs, port, drive) {
  const out = path.join(tmpDir, `${label}.%p`);
  const child = spawn(VALGRIND, ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}`, process.execPath, ...serverArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await Promise.race([waitForPort(port, 120_000), exited.then((e) => Promise.reject(new Error(`${label} exited ${JSON.stringify(e)}: ${stderr}`)))]);
    await drive(port);
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
    running.delete(child);
  }
  // callgrind writes <out>-01 for the main thread (with --separate-threads), one file per thread.
  const file = path.join(tmpDir, `${label}.${child.pid}-01`);
  if (!existsSync(file)) throw new Error(`${label}: no callgrind output for the main thread (${stderr})`);
  const totals = /^totals: (\d+)/m.exec(readFileSync(file, 'utf8'));
  if (totals === null) throw new Error(`${label}: no totals line in ${file}`);
  return Number(totals[1]);
}

/** Run a load generator to completion; its JSON result (errors must be 0: a count over failed requests means nothing). */
async function load(script, args) {
  const result = await runNode(script, args, 30 * 60_000, running);
  if (result.errors !== 0) throw new Error(`${script}: ${result.errors} errors ${JSON.stringify(result.errorKinds)}`);
  return result;
}

const drivers = {
  policy: (count) => (port) =>
    load('policy-load.mjs', ['--port', String(port), '--connections', '8', '--distinct', '1M', '--warmup', '0', '--duration', '1800', '--max-requests', String(count)]),
  milter: (count) => (port) =>
    load('milter-load.mjs', ['--port', String(port), '--mode', 'persistent', '--connections', '8', '--distinct', '1M', '--warmup', '0', '--duration', '1800', '--max-messages', String(count)]),
};

/** The two servers of a protocol, each made per run: Levee with the benchmark's config, and the Node.js floor. */
function servers(kind) {
  const levee = async (label) => {
    const ports = await daemonPorts();
    const file = path.join(tmpDir, `${label}.yaml`);
    writeFileSync(file, configText({ ...ports, maxKeys: 1_000_000, logLevel: 'warn', milterRules: kind === 'milter' }));
    return { args: [CLI, 'run', '--config', file, '--log-level', 'warn'], port: kind === 'policy' ? ports.policyPort : ports.milterPort };
  };
  const floor = async () => {
    const port = await freePort();
    return { args: [path.join(ROOT, 'bench/reference', kind === 'policy' ? 'dunno-server.mjs' : 'noop-milter.mjs'), String(port)], port };
  };
  // The gate judges Levee as a whole; the floor is only counted for the full table.
  return opt.check
    ? [['levee', levee]]
    : [
        ['levee', levee],
        ['node-floor', floor],
      ];
}

const started = new Date();
const results = [];
for (const kind of parts) {
  const n = countOf(kind);
  const unit = kind === 'policy' ? 'request' : 'message';
  const row = { kind, unit, n };
  for (const [name, make] of servers(kind)) {
    const counts = [];
    for (const count of [n, 3 * n]) {
      const label = `${kind}-${name}-${count}`;
      const server = await make(label);
      process.stderr.write(`  ${label}: ${count} ${unit}s under callgrind\n`);
      counts.push(await countInstructions(label, server.args, server.port, drivers[kind](count)));
    }
    row[name] = Math.round((counts[1] - counts[0]) / (2 * n));
  }
  if (row['node-floor'] !== undefined) row.own = row.levee - row['node-floor'];
  results.push(row);
}

const report = { started: started.toISOString(), node: process.version, results };
const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*$/, '');
if (!opt.check) {
  // A check leaves nothing behind: its figures are in its table.
  const outFile = path.join(ROOT, 'bench/results', `${stamp}-instructions.json`);
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
  process.stderr.write(`results: ${path.relative(ROOT, outFile)}\n`);
}
if (opt['write-baseline']) {
  const commit = measuredCommit();
  writeFileSync(baselineFile, `${JSON.stringify({ ...report, arch: process.arch, commit }, null, 2)}\n`);
  process.stderr.write(`baseline: ${path.relative(ROOT, baselineFile)}\n`);
}
if (opt.check) {
  const comparison = compareInstructions(baseline, results, tolerance);
  process.stdout.write(formatComparison(comparison, tolerance));
  if (comparison.regressed) {
    process.stdout.write(`\nSlower than the baseline (${baseline.commit ?? 'unknown commit'}) by more than ${tolerance} %: profile the change (docs/benchmarks.md).\n`);
    process.exit(1);
  }
  if (comparison.incomplete) {
    process.stdout.write(`\nThe baseline has no figure for every protocol counted: write one with --write-baseline.\n`);
    process.exit(2);
  }
  if (comparison.rows.some((r) => r.verdict === 'faster')) process.stdout.write('\nFaster than the baseline beyond the tolerance: keep the gain with --write-baseline.\n');
} else if (opt.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
else {
  const f = (v) => v.toLocaleString('en-US');
  process.stdout.write(`Main-thread instructions per unit (callgrind; runs of N and 3N, the difference over 2N), ${process.version}\n\n`);
  process.stdout.write('| protocol | N | Levee | Node.js floor | Levee\'s own work |\n|---|---|---|---|---|\n');
  for (const r of results) process.stdout.write(`| ${r.kind} (per ${r.unit}) | ${f(r.n)} | ${f(r.levee)} | ${f(r['node-floor'])} | ${f(r.own)} |\n`);
}
