/**
 * program - the `levee` command line (commander).
 *
 *   levee run [--config FILE]      serve (embedded defaults without --config)
 *   levee check-config FILE        validate; errors as file:line:col, exit 78
 *   levee explain [...]            which rules a request meets, and the answer
 *   levee replay FILE [...]        what a candidate config would do to captured requests
 *   levee status | top | blocks    ask the running daemon (admin endpoint)
 *   levee block | unblock ADDRESS  change its block list (admin token)
 *   levee held | release | drop    held mail and contained customers (held-commands.ts)
 *   levee report [ADDRESS] [--arf] evidence for an offender's abuse contact
 *   levee default-config           print the embedded default configuration
 *
 * Signals while running: SIGHUP re-reads the config file (a bad file is
 * reported and the running config stays), SIGTERM/SIGINT drain and exit.
 */

import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { PolicyRequest } from '@levee/milter-proto';
import { DEFAULT_CONFIG_YAML } from '@levee/rules';
import { adminCall, adminTarget, formatStatus, formatTop } from './admin-client.js';
import { readConfigFile } from './config-file.js';
import { formatArf, formatEvidence, type Evidence } from './evidence.js';
import { addHeldCommands } from './held-commands.js';
import { startDaemon } from './daemon.js';
import { createOfflineRunner, formatExplanation, overlay, formatReplaySummary, parsePolicyRequests, replayRequests, requestFromAssignments } from './offline-run.js';
import { createStdoutLogger, LOG_LEVELS, type LogLevel } from './logger.js';

import { EX_CONFIG, EX_SOFTWARE, EX_USAGE } from './exit-codes.js';

/** Exit codes follow sysexits(3) where one fits: 78 = EX_CONFIG. */
export { EX_CONFIG, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE } from './exit-codes.js';

export function buildProgram(): Command {
  const program = new Command('levee')
    .description('Levee: a mail-defence daemon for Postfix (check_policy_service, smtpd_milters) and sendmail (INPUT_MAIL_FILTER).')
    .showHelpAfterError('(run "levee --help" for usage)')
    .addHelpText(
      'after',
      `
"levee <command> --help" describes each command. Guides: docs/operations.md,
docs/troubleshooting.md; every config option: docs/configuration-reference.md.`,
    );

  program
    .command('run')
    .description('run the daemon in the foreground (logs JSON lines to stdout)')
    .option('-c, --config <file>', 'configuration file (YAML); without it the embedded defaults are used')
    .addOption(new Option('--log-level <level>', 'override log.level from the config').choices(LOG_LEVELS))
    .addHelpText(
      'after',
      `
Defaults (no --config): policy on inet:127.0.0.1:10031, milter on inet:127.0.0.1:8891,
metrics on 127.0.0.1:9469, admin on 127.0.0.1:9470, in-memory counters, the built-in
rule set ("levee default-config" prints it).

Signals: SIGHUP reloads the config file (a bad file keeps the running config),
SIGTERM or SIGINT stop accepting, answer what is in flight, close idle connections
and exit 0 (open milter sessions get a 5 s grace period).

Exit codes: 0 after SIGTERM or SIGINT, 78 for a bad config or a listener that cannot
be opened, 70 for an unexpected internal error.`,
    )
    .action(async (opts: { config?: string; logLevel?: LogLevel }) => {
      await runDaemon(opts.config, opts.logLevel);
    });

  program
    .command('check-config')
    .description('validate a configuration file (with the recipients and BATV secret files it names); print errors as file:line:col and exit 78 if any (warnings: exit 0)')
    .argument('<file>', 'configuration file (YAML)')
    .action(async (file: string) => {
      const loaded = await readConfigFile(file);
      if (!loaded.ok) {
        for (const line of loaded.errors) process.stderr.write(`${line}\n`);
        process.exitCode = EX_CONFIG;
        return;
      }
      for (const line of loaded.warnings) process.stderr.write(`${line}\n`);
      process.stdout.write(`${file}: OK, ${loaded.config.rules.length} rules${loaded.warnings.length > 0 ? `, ${loaded.warnings.length} warnings` : ''}\n`);
    });

  program
    .command('explain')
    .description('show which rules a policy request meets and what Levee would answer (counters start empty)')
    .option('-c, --config <file>', 'configuration file; without it the embedded defaults')
    .option('-f, --file <file>', 'request(s) in Postfix policy format (name=value lines, blank line after each); "-" reads stdin')
    .option('-s, --set <name=value>', 'a request attribute (repeatable), e.g. --set client_address=192.0.2.7', collect)
    .option('--json', 'print the facts, trail and verdict as JSON')
    .addHelpText(
      'after',
      `
Without --file the request is built from --set (request=smtpd_access_policy and
protocol_state=RCPT are filled in). Several requests in a file are decided in order
against the same counters, one second apart, so you can watch a limit trip.

Example:
  levee explain -c levee.yaml --set client_address=192.0.2.7 --set sender= --set recipient=bob@example.org`,
    )
    .action(async (opts: { config?: string; file?: string; set?: string[]; json?: boolean }) => {
      const loaded = await readConfigFile(opts.config);
      if (!loaded.ok) return configFailed(loaded.errors);
      const requests = await readRequests(opts.file, opts.set ?? []);
      if (typeof requests === 'string') return usageFailed(requests);
      const runner = createOfflineRunner(loaded.ruleset);
      let now = Date.now();
      for (const request of requests) {
        const e = runner.run(request, now);
        now += 1000;
        if (typeof e === 'string') {
          process.stderr.write(`levee explain: cannot decide this request: ${e}\n`);
          process.exitCode = 1;
          continue;
        }
        process.stdout.write(opts.json === true ? `${JSON.stringify(e)}\n` : formatExplanation(e));
      }
    });

  program
    .command('replay')
    .description('feed captured policy requests through a candidate config and summarise what it would have done')
    .argument('<requests>', 'file of requests in Postfix policy format ("-" for stdin)')
    .option('-c, --config <file>', 'candidate configuration; without it the embedded defaults')
    .option('-i, --interval <ms>', 'milliseconds between requests, for rate limits', parseMilliseconds, 100)
    .option('--json', 'print the summary as JSON')
    .action(async (file: string, opts: { config?: string; interval: number; json?: boolean }) => {
      const loaded = await readConfigFile(opts.config);
      if (!loaded.ok) return configFailed(loaded.errors);
      const requests = await readRequests(file, []);
      if (typeof requests === 'string') return usageFailed(requests);
      const summary = replayRequests(loaded.ruleset, requests, Date.now(), opts.interval);
      process.stdout.write(opts.json === true ? `${JSON.stringify(summary)}\n` : formatReplaySummary(summary));
    });

  const adminOptions = (command: Command): Command =>
    command
      .option('-c, --config <file>', 'read the admin address from this config (admin.listen)')
      .option('--admin <url>', 'admin endpoint (default http://127.0.0.1:9470)')
      .option('--token-file <file>', 'file holding the admin token (or set LEVEE_ADMIN_TOKEN)')
      .option('--json', 'print the answer as JSON');

  adminOptions(program.command('status').description('tier, counter store, connections and blocks of the running daemon')).action(
    async (opts: AdminOpts) => {
      await callAdmin(opts, 'GET', '/status', undefined, (body) => formatStatus(body as Record<string, unknown>));
    },
  );
  adminOptions(program.command('top').description('the counters nearest their limits (this host\'s counts)'))
    .option('-n, --number <n>', 'how many counters to show', parseCount, 20)
    .action(async (opts: AdminOpts & { number: number }) => {
      await callAdmin(opts, 'GET', `/top?n=${opts.number}`, undefined, (body) => formatTop(body as Parameters<typeof formatTop>[0]));
    });
  adminOptions(program.command('blocks').description('the addresses and networks blocked by hand')).action(async (opts: AdminOpts) => {
    await callAdmin(opts, 'GET', '/blocks', undefined, (body) =>
      (body as { network: string; until?: number; reason: string }[])
        .map((b) => `${b.network}  until ${b.until === undefined ? 'unblocked' : new Date(b.until).toISOString()}  ${b.reason}\n`)
        .join('') || 'nothing blocked\n',
    );
  });
  adminOptions(program.command('block').description('refuse all mail from an address or network (needs the admin token)'))
    .argument('<address>', 'IP address or CIDR, e.g. 192.0.2.7 or 2001:db8::/48')
    .option('--for <duration>', 'how long, e.g. 30m, 1d (default: until unblocked)')
    .option('--reason <text>', 'why (logged, never told to the client)')
    .action(async (address: string, opts: AdminOpts & { for?: string; reason?: string }) => {
      const body = { address, ...(opts.for === undefined ? {} : { for: opts.for }), ...(opts.reason === undefined ? {} : { reason: opts.reason }) };
      await callAdmin(opts, 'POST', '/blocks', body, (b) => `blocked ${(b as { network: string }).network}${sharedNote(b)}\n`);
    });
  adminOptions(program.command('unblock').description('lift a block (needs the admin token)'))
    .argument('<address>', 'the address or CIDR as blocked')
    .action(async (address: string, opts: AdminOpts) => {
      await callAdmin(opts, 'DELETE', `/blocks?address=${encodeURIComponent(address)}`, undefined, (b) => `unblocked ${(b as { unblocked: string }).unblocked}${sharedNote(b)}\n`);
    });

  addHeldCommands(program, adminOptions);

  adminOptions(program.command('report').description('what an offending client address did, for its abuse contact (never the forged sender)'))
    .argument('[address]', 'the client IP; without it, the worst offenders')
    .option('--arf', 'print an abuse report message (RFC 5965 ARF) instead of the summary')
    .option('--to <address>', 'ARF To: the abuse contact of the IP (look it up: whois / abuse.net)', 'abuse@invalid')
    .option('--from <address>', 'ARF From: your postmaster address', 'postmaster@localhost')
    .option('--reporter <host>', 'the reporting host name in the ARF report', hostname())
    .addHelpText(
      'after',
      `
Send reports to the abuse contact of the connecting IP (whois, abuse.net), never to the
envelope sender: in worm and spam floods the sender is forged, and mailing it is backscatter.`,
    )
    .action(async (address: string | undefined, opts: AdminOpts & { arf?: boolean; to: string; from: string; reporter: string }) => {
      const path = address === undefined ? '/evidence' : `/evidence?address=${encodeURIComponent(address)}`;
      await callAdmin(opts, 'GET', path, undefined, (body) => {
        if (Array.isArray(body)) {
          const rows = body as Evidence[];
          return rows.length === 0
            ? 'no offenders recorded\n'
            : rows.map((e) => `${e.address}  ${Object.entries(e.actions).map(([a, n]) => `${a} ${String(n)}`).join(', ')}  last ${new Date(e.lastSeen).toISOString()}\n`).join('');
        }
        const e = body as Evidence;
        return opts.arf === true ? formatArf(e, { from: opts.from, to: opts.to, reporter: opts.reporter, now: Date.now() }) : formatEvidence(e);
      });
    });

  program
    .command('default-config')
    .description('print the embedded default configuration (a starting point for levee.yaml)')
    .action(() => {
      process.stdout.write(DEFAULT_CONFIG_YAML);
    });

  return program;
}

interface AdminOpts {
  config?: string;
  admin?: string;
  tokenFile?: string;
  json?: boolean;
}

/** One admin call: errors (daemon down, 4xx) are printed and set exit code 1 (69 when unreachable). */
async function callAdmin(opts: AdminOpts, method: string, path: string, body: unknown, format: (body: unknown) => string): Promise<void> {
  let listen: string | undefined;
  if (opts.config !== undefined) {
    const loaded = await readConfigFile(opts.config);
    if (!loaded.ok) return configFailed(loaded.errors);
    if (loaded.config.admin.listen === false) return usageFailed(`${opts.config}: admin.listen is false, the daemon has no admin endpoint`);
    listen = loaded.config.admin.listen.text;
  }
  const answer = await adminCall(await adminTarget(opts, listen), method, path, body);
  if (answer === undefined) return;
  process.stdout.write(opts.json === true ? `${JSON.stringify(answer)}\n` : format(answer));
}

/** What `levee block|unblock` adds when the change did not reach Redis (yet). */
function sharedNote(body: unknown): string {
  return (body as { shared?: string }).shared === 'pending' ? ' on this host only for now: redis is unreachable; written there (for every host) when it is back' : '';
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function parseWhole(value: string, what: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new InvalidArgumentError(`expected ${what}`);
  return Number(value);
}

function parseMilliseconds(value: string): number {
  return parseWhole(value, 'a whole number of milliseconds');
}

function parseCount(value: string): number {
  return parseWhole(value, 'a whole number');
}

function configFailed(errors: readonly string[]): void {
  for (const line of errors) process.stderr.write(`${line}\n`);
  process.exitCode = EX_CONFIG;
}

function usageFailed(message: string): void {
  process.stderr.write(`levee: ${message}\n`);
  process.exitCode = EX_USAGE;
}

/** Requests from a file ("-" = stdin) or, without one, a single request from --set flags. */
async function readRequests(file: string | undefined, assignments: readonly string[]): Promise<PolicyRequest[] | string> {
  if (file === undefined) {
    const request = requestFromAssignments(assignments);
    return typeof request === 'string' ? request : [request];
  }
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (error) {
    return `${file}: cannot read: ${(error as Error).message}`;
  }
  const parsed = parsePolicyRequests(text);
  if (!parsed.ok) return `${file}: ${parsed.error}`;
  const extra = requestFromAssignments(assignments);
  if (typeof extra === 'string') return extra;
  return parsed.requests.map((r) => overlay(r, extra));
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function runDaemon(configPath: string | undefined, logLevel: LogLevel | undefined): Promise<void> {
  const loaded = await readConfigFile(configPath);
  if (!loaded.ok) {
    for (const line of loaded.errors) process.stderr.write(`${line}\n`);
    process.exit(EX_CONFIG);
  }
  const { log, flush } = createStdoutLogger(logLevel ?? loaded.config.log.level, loaded.config.log.buffered);
  /** Every way out writes the buffered log lines first. */
  function exit(code: number): never {
    flush();
    process.exit(code);
  }
  for (const warning of loaded.warnings) log.warn({ config: loaded.source }, warning);
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error.stack ?? String(error) }, 'uncaught exception, exiting');
    exit(EX_SOFTWARE);
  });
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: String(reason) }, 'unhandled rejection, exiting');
    exit(EX_SOFTWARE);
  });

  let daemon;
  try {
    daemon = await startDaemon({
      config: loaded.config,
      ruleset: loaded.ruleset,
      source: loaded.source,
      log,
      directory: loaded.directory,
      batvKey: loaded.batvKey,
      redactKey: loaded.redactKey,
    });
  } catch (error) {
    log.fatal({ err: (error as Error).message }, 'cannot start');
    exit(EX_CONFIG);
  }
  const running = daemon;

  process.on('SIGHUP', () => {
    if (configPath === undefined) {
      log.info('SIGHUP: running on embedded defaults, nothing to reload');
      return;
    }
    void readConfigFile(configPath).then((next) => {
      if (!next.ok) {
        running.metrics.configReloads.labels('failed').inc();
        log.error({ config: configPath, errors: next.errors }, 'reload failed, keeping the running configuration');
        return;
      }
      for (const warning of next.warnings) log.warn({ config: next.source }, warning);
      running.reload(next.config, next.ruleset, next.source, next.directory, next.batvKey, next.redactKey);
    });
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void running.close().then(() => exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

