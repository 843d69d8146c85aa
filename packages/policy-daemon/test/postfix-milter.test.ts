// End to end: a real Postfix (private instance on loopback) with smtpd_milters
// pointing at Levee's milter listener; swaks sends real mail over IPv4 and IPv6.
import { createServer } from 'node:net';
import { ipv6LoopbackAvailable, postfixAvailable, startPostfix, type PostfixInstance } from './support/postfix.js';
import { swaks, swaksAvailable, type SwaksOptions, type SwaksResult } from './support/swaks.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';
import { makeZip } from './support/zip.js';
import { MILTER_E2E_RULES } from './support/milter-rules.js';

jest.setTimeout(60_000);

const INSTALL = 'Postfix/swaks are not installed: run `bash scripts/install-test-deps.sh` (as root) before the MTA tests';


const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const queuedId = (r: SwaksResult): string | undefined => {
  for (const reply of r.replies) {
    const m = /queued as ([0-9A-Za-z]+)/.exec(reply.text);
    if (m?.[1] !== undefined) return m[1];
  }
  return undefined;
};

describe('real Postfix with Levee as smtpd_milters', () => {
  let levee: TestDaemon | undefined;
  let postfix: PostfixInstance | undefined;

  beforeAll(async () => {
    if (!postfixAvailable() || !swaksAvailable()) throw new Error(INSTALL);
    levee = await startTestDaemon(MILTER_E2E_RULES, { milter: true });
    postfix = await startPostfix({
      ipv6: true,
      mainCf: {
        smtpd_milters: `inet:127.0.0.1:${String(levee.milterPort)}`,
        non_smtpd_milters: '',
        milter_protocol: '6',
        milter_default_action: 'tempfail',
        smtpd_recipient_restrictions: 'reject_unauth_destination',
      },
    });
  });
  afterAll(async () => {
    await postfix?.stop();
    await levee?.close();
  });

  const mta = (): PostfixInstance => {
    if (postfix === undefined) throw new Error(INSTALL);
    return postfix;
  };
  const send = (to: string, extra: Partial<SwaksOptions> = {}): Promise<SwaksResult> =>
    swaks({
      server: mta().smtpHost,
      port: mta().smtpPort,
      from: 'alice@example.net',
      to,
      helo: 'client.example.net',
      header: { Subject: `milter e2e ${to}` },
      body: `milter e2e message to ${to}\n`,
      ...extra,
    });

  test('a clean message is delivered with the header Levee added', async () => {
    const r = await send('friend@example.org');
    expect(r.exitCode).toBe(0);
    const delivered = await mta().waitForDeliveryTo('friend@example.org', 20_000);
    const mine = delivered.find((m) => m.includes('Subject: milter e2e friend@example.org'));
    expect(mine).toMatch(/^X-Levee: checked$/m);
  });

  test('RCPT reject: the SMTP client gets the rule’s 550 5.1.1', async () => {
    const r = await send('nobody@example.org');
    expect(r.replies.find((x) => x.code === 550)?.text).toMatch(/^5\.1\.1 No such user here/);
    expect(r.exitCode).not.toBe(0);
  });

  test('RCPT tempfail: the SMTP client gets 451 4.7.1', async () => {
    const r = await send('someone@busy.example');
    expect(r.replies.find((x) => x.code === 451)?.text).toMatch(/^4\.7\.1 Busy, try again later/);
  });

  test('a worm (.pif attachment) gets 250 but is never delivered and bounces nowhere', async () => {
    const r = await send('victim@example.org', { attach: [{ name: 'photo.pif', content: Buffer.from('MZ fake executable') }] });
    expect(r.exitCode).toBe(0);
    const id = queuedId(r);
    expect(id).toBeDefined();
    for (let i = 0; i < 100 && !mta().maillog().includes(`${String(id)}: milter-discard`); i++) await sleep(50);
    expect(mta().maillog()).toMatch(new RegExp(`${String(id)}: milter-discard: END-OF-MESSAGE`));
    await mta().flush();
    await sleep(500);
    expect(mta().deliveredTo('victim@example.org')).toEqual([]);
    // Nothing left in any queue: no delivery attempt and no bounce to the (forged) sender.
    expect(await mta().queueIds()).toEqual([]);
    expect(mta().maillog()).not.toMatch(new RegExp(`${String(id)}: .*status=bounced`));
  });

  test('a worm hidden in a zip (.scr inside documents.zip) is discarded like a bare one', async () => {
    const zip = makeZip([
      { name: 'readme.txt', data: Buffer.from('see attached') },
      { name: 'document.scr', data: Buffer.alloc(3000, 0x4d) },
    ]);
    const r = await send('victim2@example.org', { attach: [{ name: 'documents.zip', content: zip }] });
    expect(r.exitCode).toBe(0);
    const id = queuedId(r);
    for (let i = 0; i < 100 && !mta().maillog().includes(`${String(id)}: milter-discard`); i++) await sleep(50);
    expect(mta().maillog()).toMatch(new RegExp(`${String(id)}: milter-discard: END-OF-MESSAGE`));
    await sleep(300);
    expect(mta().deliveredTo('victim2@example.org')).toEqual([]);
  });

  const bounce = (to: string, returnedReceived: string): string =>
    [
      'From: MAILER-DAEMON@mx.other.example',
      `To: ${to}`,
      'Subject: Undelivered Mail Returned to Sender',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"',
      '',
      '--BB',
      'Content-Type: text/plain',
      '',
      'Your message could not be delivered.',
      '--BB',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.other.example',
      '',
      'Final-Recipient: rfc822; someone@other.example',
      'Action: failed',
      'Status: 5.1.1',
      '--BB',
      'Content-Type: text/rfc822-headers',
      '',
      `Received: ${returnedReceived}`,
      `From: ${to}`,
      'Subject: the original',
      '',
      '--BB--',
      '',
    ].join('\r\n');

  test('backscatter: a bounce whose returned headers never passed our MX is refused; a genuine one is delivered', async () => {
    const forged = await send('alice@example.org', { from: '<>', data: bounce('alice@example.org', 'from botnet.example (unknown [203.0.113.66]) by mx.other.example') });
    expect(forged.replies.find((x) => x.code === 550)?.text).toMatch(/^5\.7\.1 Bounce for mail we never sent/);
    const genuine = await send('bob@example.org', {
      from: '<>',
      data: bounce('bob@example.org', 'from mx1.example.org (mx1.example.org [192.0.2.10]) by mx.other.example'),
    });
    expect(genuine.exitCode).toBe(0);
    const delivered = await mta().waitForDeliveryTo('bob@example.org', 20_000);
    expect(delivered.some((m) => m.includes('To: bob@example.org') && m.includes('report-type=delivery-status'))).toBe(true);
    expect(levee?.logs.some((l) => l['stage'] === 'eom' && l['rule'] === 'backscatter' && l['sender'] === '')).toBe(true);
  });

  test('quarantine: 250, and the message waits in the hold queue', async () => {
    const r = await send('held@example.org', { header: { Subject: 'hold me please' } });
    expect(r.exitCode).toBe(0);
    const id = queuedId(r);
    let held: string[] = [];
    for (let i = 0; i < 100 && (id === undefined || !held.includes(id)); i++) {
      held = await mta().holdQueue();
      if (id !== undefined && !held.includes(id)) await sleep(50);
    }
    expect(held).toContain(id);
    // Postfix logs the hold; the reason is in Levee's decision line.
    expect(mta().maillog()).toMatch(new RegExp(`${String(id)}: milter-hold: END-OF-MESSAGE from .*to=<held@example\\.org>`));
    expect(levee?.logs.some((l) => l['stage'] === 'eom' && l['action'] === 'quarantine' && l['rule'] === 'hold' && l['queue_id'] === id)).toBe(true);
    // Levee keeps a record of it, with Postfix's queue id, for levee held / release / drop.
    expect(levee?.daemon.containment.held()).toContainEqual(expect.objectContaining({ protocol: 'milter', rule: 'hold', queueId: id, recipients: ['held@example.org'] }));
    await mta().flush();
    await sleep(300);
    expect(mta().deliveredTo('held@example.org')).toEqual([]);
  });

  test('over IPv6 (::1): delivered with the header; reject works', async () => {
    expect(ipv6LoopbackAvailable()).toBe(true);
    const ok = await send('friend6@example.org', { server: '::1' });
    expect(ok.exitCode).toBe(0);
    const delivered = await mta().waitForDeliveryTo('friend6@example.org', 20_000);
    expect(delivered.find((m) => m.includes('friend6@example.org'))).toMatch(/^X-Levee: checked$/m);
    const rej = await send('nobody@example.org', { server: '::1' });
    expect(rej.replies.find((x) => x.code === 550)?.text).toMatch(/5\.1\.1/);
    expect(levee?.logs.some((l) => l['msg'] === 'decision' && l['proto'] === 'milter' && l['client'] === '::1')).toBe(true);
  });

  test('with Levee stopped, Postfix applies milter_default_action: tempfail gives 4xx, accept lets mail through', async () => {
    const port = levee?.milterPort ?? 0;
    await levee?.close();
    levee = undefined;
    // Hold the freed port with a listener that drops every connection, so no other
    // test's daemon can be handed it by the OS meanwhile: Postfix meets a dead milter.
    const tomb = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => tomb.once('error', reject).listen(port, '127.0.0.1', resolve));
    try {
      await expectMilterDeadBehaviour(port);
    } finally {
      await new Promise<void>((resolve) => tomb.close(() => resolve()));
    }
  });

  const expectMilterDeadBehaviour = async (port: number): Promise<void> => {
    const r = await send('friend@example.org');
    expect(r.replies.some((x) => x.code >= 400 && x.code < 500)).toBe(true);
    expect(r.exitCode).not.toBe(0);
    // A second instance configured to fail open, pointing at the same dead milter.
    const open = await startPostfix({ mainCf: { smtpd_milters: `inet:127.0.0.1:${String(port)}`, milter_default_action: 'accept' } });
    try {
      const through = await swaks({ server: open.smtpHost, port: open.smtpPort, from: 'a@example.net', to: 'b@example.org', helo: 'c.example.net' });
      expect(through.exitCode).toBe(0);
      await open.waitForDelivery(1, 20_000);
    } finally {
      await open.stop();
    }
  };
});
