/**
 * Test support: the compiled `levee run` as a separate process that a test can
 * SIGKILL and start again on the same ports.
 *
 * The daemon runs under `timeout -s KILL <maxLifetimeSec>`, so it stops by
 * itself even if the test process dies without cleaning up. kill9() sends
 * SIGKILL to the node process itself (found as the only child of timeout, by
 * PID, never by name); `timeout` then exits on its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { CLI } from './cli.js';
import { alive, waitUntil } from './process-tools.js';

const TIMEOUT = '/usr/bin/timeout';

export interface LeveeProcess {
  /** PID of the node process running Levee. */
  readonly pid: number;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Parsed JSON log lines written so far (lines that are not JSON are skipped). */
  logLines(): Record<string, unknown>[];
  /** SIGKILL the daemon by PID and wait until it is gone (bounded). */
  kill9(): Promise<void>;
  /** SIGTERM, then SIGKILL after graceMs; idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** The PIDs listed as children of `pid` (Linux /proc). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** startLevee - `node dist/cli.js run --config file`, resolved once it logged "levee started". */
export async function startLevee(configFile: string, options: { readonly maxLifetimeSec?: number; readonly startTimeoutMs?: number } = {}): Promise<LeveeProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "tsc -b" first`);
  const lifetime = String(Math.max(10, Math.floor(options.maxLifetimeSec ?? 300)));
  const wrapper: ChildProcess = spawn(TIMEOUT, ['-s', 'KILL', lifetime, process.execPath, CLI, 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  wrapper.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  wrapper.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  wrapper.once('exit', () => (exited = true));
  const wrapperPid = wrapper.pid;
  if (wrapperPid === undefined) throw new Error('could not spawn levee');

  const started = await waitUntil(() => out.includes('"levee started"') || exited, options.startTimeoutMs ?? 15_000);
  const pid = childPids(wrapperPid)[0];
  if (!started || exited || pid === undefined) {
    signal(pid ?? wrapperPid, 'SIGKILL');
    throw new Error(`levee did not start:\n${out}`);
  }

  const gone = async (): Promise<void> => {
    await waitUntil(() => !alive(pid) && exited, 10_000);
  };
  let stopping: Promise<void> | undefined;
  return {
    pid,
    output: () => out,
    logLines: () =>
      out.split('\n').flatMap((line) => {
        if (!line.startsWith('{')) return [];
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    async kill9() {
      signal(pid, 'SIGKILL');
      await gone();
    },
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (!alive(pid)) return;
        signal(pid, 'SIGTERM');
        if (!(await waitUntil(() => !alive(pid), graceMs))) signal(pid, 'SIGKILL');
        await gone();
      })();
      return stopping;
    },
  };
}
