/**
 * notifier - tell the postmaster that a customer was warned or held
 * (notify.command and/or notify.mail), at most notify.max_per_hour times an
 * hour; beyond that the notices are only logged.
 *
 * The command is an argv run without a shell: the notice on its stdin, the
 * facts in LEVEE_* variables, killed after 10 s. The mail goes by SMTP to the
 * local MTA (nodemailer, plain SMTP on loopback): the daemon runs unprivileged
 * with NoNewPrivileges, where sendmail(1)'s setgid postdrop would fail.
 * Nothing here ever blocks or fails a decision: it runs after the answer and
 * reports its own failures to the log and a metric.
 */

import { spawn } from 'node:child_process';
import type { NotifySettings } from '@levee/rules';
import type { Logger } from './logger.js';

export interface Notice {
  readonly event: 'warned' | 'held';
  readonly rule: string;
  /** The counter key without the rule prefix: the user name or the address. */
  readonly subject: string;
  readonly count: number;
  readonly limit: number;
  readonly windowMs: number;
  /** For a warning: when it turns into a hold if the limit is still exceeded; for a hold: when it ends. */
  readonly until: number;
  readonly at: number;
}

export type NotifyChannel = 'command' | 'mail';
export type NotifyOutcome = 'sent' | 'failed' | 'suppressed';

export interface Notifier {
  notify(notice: Notice): void;
  /** Resolves when every notice under way has finished (for shutdown and tests). */
  idle(): Promise<void>;
}

const COMMAND_TIMEOUT_MS = 10_000;
const HOUR_MS = 3_600_000;

/** The notice as a short text: what happened, to whom, what to do. */
export function noticeText(n: Notice): { subject: string; body: string } {
  const rate = `${n.count} in ${Math.round(n.windowMs / 1000)}s (limit ${n.limit}), rule ${n.rule}`;
  if (n.event === 'warned') {
    return {
      subject: `[levee] ${n.subject} is over its limit (warning)`,
      body: [
        `${n.subject} went over its limit: ${rate}.`,
        `Its mail still goes through. If it is still over the limit after ${new Date(n.until).toISOString()},`,
        'Levee holds its mail (quarantine) for the cool-down.',
        '',
        'Check the account or host for a compromise (a worm, a stolen password).',
        '',
      ].join('\n'),
    };
  }
  return {
    subject: `[levee] ${n.subject} is held until ${new Date(n.until).toISOString()}`,
    body: [
      `${n.subject} stayed over its limit after its grace period: ${rate}.`,
      `Its mail is held (quarantined) until ${new Date(n.until).toISOString()}; then the hold expires by itself.`,
      '',
      'List held mail:       levee held',
      'Release one message:  levee release ID',
      'Drop one message:     levee drop ID',
      `End the hold now:     levee release --customer '${n.rule}|${n.subject}'`,
      '',
    ].join('\n'),
  };
}

export function createNotifier(options: {
  readonly settings: () => NotifySettings;
  readonly log: Logger;
  readonly now: () => number;
  readonly counted?: (channel: NotifyChannel, outcome: NotifyOutcome) => void;
}): Notifier {
  const { log } = options;
  const sentAt: number[] = [];
  const underWay = new Set<Promise<void>>();
  const track = (p: Promise<void>): void => {
    underWay.add(p);
    void p.finally(() => underWay.delete(p));
  };
  const count = (channel: NotifyChannel, outcome: NotifyOutcome): void => options.counted?.(channel, outcome);

  const runCommand = (argv: readonly string[], n: Notice, text: { subject: string; body: string }): Promise<void> =>
    new Promise((resolve) => {
      const [program, ...args] = argv as [string, ...string[]];
      const child = spawn(program, args, {
        stdio: ['pipe', 'ignore', 'pipe'],
        env: {
          ...process.env,
          LEVEE_EVENT: n.event,
          LEVEE_RULE: n.rule,
          LEVEE_SUBJECT: n.subject,
          LEVEE_COUNT: String(n.count),
          LEVEE_LIMIT: String(n.limit),
          LEVEE_UNTIL: new Date(n.until).toISOString(),
        },
      });
      // Our own deadline rather than spawn's `timeout` option: that timer is only
      // cleared on 'exit', which a command that cannot be run (ENOENT) never emits,
      // so it held the event loop for COMMAND_TIMEOUT_MS after the failure.
      const deadline = setTimeout(() => child.kill('SIGTERM'), COMMAND_TIMEOUT_MS);
      // Such a command emits 'error' and then 'close' (code -2): count and log it once.
      let finished = false;
      const finish = (outcome: NotifyOutcome, logLine?: () => void): void => {
        if (finished) return;
        finished = true;
        clearTimeout(deadline);
        count('command', outcome);
        logLine?.();
        resolve();
      };
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < 500) stderr += d.toString('utf8');
      });
      child.on('error', (error) => finish('failed', () => log.error({ command: program, err: error.message }, 'notify.command could not be run')));
      child.on('close', (code, signal) => {
        if (code === 0) finish('sent');
        else finish('failed', () => log.error({ command: program, code, signal, stderr: stderr.trim().slice(0, 500) }, 'notify.command failed'));
      });
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(`Subject: ${text.subject}\n\n${text.body}`);
    });

  const sendMail = async (mail: NonNullable<NotifySettings['mail']>, text: { subject: string; body: string }): Promise<void> => {
    try {
      const { createTransport } = await import('nodemailer');
      const transport = createTransport({
        host: mail.smtp.host,
        port: mail.smtp.port,
        secure: false,
        ignoreTLS: true,
        connectionTimeout: COMMAND_TIMEOUT_MS,
        greetingTimeout: COMMAND_TIMEOUT_MS,
        socketTimeout: COMMAND_TIMEOUT_MS,
      });
      await transport.sendMail({ from: mail.from, to: mail.to, subject: text.subject, text: text.body, headers: { 'Auto-Submitted': 'auto-generated' } });
      transport.close();
      count('mail', 'sent');
    } catch (error) {
      count('mail', 'failed');
      log.error({ smtp: mail.smtp.text, to: mail.to, err: (error as Error).message }, 'notify.mail could not be sent');
    }
  };

  return {
    notify(n) {
      const settings = options.settings();
      if (settings.command === undefined && settings.mail === undefined) return;
      const now = options.now();
      while (sentAt.length > 0 && (sentAt[0] ?? 0) <= now - HOUR_MS) sentAt.shift();
      if (sentAt.length >= settings.maxPerHour) {
        if (settings.command !== undefined) count('command', 'suppressed');
        if (settings.mail !== undefined) count('mail', 'suppressed');
        log.warn({ event: n.event, rule: n.rule, maxPerHour: settings.maxPerHour }, 'notice not sent: notify.max_per_hour reached');
        return;
      }
      sentAt.push(now);
      const text = noticeText(n);
      if (settings.command !== undefined) track(runCommand(settings.command, n, text));
      if (settings.mail !== undefined) track(sendMail(settings.mail, text));
    },
    async idle() {
      while (underWay.size > 0) await Promise.all([...underWay]);
    },
  };
}
