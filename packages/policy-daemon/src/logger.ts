/**
 * logger - JSON log lines (pino) on stdout, where journald or a pipe takes them.
 *
 * One line per decision ({proto, stage, client, helo, sender, rcpt, action,
 * rule, ms}), read the way postmasters read smtpd's lines. Synchronous writes:
 * a crash must not eat the last lines that explain it.
 */

import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** createLogger - a root logger at `level`, writing to `destination` (stdout by default). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'levee' }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination === undefined ? pino(options, pino.destination({ dest: 1, sync: true })) : pino(options, destination);
}
