/**
 * logger - JSON log lines (pino) on stdout, where journald or a pipe takes them.
 *
 * One line per decision ({proto, stage, client, helo, sender, rcpt, action,
 * rule, ms}), read the way postmasters read smtpd's lines.
 *
 * The daemon's stdout is buffered by default (log.buffered): a write(2) per
 * decision line cost a quarter of the policy path's CPU (benchmarks.md).
 * Lines wait at most FLUSH_INTERVAL_MS, and every exit path of the CLI
 * flushes synchronously first, so a crash that Node sees still leaves its
 * last lines; only a kill -9 can lose up to a second of log.
 */

import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** How long a buffered line may wait before it is written. */
export const FLUSH_INTERVAL_MS = 1000;

export interface StdoutLogger {
  readonly log: Logger;
  /** Write what is buffered, synchronously (before process.exit). */
  flush(): void;
}

/** createStdoutLogger - the daemon's logger on stdout, buffered or written line by line. */
export function createStdoutLogger(level: LogLevel, buffered: boolean): StdoutLogger {
  const destination = pino.destination({ dest: 1, sync: !buffered, ...(buffered ? { minLength: 4096 } : {}) });
  const log = pino({ level, base: { service: 'levee' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  if (buffered) setInterval(() => destination.flush(), FLUSH_INTERVAL_MS).unref();
  return {
    log,
    flush() {
      try {
        destination.flushSync();
      } catch {
        // stdout gone (EPIPE) or nothing buffered: nothing more to save
      }
    },
  };
}

/** createLogger - a root logger at `level`, writing to `destination` (stdout by default, line by line). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'levee' }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination === undefined ? pino(options, pino.destination({ dest: 1, sync: true })) : pino(options, destination);
}
