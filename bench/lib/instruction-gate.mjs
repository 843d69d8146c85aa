// The regression gate of `bench/instructions.mjs --check`: this tree's
// main-thread instructions per policy request and per milter message against
// the ones written down in bench/baseline-instructions.json. Instruction
// counts, unlike requests/s on a shared host, repeat within a few per cent,
// so a change that makes the hot path dearer shows up here and not only as
// noise in a wall-clock run. Pure functions; instructions.mjs does the I/O.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Per cent above the baseline that still passes. Repeat runs of one build
 * differed by up to ~4-5 % (docs/benchmarks.md, "Instruction counts"), so a
 * smaller tolerance would fail unchanged code now and then.
 */
export const DEFAULT_TOLERANCE_PERCENT = 8;

/**
 * Why `baseline` cannot judge counts taken on this `runtime`, or undefined.
 * Node.js versions compile the same JavaScript to different code (and bring
 * their own streams and sockets), so their counts are not comparable.
 */
export function baselineMismatch(baseline, runtime) {
  if (baseline === null || typeof baseline !== 'object' || !Array.isArray(baseline.results)) {
    return 'it is not a baseline written by bench/instructions.mjs --write-baseline (no "results" list)';
  }
  if (baseline.node !== runtime.node) {
    return `it was counted with Node.js ${baseline.node} and this is ${runtime.node}; counts of different versions are not comparable`;
  }
  if (baseline.arch !== runtime.arch) return `it was counted on ${baseline.arch} and this is ${runtime.arch}`;
  return undefined;
}

/**
 * Why `baseline` has no figure to judge each `planned` count by ({ kind, n }:
 * the protocol and its N), or undefined. Per-unit counts depend on N (the
 * smaller it is, the more of the JIT's warm-up falls inside the difference),
 * so only counts of the same N are compared.
 */
export function baselineGaps(baseline, planned) {
  for (const { kind, n } of planned) {
    const row = baseline.results.find((b) => b.kind === kind);
    if (row === undefined) return `it has no ${kind} figure`;
    if (row.n !== n) return `its ${kind} figure was counted with N = ${row.n}, this run would count N = ${n}`;
  }
  return undefined;
}

/**
 * Each counted protocol against the baseline. `levee` (instructions per unit,
 * Levee as a whole) is what is judged: Levee's own work is a difference of two
 * counts and so twice as noisy. A row is `slower` beyond the tolerance,
 * `faster` beyond it the other way (a gain worth keeping: write a new
 * baseline), `ok` in between, `no-baseline` when the baseline has no figure.
 */
export function compareInstructions(baseline, results, tolerancePercent = DEFAULT_TOLERANCE_PERCENT) {
  const rows = results.map((r) => {
    const before = baseline.results.find((b) => b.kind === r.kind)?.levee;
    if (typeof before !== 'number' || before <= 0) return { kind: r.kind, unit: r.unit, baseline: undefined, now: r.levee, changePercent: undefined, verdict: 'no-baseline' };
    const changePercent = ((r.levee - before) / before) * 100;
    const verdict = changePercent > tolerancePercent ? 'slower' : changePercent < -tolerancePercent ? 'faster' : 'ok';
    return { kind: r.kind, unit: r.unit, baseline: before, now: r.levee, changePercent, verdict };
  });
  return { rows, regressed: rows.some((r) => r.verdict === 'slower'), incomplete: rows.some((r) => r.verdict === 'no-baseline') };
}

/** The comparison as a Markdown table, one line per protocol. */
export function formatComparison(comparison, tolerancePercent) {
  const f = (v) => (v === undefined ? '-' : v.toLocaleString('en-US'));
  const pct = (v) => (v === undefined ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(1)} %`);
  const lines = [
    `Levee's main-thread instructions per unit against the baseline (tolerance ${tolerancePercent} %)`,
    '',
    '| protocol | baseline | now | change | verdict |',
    '|---|---|---|---|---|',
  ];
  for (const r of comparison.rows) lines.push(`| ${r.kind} (per ${r.unit}) | ${f(r.baseline)} | ${f(r.now)} | ${pct(r.changePercent)} | ${r.verdict} |`);
  return `${lines.join('\n')}\n`;
}

/** The newest modification time (ms) of the files under `dir` whose names end in `suffix`, or 0. */
function newestUnder(dir, suffix) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(suffix)) continue;
    newest = Math.max(newest, statSync(path.join(entry.parentPath ?? entry.path, entry.name)).mtimeMs);
  }
  return newest;
}

/**
 * The packages whose TypeScript sources changed after their last build
 * (dist/.tsbuildinfo): counting them would measure the previous code.
 */
export function stalePackages(root) {
  const stale = [];
  for (const name of readdirSync(path.join(root, 'packages'))) {
    const dir = path.join(root, 'packages', name);
    let built = 0;
    try {
      built = statSync(path.join(dir, 'dist/.tsbuildinfo')).mtimeMs;
    } catch {
      // Never built: stale.
    }
    if (newestUnder(path.join(dir, 'src'), '.ts') > built) stale.push(name);
  }
  return stale;
}
