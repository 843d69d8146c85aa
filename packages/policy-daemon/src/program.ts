/**
 * program - the `levee` command line (commander).
 *
 *   levee run [--config FILE]      serve (embedded defaults without --config)
 *   levee check-config FILE        validate; errors as file:line:col, exit 1
 *   levee default-config           print the embedded default configuration
 *
 * Signals while running: SIGHUP re-reads the config file (a bad file is
 * reported and the running config stays), SIGTERM/SIGINT drain and exit.
 */

import { Command, Option } from 'commander';
import { DEFAULT_CONFIG_YAML } from '@levee/rules';
import { readConfigFile } from './config-file.js';
import { startDaemon } from './daemon.js';
import { createLogger, LOG_LEVELS, type LogLevel } from './logger.js';

/** Exit codes follow sysexits(3) where one fits: 78 = EX_CONFIG. */
export const EX_CONFIG = 78;
export const EX_SOFTWARE = 70;

export function buildProgram(): Command {
  const program = new Command('levee')
    .description('Levee: a mail-defence policy daemon for Postfix (check_policy_service) and milter MTAs.')
    .showHelpAfterError('(run "levee --help" for usage)');

  program
    .command('run')
    .description('run the daemon in the foreground (logs JSON lines to stdout)')
    .option('-c, --config <file>', 'configuration file (YAML); without it the embedded defaults are used')
    .addOption(new Option('--log-level <level>', 'override log.level from the config').choices(LOG_LEVELS))
    .addHelpText(
      'after',
      `
Defaults (no --config): policy on inet:127.0.0.1:10031, metrics on 127.0.0.1:9469,
in-memory counters, the built-in rule set ("levee default-config" prints it).

Signals: SIGHUP reloads the config file (a bad file keeps the running config),
SIGTERM or SIGINT stop accepting, answer what is in flight and exit.`,
    )
    .action(async (opts: { config?: string; logLevel?: LogLevel }) => {
      await runDaemon(opts.config, opts.logLevel);
    });

  program
    .command('check-config')
    .description('validate a configuration file; print errors as file:line:col and exit 78 if any')
    .argument('<file>', 'configuration file (YAML)')
    .action(async (file: string) => {
      const loaded = await readConfigFile(file);
      if (!loaded.ok) {
        for (const line of loaded.errors) process.stderr.write(`${line}\n`);
        process.exitCode = EX_CONFIG;
        return;
      }
      process.stdout.write(`${file}: OK, ${loaded.config.rules.length} rules\n`);
    });

  program
    .command('default-config')
    .description('print the embedded default configuration (a starting point for levee.yaml)')
    .action(() => {
      process.stdout.write(DEFAULT_CONFIG_YAML);
    });

  return program;
}

async function runDaemon(configPath: string | undefined, logLevel: LogLevel | undefined): Promise<void> {
  const loaded = await readConfigFile(configPath);
  if (!loaded.ok) {
    for (const line of loaded.errors) process.stderr.write(`${line}\n`);
    process.exit(EX_CONFIG);
  }
  const log = createLogger(logLevel ?? loaded.config.log.level);
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error.stack ?? String(error) }, 'uncaught exception, exiting');
    process.exit(EX_SOFTWARE);
  });
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: String(reason) }, 'unhandled rejection, exiting');
    process.exit(EX_SOFTWARE);
  });

  let daemon;
  try {
    daemon = await startDaemon({ config: loaded.config, ruleset: loaded.ruleset, source: loaded.source, log });
  } catch (error) {
    log.fatal({ err: (error as Error).message }, 'cannot start');
    process.exit(EX_CONFIG);
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
        log.error({ errors: next.errors }, 'reload failed, keeping the running configuration');
        return;
      }
      running.reload(next.config, next.ruleset, next.source);
    });
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

