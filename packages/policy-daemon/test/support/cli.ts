/**
 * Test support: run the compiled `levee` CLI as a child process without
 * blocking this process (whose in-process daemon may have to answer it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(__dirname, '..', '..', 'dist', 'cli.js');

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** runCli - `node dist/cli.js ...args`, killed after 15 s. */
export function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** A long-running `levee run` in a child process, its stdout and stderr collected. */
export interface RunningCli {
  readonly child: ChildProcess;
  /** Everything written so far. */
  output(): string;
  /** The JSON log lines written so far. */
  logs(): Record<string, unknown>[];
  /** Waits (at most timeoutMs) until `text` occurs at least `times` times in the output; throws otherwise. */
  waitFor(text: string, times?: number, timeoutMs?: number): Promise<void>;
  /** SIGTERM by PID; SIGKILL after 10 s. Resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * startCli - spawn `command args` (by default `node dist/cli.js args`) and
 * resolve once it logs "levee started"; rejects if it exits or is not
 * started within 10 s (and kills it).
 */
export function startCli(args: readonly string[], options: { command?: string; uid?: number; gid?: number; env?: Record<string, string> } = {}): Promise<RunningCli> {
  const command = options.command ?? process.execPath;
  const argv = options.command === undefined ? [CLI, ...args] : [...args];
  const child = spawn(command, argv, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.uid === undefined ? {} : { uid: options.uid }),
    ...(options.gid === undefined ? {} : { gid: options.gid }),
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const occurrences = (text: string): number => output.split(text).length - 1;
  const running: RunningCli = {
    child,
    output: () => output,
    logs: () =>
      output
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    async waitFor(text, times = 1, timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs;
      while (occurrences(text) < times && child.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
      if (occurrences(text) < times) throw new Error(`"${text}" did not appear ${times} time(s):\n${output}`);
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  return new Promise((resolve, reject) => {
    const failed = (why: string): void => {
      clearInterval(poll);
      child.kill('SIGKILL');
      reject(new Error(`levee ${why}:\n${output}`));
    };
    const started = Date.now();
    const poll = setInterval(() => {
      if (output.includes('"levee started"')) {
        clearInterval(poll);
        resolve(running);
      } else if (child.exitCode !== null || child.signalCode !== null) failed('exited');
      else if (Date.now() - started > 10_000) failed('did not start within 10 s');
    }, 25);
  });
}
