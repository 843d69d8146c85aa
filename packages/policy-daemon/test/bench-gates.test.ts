// The regression gates of the benchmarks (`pnpm bench:check`): the verdicts of
// bench/lib/instruction-gate.mjs (bench/instructions.mjs --check) and of the
// memory target (bench/run.mjs --check), and the refusals that stop the
// instruction gate before a quarter of an hour of valgrind (a baseline it cannot
// judge by, a bad option). The counting and measuring are the benchmarks', not a test's.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');
const GATE = join(ROOT, 'bench/lib/instruction-gate.mjs');
const REPORT = join(ROOT, 'bench/lib/report.mjs');
const DAEMON_CONFIG = join(ROOT, 'bench/lib/daemon-config.mjs');

/**
 * Run `body` in a fresh Node.js as an ES module with `module` (a bench/lib file) imported
 * as `name`; what it writes to stdout, parsed as JSON. The bench code is ESM (.mjs), which
 * this CommonJS test cannot import itself.
 */
function inModule(module: string, name: string, body: string): unknown {
  const source = `import * as ${name} from ${JSON.stringify(module)};\n${body}`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', source], { encoding: 'utf8', timeout: 30_000 });
  if (run.status !== 0) throw new Error(`node exited ${run.status}: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** `body` with bench/lib/instruction-gate.mjs as `gate`. */
const inGate = (body: string): unknown => inModule(GATE, 'gate', body);

const baseline = {
  node: process.version,
  arch: process.arch,
  commit: 'abc',
  results: [
    { kind: 'policy', unit: 'request', n: 20_000, levee: 100_000 },
    { kind: 'milter', unit: 'message', n: 2_000, levee: 1_000_000 },
  ],
};

interface Comparison {
  rows: { kind: string; verdict: string; changePercent?: number }[];
  regressed: boolean;
  incomplete: boolean;
}

function compare(results: { kind: string; unit: string; levee: number }[], tolerance: number): Comparison {
  const call = `gate.compareInstructions(${JSON.stringify(baseline)}, ${JSON.stringify(results)}, ${tolerance})`;
  return inGate(`process.stdout.write(JSON.stringify(${call}));`) as Comparison;
}

describe('bench instruction gate: verdicts', () => {
  it('passes within the tolerance, either way', () => {
    const c = compare(
      [
        { kind: 'policy', unit: 'request', levee: 107_900 },
        { kind: 'milter', unit: 'message', levee: 930_000 },
      ],
      8,
    );
    expect(c.rows.map((r) => r.verdict)).toEqual(['ok', 'ok']);
    expect(c.rows[0]?.changePercent).toBeCloseTo(7.9, 5);
    expect(c.regressed).toBe(false);
    expect(c.incomplete).toBe(false);
  });

  it('fails a protocol counted slower than the tolerance allows, and only that one', () => {
    const c = compare(
      [
        { kind: 'policy', unit: 'request', levee: 100_500 },
        { kind: 'milter', unit: 'message', levee: 1_081_000 },
      ],
      8,
    );
    expect(c.rows.map((r) => [r.kind, r.verdict])).toEqual([
      ['policy', 'ok'],
      ['milter', 'slower'],
    ]);
    expect(c.regressed).toBe(true);
  });

  it('tells a gain beyond the tolerance apart (to be kept with a new baseline), and it does not fail', () => {
    const c = compare([{ kind: 'policy', unit: 'request', levee: 80_000 }], 8);
    expect(c.rows[0]?.verdict).toBe('faster');
    expect(c.regressed).toBe(false);
  });

  it('the tolerance is the caller’s: 0 % fails any increase', () => {
    expect(compare([{ kind: 'policy', unit: 'request', levee: 100_001 }], 0).regressed).toBe(true);
    expect(compare([{ kind: 'policy', unit: 'request', levee: 100_000 }], 0).regressed).toBe(false);
  });

  it('a protocol the baseline has no figure for cannot be judged', () => {
    const c = compare([{ kind: 'other', unit: 'x', levee: 1 }], 8);
    expect(c.rows[0]?.verdict).toBe('no-baseline');
    expect(c.incomplete).toBe(true);
    expect(c.regressed).toBe(false);
  });

  it('a baseline of another Node.js version or architecture, or no baseline at all, cannot judge', () => {
    const why = (b: unknown): unknown =>
      inGate(`process.stdout.write(JSON.stringify(gate.baselineMismatch(${JSON.stringify(b)}, { node: ${JSON.stringify(process.version)}, arch: ${JSON.stringify(process.arch)} }) ?? null));`);
    expect(why(baseline)).toBeNull();
    expect(why({ ...baseline, node: 'v18.0.0' })).toMatch(/Node\.js v18\.0\.0 .* not comparable/);
    expect(why({ ...baseline, arch: 'mips' })).toMatch(/counted on mips/);
    expect(why({ node: process.version })).toMatch(/no "results" list/);
    expect(why(null)).toMatch(/no "results" list/);
  });
});

describe('bench instruction gate: what the baseline can judge', () => {
  const gaps = (planned: { kind: string; n: number }[]): unknown =>
    inGate(`process.stdout.write(JSON.stringify(gate.baselineGaps(${JSON.stringify(baseline)}, ${JSON.stringify(planned)}) ?? null));`);

  it('counts of the N the baseline was counted with, for protocols it has', () => {
    expect(gaps([{ kind: 'policy', n: 20_000 }, { kind: 'milter', n: 2_000 }])).toBeNull();
    expect(gaps([{ kind: 'milter', n: 2_000 }])).toBeNull();
  });

  it('not another N (warm-up would weigh differently), nor a protocol it lacks', () => {
    expect(gaps([{ kind: 'policy', n: 5_000 }])).toBe('its policy figure was counted with N = 20000, this run would count N = 5000');
    expect(gaps([{ kind: 'other', n: 1 }])).toBe('it has no other figure');
  });
});

describe('bench instruction gate: stale builds', () => {
  it('names the packages whose sources changed after their last build, and only those', () => {
    const root = mkdtempSync(join(tmpdir(), 'levee-gate-stale-'));
    try {
      const old = new Date('2026-01-01T00:00:00Z');
      const later = new Date('2026-01-02T00:00:00Z');
      for (const [name, sourceTime, builtTime] of [
        ['fresh', old, later],
        ['edited', later, old],
        ['never-built', old, undefined],
      ] as const) {
        mkdirSync(join(root, 'packages', name, 'src', 'deep'), { recursive: true });
        const source = join(root, 'packages', name, 'src', 'deep', 'x.ts');
        writeFileSync(source, '');
        utimesSync(source, sourceTime, sourceTime);
        if (builtTime !== undefined) {
          mkdirSync(join(root, 'packages', name, 'dist'));
          const info = join(root, 'packages', name, 'dist', '.tsbuildinfo');
          writeFileSync(info, '');
          utimesSync(info, builtTime, builtTime);
        }
      }
      const stale = inGate(`process.stdout.write(JSON.stringify(gate.stalePackages(${JSON.stringify(root)}).sort()));`);
      expect(stale).toEqual(['edited', 'never-built']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('bench/instructions.mjs --check: refusals before counting', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'levee-gate-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The gate's exit status and stderr, with a deadline far below a counting run's (which would mean it did not refuse). */
  function check(args: string[]): { status: number | null; stderr: string } {
    const run = spawnSync(process.execPath, [join(ROOT, 'bench/instructions.mjs'), '--check', ...args], { encoding: 'utf8', timeout: 30_000 });
    return { status: run.status, stderr: run.stderr };
  }

  it('refuses a baseline counted with another Node.js version, naming both', () => {
    const file = join(dir, 'old-node.json');
    writeFileSync(file, JSON.stringify({ ...baseline, node: 'v18.20.0' }));
    const r = check(['--baseline', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`Node.js v18.20.0 and this is ${process.version}`);
    expect(r.stderr).toContain('--write-baseline');
  });

  it('refuses a run of another N than the baseline was counted with', () => {
    const file = join(dir, 'baseline.json');
    writeFileSync(file, JSON.stringify(baseline));
    const r = check(['--baseline', file, '--only', 'milter', '--messages', '500']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('its milter figure was counted with N = 2000, this run would count N = 500');
  });

  it('refuses a baseline file that is missing or not JSON, naming it', () => {
    const missing = check(['--baseline', join(dir, 'none.json')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/cannot read the baseline .*none\.json/);
    const file = join(dir, 'broken.json');
    writeFileSync(file, '{ "node": ');
    const broken = check(['--baseline', file]);
    expect(broken.status).toBe(2);
    expect(broken.stderr).toMatch(/cannot read the baseline .*broken\.json/);
  });

  it('refuses a tolerance that is not a percentage, and an option it does not know', () => {
    for (const bad of ['x', '-1']) {
      const r = check([`--tolerance=${bad}`]);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`--tolerance "${bad}"`);
    }
    const part = check(['--only', 'policy,smtp']);
    expect(part.status).toBe(2);
    expect(part.stderr).toContain('--only: unknown part "smtp"');
    const unknown = check(['--tolerence', '5']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--tolerence'");
  });
});

describe('bench/run.mjs --check: the memory target', () => {
  /** targetVerdicts' memory verdict and targetGate's exit status for a run with these memory figures. */
  function judge(oneMillion: { keys: number; peakRssMiB: number }, flood: { keys: number; peakRssMiB: number }): { met: boolean | undefined; status: number } {
    const results = {
      scenarios: [],
      memory: [
        { distinct: 'sequential', maxKeys: 1_060_000, finalRssMiB: oneMillion.peakRssMiB, ...oneMillion },
        { distinct: 'random', maxKeys: 250_000, finalRssMiB: 200, ...flood },
      ],
    };
    const out = inModule(
      REPORT,
      'report',
      `const verdicts = report.targetVerdicts(${JSON.stringify(results)});
process.stdout.write(JSON.stringify({ met: verdicts[0]?.met ?? null, status: report.targetGate(verdicts, () => {}) }));`,
    ) as { met: boolean | null; status: number };
    return { met: out.met ?? undefined, status: out.status };
  }

  it('met: 1M keys under 300 MB, the flood held at max_keys under 512 MiB (the 2026-12-02 figures)', () => {
    expect(judge({ keys: 1_004_107, peakRssMiB: 271 }, { keys: 250_000, peakRssMiB: 379 })).toEqual({ met: true, status: 0 });
  });

  it('missed: 1M keys at 290 MiB (304 MB: the target is in MB)', () => {
    expect(judge({ keys: 1_004_107, peakRssMiB: 290 }, { keys: 250_000, peakRssMiB: 379 })).toEqual({ met: false, status: 1 });
  });

  it('missed: a flood that grows past the ceiling (a short string leaked per new key measured 659 MiB), or keeps more keys than max_keys', () => {
    expect(judge({ keys: 1_004_107, peakRssMiB: 271 }, { keys: 250_000, peakRssMiB: 659 })).toEqual({ met: false, status: 1 });
    expect(judge({ keys: 1_004_107, peakRssMiB: 271 }, { keys: 250_001, peakRssMiB: 379 })).toEqual({ met: false, status: 1 });
  });

  it('not measured (exit 2): a run with fewer than 1M keys, such as --quick', () => {
    expect(judge({ keys: 100_000, peakRssMiB: 120 }, { keys: 200_000, peakRssMiB: 200 })).toEqual({ met: undefined, status: 2 });
  });
});

describe('bench/lib: free ports, the commit measured, the results header', () => {
  /** A run that measured no scenario (memory only), as results files hold it. */
  const results = {
    date: '2026-12-02T10:45:49.467Z',
    machine: { nproc: 2, cpuModel: 'Intel(R) Xeon(R) Processor', memTotalMiB: 24_105, node: 'v20.20.2', kernel: '6.18' },
    settings: { runs: 3, duration: 10, warmup: 2 },
    scenarios: [] as object[],
    memory: [],
  };
  /** The first line renderResults writes for `run`: the header. */
  const header = (run: object): string =>
    inModule(REPORT, 'report', `process.stdout.write(JSON.stringify(report.renderResults(${JSON.stringify(run)}, 'x.json').split('\\n')[0]));`) as string;

  it('freePorts gives distinct loopback ports that are free, and daemonPorts one for each listener', () => {
    const ports = inModule(
      DAEMON_CONFIG,
      'config',
      `const many = await config.freePorts(16);
const net = await import('node:net');
for (const port of many) await new Promise((resolve, reject) => { const s = net.createServer(); s.once('error', reject); s.listen(port, '127.0.0.1', () => s.close(resolve)); });
process.stdout.write(JSON.stringify({ many, daemon: await config.daemonPorts() }));`,
    ) as { many: number[]; daemon: Record<string, number> };
    expect(new Set(ports.many).size).toBe(16);
    expect(Object.keys(ports.daemon).sort()).toEqual(['metricsPort', 'milterPort', 'policyPort']);
    expect(new Set(Object.values(ports.daemon)).size).toBe(3);
  });

  it('measuredCommit names the checked-out commit', () => {
    const head = spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
    expect(head).toMatch(/^[0-9a-f]{40}$/);
    const commit = inModule(DAEMON_CONFIG, 'config', 'process.stdout.write(JSON.stringify(config.measuredCommit()));') as string;
    expect(commit.slice(0, 40)).toBe(head);
  });

  it('the results header says the commit when the run recorded one, and says nothing of it otherwise (older files)', () => {
    expect(header({ ...results, commit: 'a926a7d' })).toContain('(2026-12-02T10:45:49.467Z, commit a926a7d): 2 CPUs (Intel(R) Xeon(R) Processor)');
    expect(header(results)).toContain('(2026-12-02T10:45:49.467Z): 2 CPUs');
    expect(header(results)).not.toContain('commit');
  });

  it('the header gives runs and durations only for a run that measured scenarios (a memory-only --check run has none)', () => {
    expect(header(results)).not.toContain('run(s)');
    const median = { throughput: 1000, p50: 0.1, p99: 0.4, p999: 1, errors: 0, cpuUsPerUnit: 20, daemonCpuShare: 1, peakRssMiB: 200 };
    const scenario = { name: 'policy-c8-d1M', kind: 'policy', connections: 8, distinct: '1M', runs: 3, median, perRun: [] };
    expect(header({ ...results, scenarios: [scenario] })).toContain('; median of 3 run(s) of 10 s after 2 s of warm-up;');
  });
});
