// Self-test of the real-sendmail harness (test/support/sendmail.ts): the
// extracted sendmail 8.17 has MILTER compiled in, delivers over 127.0.0.1 and
// ::1 into the sink, lists and releases quarantined messages, stops itself when
// its owner dies, and -- with a milter configured at a port where nothing
// listens -- does what its F= flag says: F=T tempfails (4xx), F=R rejects (5xx),
// no flag lets the mail through. "With Levee stopped, each MTA does what its
// fail setting says" relies on the last three.
//
// Never skipped: without sendmail every test fails and says how to install it.
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import {
  ipv6LoopbackAvailable,
  parseMailq,
  sendmailAvailable,
  startSendmail,
  type SendmailInstance,
  type SendmailOptions,
} from './support/sendmail.js';
import { swaks, swaksAvailable, type SwaksOptions, type SwaksResult } from './support/swaks.js';

jest.setTimeout(90_000);

const INSTALL =
  'sendmail (extracted) / swaks are not available: run `bash scripts/install-test-deps.sh` (as root) before the MTA tests';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function requireTools(): void {
  if (!sendmailAvailable() || !swaksAvailable()) throw new Error(INSTALL);
}

/** A loopback port where nothing listens (bound once by us, then closed). */
function deadPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (typeof addr !== 'object' || addr === null) return reject(new Error('no address'));
      srv.close(() => resolve(addr.port));
    });
  });
}

const send = (mta: SendmailInstance, to: string, extra: Partial<SwaksOptions> = {}): Promise<SwaksResult> =>
  swaks({
    server: mta.smtpHost,
    port: mta.smtpPort,
    from: 'alice@example.net',
    to,
    helo: 'client.example.net',
    header: { Subject: `harness ${to}` },
    body: `harness message to ${to}\n`,
    timeoutMs: 30_000,
    ...extra,
  });

const queuedId = (r: SwaksResult): string | undefined => {
  for (const reply of r.replies) {
    const m = /^2\.0\.0 ([0-9A-Za-z]+) Message accepted for delivery/.exec(reply.text);
    if (m?.[1] !== undefined) return m[1];
  }
  return undefined;
};

/** The first reply that is not 2xx/3xx, i.e. where the MTA said no. */
const firstRefusal = (r: SwaksResult): { code: number; text: string } | undefined => r.replies.find((x) => x.code >= 400);

describe('sendmail test harness', () => {
  let mta: SendmailInstance | undefined;
  const started: SendmailInstance[] = [];

  const start = async (opts: SendmailOptions): Promise<SendmailInstance> => {
    const inst = await startSendmail(opts);
    started.push(inst);
    return inst;
  };
  const plain = (): SendmailInstance => {
    if (mta === undefined) throw new Error(INSTALL);
    return mta;
  };

  beforeAll(async () => {
    requireTools();
    mta = await start({ ipv6: true });
  });
  afterAll(async () => {
    await Promise.all(started.map((s) => s.stop()));
  });

  test('sendmail is extracted and has MILTER compiled in', async () => {
    requireTools();
    const out = await plain().command(['-d0.1', '-bt'], '');
    expect(out).toMatch(/^Version 8\.\d+/m);
    const flags = /Compiled with:([\s\S]*?)\n\n/.exec(out)?.[1] ?? '';
    expect(flags.split(/\s+/)).toContain('MILTER');
    // The instance resolved its own name from the private /etc/hosts (no DNS, no 60 s stall).
    expect(out).toMatch(/\$j = sendmail\.test\.invalid/);
  });

  test('the generated .mc/.cf: loopback-only daemons, no MSA, no milter', () => {
    const cf = readFileSync(plain().cfFile, 'utf8');
    const daemons = cf.split('\n').filter((l) => l.startsWith('O DaemonPortOptions='));
    expect(daemons).toEqual([
      `O DaemonPortOptions=Port=${plain().smtpPort}, Addr=127.0.0.1, Name=MTA-v4, Family=inet`,
      `O DaemonPortOptions=Port=${plain().smtpPort}, Addr=::1, Name=MTA-v6, Family=inet6`,
    ]);
    expect(cf).not.toMatch(/^O InputMailFilters=/m);
    expect(cf).not.toMatch(/^X/m);
  });

  test('plain delivery over 127.0.0.1', async () => {
    const before = plain().deliveredMessages().length;
    const r = await send(plain(), 'bob@example.org');
    expect(r.exitCode).toBe(0);
    expect(r.replies[0]?.code).toBe(220);
    expect(r.replies[0]?.text).toMatch(/^sendmail\.test\.invalid ESMTP levee-test/);
    const id = queuedId(r);
    expect(id).toBeDefined();
    const msgs = await plain().waitForDelivery(before + 1, 20_000);
    const mine = msgs.find((m) => m.includes('Subject: harness bob@example.org'));
    expect(mine).toBeDefined();
    expect(mine).toMatch(/^Delivered-To: bob@example\.org\n/);
    expect(mine).toMatch(/^Return-Path: <alice@example\.net>$/m);
    expect(mine).toMatch(new RegExp(`with ESMTP id ${String(id)}`));
    expect(mine).toMatch(/^harness message to bob@example\.org$/m);
    await plain().waitForLog(new RegExp(`${String(id)}: to=<bob@example\\.org>, .*mailer=sink, .*stat=Sent`), 10_000);
    expect(plain().traffic()).toMatch(/MAIL FROM:<alice@example\.net>/);
  });

  test('plain delivery over ::1, two recipients give two sink files', async () => {
    expect(ipv6LoopbackAvailable()).toBe(true); // this box has ::1 on lo; the ::1 test must not pass vacuously
    expect(plain().ipv6).toBe(true);
    const before = plain().deliveredMessages().length;
    const r = await send(plain(), 'carol@example.org,dave@example.com', { server: '::1' });
    expect(r.exitCode).toBe(0);
    const msgs = await plain().waitForDelivery(before + 2, 20_000);
    const mine = msgs.filter((m) => m.includes('Subject: harness carol@example.org,dave@example.com'));
    expect(mine.map((m) => /^Delivered-To: (.*)$/m.exec(m)?.[1]).sort()).toEqual(['carol@example.org', 'dave@example.com']);
    expect(mine[0]).toMatch(/^Received: from client\.example\.net \(localhost \[IPv6:0:0:0:0:0:0:0:1\]\)/m);
  });

  test('any 127/8 client may relay (RELAY_DOMAIN 127)', async () => {
    const before = plain().deliveredMessages().length;
    const r = await send(plain(), 'erin@example.org', { localInterface: '127.0.0.9' });
    expect(r.exitCode).toBe(0);
    const msgs = await plain().waitForDelivery(before + 1, 20_000);
    expect(msgs.some((m) => m.includes('Subject: harness erin@example.org') && m.includes('[127.0.0.9]'))).toBe(true);
  });

  test('queueIds/quarantined list quarantined (hf) messages; release delivers them', async () => {
    const inst = plain();
    const before = inst.deliveredMessages().length;
    // Queue a message without delivering it (-odq), then quarantine it by hand.
    await inst.command(['-odq', '-f', 'alice@example.net', 'frank@example.org'], 'Subject: harness quarantine\n\nhold me\n');
    let queued = await inst.queueIds();
    expect(queued).toHaveLength(1);
    const id = queued[0]?.id ?? '';
    expect(queued[0]).toEqual({ id, quarantined: false });
    await inst.command(['-Qheld by the harness test', `-qI${id}`]);
    expect(existsSync(`${inst.queueDir}/hf${id}`)).toBe(true);
    expect(existsSync(`${inst.queueDir}/qf${id}`)).toBe(false);
    queued = await inst.queueIds();
    expect(queued).toEqual([{ id, quarantined: true, reason: 'held by the harness test' }]);
    expect(await inst.quarantined()).toEqual([id]);
    await inst.release(id);
    const msgs = await inst.waitForDelivery(before + 1, 20_000);
    expect(msgs.some((m) => m.includes('Subject: harness quarantine') && m.includes('Delivered-To: frank@example.org'))).toBe(true);
    expect(await inst.queueIds()).toEqual([]);
  });

  test('parseMailq reads -bp and -bp -qQ output', () => {
    const normal = [
      '\t\t/q (2 requests)',
      '-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------',
      '6AO844V2005256        5 Tue Nov 24 08:04 a@example.org',
      '                 (Deferred: Connection refused by x)',
      '\t\t\t\t\t d@example.net',
      '6AO844dW005254*       5 Tue Nov 24 08:04 a@example.org',
      '\t\t\t\t\t b@example.net',
      '\t\tTotal requests: 2',
    ].join('\n');
    expect(parseMailq(normal, false)).toEqual([
      { id: '6AO844V2005256', quarantined: false, reason: 'Deferred: Connection refused by x' },
      { id: '6AO844dW005254', quarantined: false },
    ]);
    const quarantine = [
      '\t\t/q (1 request)',
      '-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------',
      '6AO844V2005256        5 Tue Nov 24 08:04 a@example.org',
      '     QUARANTINE: held for review',
      '\t\t\t\t\t d@example.net',
      '\t\tTotal requests: 1',
    ].join('\n');
    expect(parseMailq(quarantine, true)).toEqual([{ id: '6AO844V2005256', quarantined: true, reason: 'held for review' }]);
    expect(parseMailq('\t\t/q is empty\n\t\tTotal requests: 0\n', true)).toEqual([]);
  });

  describe('milter configured at a port where nothing listens (Levee stopped)', () => {
    let port = 0;
    let tempfail: SendmailInstance | undefined;
    let reject: SendmailInstance | undefined;
    let open: SendmailInstance | undefined;

    beforeAll(async () => {
      requireTools();
      port = await deadPort();
      const socket = `inet:${port}@127.0.0.1`;
      // Three instances side by side.
      [tempfail, reject, open] = await Promise.all([
        start({ milter: { socket, flags: 'T' } }),
        start({ milter: { socket, flags: 'R' } }),
        start({ milter: { socket } }),
      ]);
    });

    const inst = (i: SendmailInstance | undefined): SendmailInstance => {
      if (i === undefined) throw new Error(INSTALL);
      return i;
    };

    test('the .cf carries the INPUT_MAIL_FILTER line with the flag and timeouts', () => {
      expect(readFileSync(inst(tempfail).cfFile, 'utf8')).toMatch(
        new RegExp(`^Xlevee, S=inet:${port}@127\\.0\\.0\\.1, F=T, T=C:10s;S:20s;R:20s;E:1m$`, 'm'),
      );
      expect(readFileSync(inst(reject).cfFile, 'utf8')).toMatch(new RegExp(`^Xlevee, S=inet:${port}@127\\.0\\.0\\.1, F=R, T=`, 'm'));
      expect(readFileSync(inst(open).cfFile, 'utf8')).toMatch(new RegExp(`^Xlevee, S=inet:${port}@127\\.0\\.0\\.1, T=`, 'm'));
      expect(readFileSync(inst(open).cfFile, 'utf8')).toMatch(/^O Milter\.macros\.envfrom=i, \{auth_type\}, \{auth_authen\}/m);
      // Side by side: distinct ports and directories.
      const ports = new Set([inst(tempfail).smtpPort, inst(reject).smtpPort, inst(open).smtpPort, plain().smtpPort]);
      expect(ports.size).toBe(4);
    });

    test('F=T: the SMTP client gets a 4xx (tempfail) and nothing is delivered', async () => {
      const r = await send(inst(tempfail), 'tempfail@example.org');
      expect(r.exitCode).not.toBe(0);
      const refusal = firstRefusal(r);
      expect(refusal?.code).toBeGreaterThanOrEqual(400);
      expect(refusal?.code).toBeLessThan(500);
      expect(r.replies.some((x) => x.code >= 500)).toBe(false);
      // sendmail 8.17: 220 greeting, then "451 4.3.2 Please try again later" to MAIL FROM.
      expect(r.replies[0]?.code).toBe(220);
      expect(refusal).toEqual({ code: 451, text: '4.3.2 Please try again later' });
      await inst(tempfail).waitForLog(/Milter: initialization failed, temp failing commands/, 10_000);
      await inst(tempfail).waitForLog(/Milter \(levee\): error connecting to filter: Connection refused/, 10_000);
      await sleep(300);
      expect(inst(tempfail).deliveredMessages()).toEqual([]);
      expect(await inst(tempfail).queueIds()).toEqual([]);
    });

    test('F=R: the SMTP client gets a 5xx (reject) and nothing is delivered', async () => {
      const r = await send(inst(reject), 'reject@example.org');
      expect(r.exitCode).not.toBe(0);
      const refusal = firstRefusal(r);
      expect(refusal?.code).toBeGreaterThanOrEqual(500);
      expect(refusal?.code).toBeLessThan(600);
      expect(r.replies.some((x) => x.code >= 400 && x.code < 500)).toBe(false);
      // sendmail 8.17: the greeting itself is "554 ... not accepting messages".
      expect(r.replies[0]).toEqual({ code: 554, text: 'sendmail.test.invalid ESMTP not accepting messages' });
      await inst(reject).waitForLog(/Milter: initialization failed, rejecting commands/, 10_000);
      await inst(reject).waitForLog(/Milter \(levee\): error connecting to filter: Connection refused/, 10_000);
      await sleep(300);
      expect(inst(reject).deliveredMessages()).toEqual([]);
      expect(await inst(reject).queueIds()).toEqual([]);
    });

    test('no flag: the mail goes through as if there were no filter', async () => {
      const r = await send(inst(open), 'open@example.org');
      expect(r.exitCode).toBe(0);
      expect(firstRefusal(r)).toBeUndefined();
      const msgs = await inst(open).waitForDelivery(1, 20_000);
      expect(msgs[0]).toMatch(/^Subject: harness open@example\.org$/m);
      await inst(open).waitForLog(/Milter \(levee\): error connecting to filter: Connection refused/, 10_000);
    });
  });

  test('stop() ends the daemon, frees the port and removes the temp dir', async () => {
    requireTools();
    const t0 = Date.now();
    const inst = await start({});
    const startMs = Date.now() - t0;
    const pid = Number(/^started (\d+)$/.exec(readFileSync(`${inst.baseDir}/state`, 'utf8').trim())?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    const t1 = Date.now();
    await inst.stop();
    const stopMs = Date.now() - t1;
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(inst.baseDir)).toBe(false);
    await inst.stop(); // idempotent
    const r = await send(inst, 'gone@example.org', { timeoutMs: 5_000 });
    expect(r.exitCode).toBe(2); // connection refused
    expect(startMs).toBeLessThan(5_000);
    expect(stopMs).toBeLessThan(5_000);
    process.stdout.write(`sendmail harness: start ${startMs} ms, stop ${stopMs} ms\n`);
  });

  test('the instance stops itself and cleans up when its owner process dies', async () => {
    requireTools();
    const owner = spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
    const ownerPid = owner.pid;
    if (ownerPid === undefined) throw new Error('could not spawn the owner process');
    const inst = await start({ ownerPid });
    const pid = Number(/^started (\d+)$/.exec(readFileSync(`${inst.baseDir}/state`, 'utf8').trim())?.[1]);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    process.kill(ownerPid, 'SIGKILL');
    for (let i = 0; i < 100 && existsSync(inst.baseDir); i++) await sleep(50);
    expect(existsSync(inst.baseDir)).toBe(false);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});
