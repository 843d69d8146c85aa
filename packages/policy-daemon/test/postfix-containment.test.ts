// "Contain the infected customer" end to end: a real Postfix with SMTP AUTH
// (Cyrus SASL, private sasldb) asks Levee at end of message; an authenticated
// sender over its limit is warned, then held after the grace period (its mail
// in Postfix's hold queue), the postmaster is notified by a command and by a
// mail through Postfix, and `levee held` / `release` / `drop` act on the held
// mail with Postfix's own postsuper.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigText } from '../src/config-file.js';
import { runCli } from './support/cli.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from './support/postfix.js';
import { swaks, swaksAvailable, type SwaksResult } from './support/swaks.js';

jest.setTimeout(120_000);

const INSTALL = 'Postfix/swaks/sasl2-bin are not installed: run `bash scripts/install-test-deps.sh` (as root) before the MTA tests';
const TOKEN = 'containment-test-token-0123456789';

function rulesYaml(noticeDir: string, extra = ''): string {
  return `
notify:
  command: ["/bin/sh", "-c", "cat > \\"$0/$LEVEE_EVENT-$LEVEE_SUBJECT.txt\\"", "${noticeDir}"]
${extra}
rules:
  - name: outbound-user
    stage: eom
    match: { authenticated: true }
    limit: { key: "{sasl_username}", max: 2, window: 1h }
    action: quarantine
    text: "outbound limit exceeded"
    contain: { grace: 10m, hold_for: 2h }
`;
}

describe('an authenticated sender over its limit is warned, held, and released by the CLI', () => {
  let levee: TestDaemon | undefined;
  let postfix: PostfixInstance | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'levee-contain-'));
  const noticeDir = join(dir, 'notices');
  const tokenFile = join(dir, 'token');
  const cliConfig = join(dir, 'cli.yaml');

  beforeAll(async () => {
    if (!postfixAvailable() || !swaksAvailable()) throw new Error(INSTALL);
    rmSync(noticeDir, { recursive: true, force: true });
    mkdirSync(noticeDir);
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    levee = await startTestDaemon(rulesYaml(noticeDir), { admin: { tokenFile } });
    const service = `check_policy_service inet:127.0.0.1:${String(levee.policyPort)}`;
    postfix = await startPostfix({
      saslUsers: { alice: 'alice-secret', bob: 'bob-secret' },
      mainCf: {
        smtpd_policy_service_default_action: 'DUNNO',
        smtpd_recipient_restrictions: 'permit_sasl_authenticated, reject_unauth_destination',
        smtpd_end_of_data_restrictions: service,
      },
    });
    // Now that Postfix listens, the notice mail can go through it: reload with notify.mail.
    const next = loadConfigText(rulesYaml(noticeDir, `  mail: { to: postmaster@example.org, from: levee@example.org, smtp: "127.0.0.1:${String(postfix.smtpPort)}" }`), 'reloaded.yaml');
    if (!next.ok) throw new Error(next.errors.join('\n'));
    const running = levee.daemon;
    running.reload({ ...next.config, listen: { policy: [], milter: [] }, admin: { listen: false, tokenFile } }, next.ruleset, 'reloaded.yaml');
    // What `levee release` / `drop` read: where the admin endpoint is, and Postfix's tools for this private instance.
    const adminPort = running.admin?.port ?? 0;
    writeFileSync(
      cliConfig,
      `admin: { listen: "127.0.0.1:${String(adminPort)}", token_file: ${tokenFile} }
held:
  release_command: [/usr/sbin/postsuper, -c, ${postfix.configDir}, -H, "{queue_id}"]
  drop_command: [/usr/sbin/postsuper, -c, ${postfix.configDir}, -d, "{queue_id}", hold]
`,
    );
  });
  afterAll(async () => {
    await postfix?.stop();
    await levee?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const mta = (): PostfixInstance => {
    if (postfix === undefined) throw new Error(INSTALL);
    return postfix;
  };
  const send = (user: string, token: string): Promise<SwaksResult> =>
    swaks({
      server: mta().smtpHost,
      port: mta().smtpPort,
      from: `${user}@example.org`,
      to: `friend-${token}@customer.example`,
      header: { Subject: `message ${token}` },
      body: `token ${token}\n`,
      authUser: user,
      authPassword: `${user}-secret`,
    });
  const queued = (r: SwaksResult): boolean => r.replies.some((x) => x.code === 250 && /queued as/.test(x.text));
  const deliveredWith = (token: string): string[] => mta().deliveredMessages().filter((m) => m.includes(`message ${token}`));
  const cli = (...args: string[]) => runCli([...args, '--config', cliConfig, '--token-file', tokenFile]);
  const advance = (ms: number): void => {
    if (levee !== undefined) levee.clock += ms;
  };

  test('the lifecycle: under the limit, warned, held after the grace period, held mail released and dropped, hold ended', async () => {
    // Two messages: under the limit, delivered.
    const first = await send('alice', 'a1');
    if (first.exitCode !== 0) throw new Error(`${JSON.stringify(first.replies)}\n${mta().maillog()}\n${readFileSync(join(mta().baseDir, 'sasl', 'smtpd.conf'), 'utf8')}${JSON.stringify(readdirSync(join(mta().baseDir, 'sasl')))}`);
    expect((await send('alice', 'a2')).exitCode).toBe(0);
    // The third trips the limit: a warning only, the mail is delivered, the postmaster told.
    const third = await send('alice', 'a3');
    expect(third.exitCode).toBe(0);
    await mta().waitForDelivery(3, 20_000);
    for (const t of ['a1', 'a2', 'a3']) expect(deliveredWith(t)).toHaveLength(1);
    expect(levee?.logs.some((l) => l['msg'] === 'contain: over the limit, warning (held if it continues past the grace period)' && l['customer'] === 'alice')).toBe(true);

    // Past the grace period, still over the limit: held. Postfix says 250 but keeps the mail in its hold queue.
    advance(11 * 60_000);
    const fourth = await send('alice', 'a4');
    expect(fourth.exitCode).toBe(0);
    expect(queued(fourth)).toBe(true);
    const fifth = await send('alice', 'a5');
    expect(fifth.exitCode).toBe(0);
    // Another user is not affected.
    expect((await send('bob', 'b1')).exitCode).toBe(0);

    // levee held lists both held messages with Postfix's queue ids.
    const listed = await cli('held', '--json');
    expect(listed.stderr).toBe('');
    const { held, contained } = JSON.parse(listed.stdout) as {
      held: { id: string; queueId: string; saslUsername: string; sender: string; rule: string; key: string }[];
      contained: { key: string; state: { phase: string } }[];
    };
    expect(held).toHaveLength(2);
    expect(held.every((h) => h.saslUsername === 'alice' && h.sender === 'alice@example.org' && h.rule === 'outbound-user' && h.key === 'outbound-user|alice')).toBe(true);
    expect(contained).toEqual([expect.objectContaining({ key: 'outbound-user|alice', state: expect.objectContaining({ phase: 'held' }) })]);
    const holdQueue = await mta().holdQueue();
    expect(holdQueue.sort()).toEqual(held.map((h) => h.queueId).sort());
    // Which record is which message: by the queue id Postfix gave each in its 250 reply.
    const queueIdOf = (r: SwaksResult): string | undefined => r.replies.map((x) => /queued as ([0-9A-Za-z]+)/.exec(x.text)?.[1]).find((x) => x !== undefined);
    const h4 = held.find((h) => h.queueId === queueIdOf(fourth));
    const h5 = held.find((h) => h.queueId === queueIdOf(fifth));
    if (h4 === undefined || h5 === undefined) throw new Error(`held records ${JSON.stringify(held)} do not match the queue ids of a4 and a5`);

    // The human table too.
    const table = await cli('held');
    expect(table.stdout).toContain(`${h4.id}  `);
    expect(table.stdout).toContain('contained customers:');

    // Release one: postsuper -H, then Postfix delivers it. Drop the other: gone, never delivered.
    const released = await cli('release', h4.id);
    expect(released).toMatchObject({ status: 0, stderr: '' });
    expect(released.stdout).toContain(`released ${h4.id} (queue id ${h4.queueId})`);
    const dropped = await cli('drop', h5.id);
    expect(dropped).toMatchObject({ status: 0, stderr: '' });
    await mta().flush();
    await mta().waitForDelivery(1, 20_000);
    for (let i = 0; i < 100 && deliveredWith('a4').length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(deliveredWith('a4')).toHaveLength(1);
    expect(deliveredWith('a5')).toHaveLength(0);
    expect(await mta().holdQueue()).toEqual([]);
    expect((await mta().queueIds()).map((q) => q.id)).not.toContain(h5.queueId);
    // Both records are gone; releasing again is a clear error.
    expect(JSON.parse((await cli('held', '--json')).stdout).held).toEqual([]);
    const again = await cli('release', h4.id);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`no held message ${h4.id}`);

    // The postmaster ends the hold: alice's next message goes through (with a fresh warning, as she is still over).
    const ended = await cli('release', '--customer', 'outbound-user|alice');
    expect(ended).toMatchObject({ status: 0, stderr: '' });
    expect(ended.stdout).toContain('ended the hold of outbound-user|alice');
    expect((await send('alice', 'a6')).exitCode).toBe(0);
    for (let i = 0; i < 100 && deliveredWith('a6').length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(deliveredWith('a6')).toHaveLength(1);
    expect(await mta().holdQueue()).toEqual([]);
    expect(deliveredWith('b1')).toHaveLength(1);

    // The postmaster heard of the warning and of the hold: by the command, and by mail through Postfix.
    await levee?.daemon.containment.idle();
    const notices = readdirSync(noticeDir).sort();
    expect(notices).toEqual(expect.arrayContaining(['held-alice.txt', 'warned-alice.txt']));
    expect(readFileSync(join(noticeDir, 'held-alice.txt'), 'utf8')).toContain('levee release');
    for (let i = 0; i < 100 && !mta().deliveredMessages().some((m) => m.includes('[levee] alice is held until')); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const mails = mta().deliveredMessages();
    expect(mails.some((m) => /^Subject: \[levee\] alice is held until/m.test(m) && /^To: postmaster@example.org/m.test(m))).toBe(true);
  });
});
