/**
 * held-commands - `levee held`, `levee release` and `levee drop`: the held
 * mail of a running daemon and what to do with it.
 *
 * The daemon only remembers what it held; the MTA has the mail. Releasing or
 * dropping a message runs the MTA's own tool (held.release_command /
 * held.drop_command of --config; Postfix's postsuper by default) from this
 * command, as the admin who runs it: postsuper needs root, which the daemon
 * never has. Only when the tool succeeded is the daemon told to forget the
 * record, so a failed release leaves everything as it was.
 */

import { execFile } from 'node:child_process';
import type { Command } from 'commander';
import { DEFAULT_DROP_COMMAND, DEFAULT_RELEASE_COMMAND, type HeldSettings } from '@levee/rules';
import { adminCall, adminTarget, type AdminTarget } from './admin-client.js';
import { EX_CONFIG } from './exit-codes.js';
import { readConfigFile } from './config-file.js';
import { commandFor, type HeldRecord } from './held-mail.js';

const COMMAND_TIMEOUT_MS = 60_000;

interface HeldOpts {
  config?: string;
  admin?: string;
  tokenFile?: string;
  json?: boolean;
}

interface Session {
  readonly target: AdminTarget;
  readonly held: Pick<HeldSettings, 'releaseCommand' | 'dropCommand'>;
}

/** The admin endpoint and the release/drop commands, from --config or the defaults. */
async function open(opts: HeldOpts): Promise<Session | undefined> {
  let listen: string | undefined;
  let held: Session['held'] = { releaseCommand: DEFAULT_RELEASE_COMMAND, dropCommand: DEFAULT_DROP_COMMAND };
  if (opts.config !== undefined) {
    const loaded = await readConfigFile(opts.config);
    if (!loaded.ok) {
      for (const line of loaded.errors) process.stderr.write(`${line}\n`);
      process.exitCode = EX_CONFIG;
      return undefined;
    }
    if (loaded.config.admin.listen !== false) listen = loaded.config.admin.listen.text;
    held = loaded.config.held;
  }
  return { target: await adminTarget(opts, listen), held };
}

function run(argv: readonly string[]): Promise<{ ok: boolean; output: string }> {
  const [program, ...args] = argv as [string, ...string[]];
  return new Promise((resolve) => {
    execFile(program, args, { timeout: COMMAND_TIMEOUT_MS }, (error, stdout, stderr) => {
      resolve({ ok: error === null, output: `${stdout}${stderr}`.trim() || (error?.message ?? '') });
    });
  });
}

/** formatHeld - `levee held` as a table, newest last. */
export function formatHeld(records: readonly HeldRecord[]): string {
  if (records.length === 0) return 'no held mail\n';
  return records
    .map((r) => {
      const who = r.saslUsername !== undefined ? `user ${r.saslUsername}` : `client ${r.clientAddress ?? '?'}`;
      const rcpts = r.recipients.length === 0 ? '' : ` to ${r.recipients.slice(0, 3).join(',')}${r.recipients.length > 3 ? ',...' : ''}`;
      return `${r.id}  ${new Date(r.at).toISOString()}  queue ${r.queueId ?? '(unknown)'}  ${who}  from <${r.sender ?? ''}>${rcpts}  rule ${r.rule}\n`;
    })
    .join('');
}

/** Release or drop one held message: run the MTA's tool, then let the daemon forget it. */
async function act(session: Session, id: string, how: 'released' | 'dropped'): Promise<boolean> {
  const record = (await adminCall(session.target, 'GET', `/held/${encodeURIComponent(id)}`)) as HeldRecord | undefined;
  if (record === undefined) return false;
  const argv = commandFor(how === 'released' ? session.held.releaseCommand : session.held.dropCommand, record);
  if (argv === undefined) {
    process.stderr.write(
      `levee: ${id}: the MTA never reported a queue id for this message; find it with mailq (from <${record.sender ?? ''}>, ${new Date(record.at).toISOString()}) and use the MTA's tool by hand\n`,
    );
    process.exitCode = 1;
    return false;
  }
  const result = await run(argv);
  if (!result.ok) {
    process.stderr.write(`levee: ${id}: ${argv.join(' ')} failed: ${result.output}\n`);
    process.exitCode = 1;
    return false;
  }
  if ((await adminCall(session.target, 'DELETE', `/held/${encodeURIComponent(id)}?how=${how}`)) === undefined) return false;
  process.stdout.write(`${how} ${id} (queue id ${record.queueId ?? ''})\n`);
  return true;
}

export function addHeldCommands(program: Command, adminOptions: (command: Command) => Command): void {
  adminOptions(program.command('held').description('the mail the running daemon held (quarantine), and the customers it contains')).action(
    async (opts: HeldOpts) => {
      const session = await open(opts);
      if (session === undefined) return;
      const held = (await adminCall(session.target, 'GET', '/held')) as HeldRecord[] | undefined;
      const contained = (await adminCall(session.target, 'GET', '/contained')) as { key: string; state: { phase: string; since: number; until?: number } }[] | undefined;
      if (held === undefined || contained === undefined) return;
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify({ held, contained })}\n`);
        return;
      }
      const customers = contained.map(
        (c) => `${c.state.phase.padEnd(6)}  ${c.key}  since ${new Date(c.state.since).toISOString()}${c.state.until === undefined ? '' : `  until ${new Date(c.state.until).toISOString()}`}\n`,
      );
      process.stdout.write(`${formatHeld(held)}${customers.length === 0 ? '' : `\ncontained customers:\n${customers.join('')}`}`);
    },
  );

  adminOptions(program.command('release').description('deliver held mail: run held.release_command for each message (needs the admin token)'))
    .argument('[ids...]', 'held message ids (from levee held)')
    .option('--customer <key>', 'end the hold of a contained customer ("rule|key" from levee held) and release all its held mail')
    .addHelpText(
      'after',
      `
The release runs here, as you: Postfix's "postsuper -H QUEUE_ID" by default (it needs root).
Set held.release_command in the config given with --config for another MTA, e.g. sendmail:
  release_command: [sendmail, -qQ, "-qI{queue_id}", -Q]`,
    )
    .action(async (ids: string[], opts: HeldOpts & { customer?: string }) => {
      const session = await open(opts);
      if (session === undefined) return;
      if (ids.length === 0 && opts.customer === undefined) {
        process.stderr.write('levee: give held message ids or --customer KEY\n');
        process.exitCode = 64;
        return;
      }
      const all = [...ids];
      if (opts.customer !== undefined) {
        if ((await adminCall(session.target, 'DELETE', `/contained?key=${encodeURIComponent(opts.customer)}`)) === undefined) return;
        process.stdout.write(`ended the hold of ${opts.customer}\n`);
        const held = ((await adminCall(session.target, 'GET', '/held')) as HeldRecord[] | undefined) ?? [];
        for (const r of held) if (r.key === opts.customer && !all.includes(r.id)) all.push(r.id);
      }
      for (const id of all) await act(session, id, 'released');
    });

  adminOptions(program.command('drop').description('delete held mail: run held.drop_command for each message (needs the admin token)'))
    .argument('<ids...>', 'held message ids (from levee held)')
    .addHelpText('after', '\nThe drop runs here, as you: Postfix\'s "postsuper -d QUEUE_ID hold" by default (it needs root).')
    .action(async (ids: string[], opts: HeldOpts) => {
      const session = await open(opts);
      if (session === undefined) return;
      for (const id of ids) await act(session, id, 'dropped');
    });
}
