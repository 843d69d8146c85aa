// End to end: a real sendmail (Debian's binary, private instance on loopback)
// with INPUT_MAIL_FILTER pointing at Levee's milter listener, as deploy/sendmail
// says (F=T); swaks sends real mail over IPv4 and IPv6. Same rules as the
// Postfix milter test.
import { createServer } from 'node:net';
import { ipv6LoopbackAvailable, sendmailAvailable, startSendmail, type SendmailInstance } from './support/sendmail.js';
import { swaks, swaksAvailable, type SwaksOptions, type SwaksResult } from './support/swaks.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';
import { makeZip } from './support/zip.js';
import { MILTER_E2E_RULES } from './support/milter-rules.js';

jest.setTimeout(60_000);

const INSTALL = 'sendmail/swaks are not installed: run `bash scripts/install-test-deps.sh` (as root) before the MTA tests';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('real sendmail with Levee as INPUT_MAIL_FILTER (F=T)', () => {
  let levee: TestDaemon | undefined;
  let sendmail: SendmailInstance | undefined;

  beforeAll(async () => {
    if (!sendmailAvailable() || !swaksAvailable()) throw new Error(INSTALL);
    levee = await startTestDaemon(MILTER_E2E_RULES, { milter: true });
    sendmail = await startSendmail({ ipv6: true, milter: { socket: `inet:${String(levee.milterPort)}@127.0.0.1`, flags: 'T' } });
  });
  afterAll(async () => {
    await sendmail?.stop();
    await levee?.close();
  });

  const mta = (): SendmailInstance => {
    if (sendmail === undefined) throw new Error(INSTALL);
    return sendmail;
  };
  const send = (to: string, extra: Partial<SwaksOptions> = {}): Promise<SwaksResult> =>
    swaks({
      server: mta().smtpHost,
      port: mta().smtpPort,
      from: 'alice@example.net',
      to,
      helo: 'client.example.net',
      header: { Subject: `sendmail e2e ${to}` },
      body: `sendmail e2e message to ${to}\n`,
      ...extra,
    });
  const delivered = (to: string): string[] => mta().deliveredMessages().filter((m) => m.includes(`Delivered-To: ${to}`));

  test('a clean message is delivered with the header Levee added', async () => {
    const r = await send('friend@example.org');
    expect(r.exitCode).toBe(0);
    await mta().waitForLog(/to=<?friend@example\.org>?.*stat=Sent/, 20_000);
    expect(delivered('friend@example.org')[0]).toMatch(/^X-Levee: checked$/m);
  });

  test('RCPT reject: the SMTP client gets the rule’s 550 5.1.1', async () => {
    const r = await send('nobody@example.org');
    // sendmail puts the address in front of the milter's text.
    expect(r.replies.find((x) => x.code === 550)?.text).toMatch(/^5\.1\.1 <nobody@example\.org>\.\.\. No such user here/);
    expect(r.exitCode).not.toBe(0);
  });

  test('RCPT tempfail: the SMTP client gets 451 4.7.1', async () => {
    const r = await send('someone@busy.example');
    expect(r.replies.find((x) => x.code === 451)?.text).toMatch(/^4\.7\.1 Busy, try again later/);
  });

  test('a worm (.pif) and a worm in a zip get 250, are never delivered, and leave nothing queued', async () => {
    const bare = await send('victim@example.org', { attach: [{ name: 'photo.pif', content: Buffer.from('MZ fake') }] });
    const zipped = await send('victim2@example.org', {
      attach: [{ name: 'documents.zip', content: makeZip([{ name: 'document.scr', data: Buffer.alloc(2000, 0x4d) }]) }],
    });
    expect([bare.exitCode, zipped.exitCode]).toEqual([0, 0]);
    await mta().waitForLog(/Milter: data, discard/, 20_000);
    await sleep(500);
    expect(delivered('victim@example.org')).toEqual([]);
    expect(delivered('victim2@example.org')).toEqual([]);
    expect(await mta().queueIds()).toEqual([]);
  });

  test('quarantine: 250, and the queue file is held (hf) with Levee’s reason', async () => {
    const r = await send('held@example.org', { header: { Subject: 'hold me please' } });
    expect(r.exitCode).toBe(0);
    let held: { id: string; quarantined: boolean; reason?: string }[] = [];
    for (let i = 0; i < 100 && held.length === 0; i++) {
      held = (await mta().queueIds()).filter((q) => q.quarantined);
      if (held.length === 0) await sleep(50);
    }
    expect(held).toEqual([expect.objectContaining({ quarantined: true, reason: 'held for review by levee' })]);
    expect(delivered('held@example.org')).toEqual([]);
    // Levee keeps a record of it, with sendmail's queue id, for levee held / release / drop.
    expect(levee?.daemon.containment.held()).toContainEqual(expect.objectContaining({ protocol: 'milter', queueId: held[0]?.id, recipients: ['held@example.org'] }));
  });

  test('over IPv6 (::1): delivered with the header; reject works', async () => {
    expect(ipv6LoopbackAvailable()).toBe(true);
    expect(mta().ipv6).toBe(true);
    const ok = await send('friend6@example.org', { server: '::1' });
    expect(ok.exitCode).toBe(0);
    await mta().waitForLog(/to=<?friend6@example\.org>?.*stat=Sent/, 20_000);
    expect(delivered('friend6@example.org')[0]).toMatch(/^X-Levee: checked$/m);
    const rej = await send('nobody@example.org', { server: '::1' });
    expect(rej.replies.find((x) => x.code === 550)?.text).toMatch(/5\.1\.1/);
    expect(levee?.logs.some((l) => l['msg'] === 'decision' && l['proto'] === 'milter' && l['client'] === '::1')).toBe(true);
  });

  test('with Levee stopped, F=T temp-fails (4xx) and nothing is delivered', async () => {
    const port = levee?.milterPort ?? 0;
    await levee?.close();
    levee = undefined;
    // Hold the freed port with a listener that drops every connection (see the Postfix test).
    const tomb = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => tomb.once('error', reject).listen(port, '127.0.0.1', resolve));
    try {
      const r = await send('late@example.org');
      expect(r.replies.some((x) => x.code >= 400 && x.code < 500)).toBe(true);
      expect(r.exitCode).not.toBe(0);
      expect(delivered('late@example.org')).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => tomb.close(() => resolve()));
    }
  });
});
