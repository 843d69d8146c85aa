// End to end: a real Postfix (Debian package, private instance on loopback) asks
// Levee through check_policy_service at every SMTP stage; swaks sends real mail.
// Levee runs in-process with its clock held still, so rate windows never slide
// under the test.
import { ipv6LoopbackAvailable, postfixAvailable, startPostfix, type PostfixInstance } from './support/postfix.js';
import { swaks, swaksAvailable, type SwaksResult } from './support/swaks.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

jest.setTimeout(60_000);

const INSTALL = 'Postfix/swaks are not installed: run `bash scripts/install-test-deps.sh` (as root) before the MTA tests';

const CONFIG = `
rules:
  - name: blocked-client
    description: a connecting address we refuse outright, at CONNECT
    stage: connect
    match: { client_address: ["127.0.0.66"] }
    action: reject
    code: 554
    enhanced_code: "5.7.1"
    text: "Connections from your address are refused"
  - name: no-such-user
    stage: rcpt
    match: { recipient: ["/^reject@/"] }
    action: reject
    code: 550
    enhanced_code: "5.1.1"
    text: "No such user here"
  - name: hold-suspicious
    stage: rcpt
    match: { recipient: ["hold@example.org"] }
    action: quarantine
    text: "held for review by levee"
  - name: drop-worm
    stage: rcpt
    match: { recipient: ["discard@example.org"] }
    action: discard
    text: "dropped by levee"
  - name: per-client-recipients
    stage: rcpt
    match: { recipient: ["@limited.example"] }
    limit: { key: "{client_address}", max: 2, window: 10m, count: recipients }
    action: tempfail
    code: 450
    enhanced_code: "4.7.1"
    text: "Too many recipients from your address, slow down"
`;

const queuedId = (r: SwaksResult): string | undefined => {
  for (const reply of r.replies) {
    const m = /queued as ([0-9A-Za-z]+)/.exec(reply.text);
    if (m?.[1] !== undefined) return m[1];
  }
  return undefined;
};
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('real Postfix asking Levee via check_policy_service', () => {
  let levee: TestDaemon | undefined;
  let postfix: PostfixInstance | undefined;

  beforeAll(async () => {
    if (!postfixAvailable() || !swaksAvailable()) throw new Error(INSTALL);
    levee = await startTestDaemon(CONFIG);
    const service = `check_policy_service inet:127.0.0.1:${String(levee.policyPort)}`;
    postfix = await startPostfix({
      ipv6: true,
      mainCf: {
        smtpd_policy_service_default_action: 'DUNNO',
        smtpd_policy_service_try_limit: '1',
        smtpd_policy_service_timeout: '5s',
        smtpd_client_restrictions: service,
        smtpd_helo_restrictions: service,
        smtpd_sender_restrictions: service,
        smtpd_recipient_restrictions: `reject_unauth_destination, ${service}`,
        smtpd_data_restrictions: service,
        smtpd_end_of_data_restrictions: service,
      },
    });
  });
  afterAll(async () => {
    await postfix?.stop();
    await levee?.close();
  });

  const decisions = (): Record<string, unknown>[] => (levee?.logs ?? []).filter((l) => l['msg'] === 'decision');
  const mta = (): PostfixInstance => {
    if (postfix === undefined) throw new Error(INSTALL);
    return postfix;
  };
  const send = (to: string | string[], options: { from?: string; localInterface?: string; server?: string } = {}): Promise<SwaksResult> =>
    swaks({
      server: options.server ?? mta().smtpHost,
      port: mta().smtpPort,
      from: options.from ?? 'alice@example.net',
      to,
      helo: 'client.example.net',
      header: { Subject: `levee e2e ${String(to)}` },
      body: `levee e2e message to ${String(to)}\n`,
      ...(options.localInterface === undefined ? {} : { localInterface: options.localInterface }),
    });

  test('mail no rule objects to gets 250 and is delivered; Levee decided at every stage', async () => {
    const r = await send('friend@example.org', { localInterface: '127.0.0.10' });
    expect(r.exitCode).toBe(0);
    expect(queuedId(r)).toBeDefined();
    const delivered = await mta().waitForDeliveryTo('friend@example.org', 20_000);
    expect(delivered.some((m) => m.includes('Subject: levee e2e friend@example.org'))).toBe(true);
    const stages = new Set(decisions().filter((l) => l['client'] === '127.0.0.10').map((l) => l['stage']));
    expect([...stages].sort()).toEqual(['connect', 'data', 'eom', 'helo', 'mail', 'rcpt']);
  });

  test('a reject rule gives the SMTP client its 5xx with code, enhanced code and text', async () => {
    const r = await send('reject@example.org', { localInterface: '127.0.0.11' });
    const rcpt = r.replies.find((x) => x.code === 550);
    expect(rcpt?.text).toMatch(/^5\.1\.1 .*No such user here/);
    expect(r.exitCode).not.toBe(0);
  });

  test('a CONNECT-stage reject replaces the greeting', async () => {
    const r = await send('friend@example.org', { localInterface: '127.0.0.66' });
    expect(r.replies[0]?.code).toBe(554);
    expect(r.replies[0]?.text).toMatch(/5\.7\.1 .*Connections from your address are refused/);
  });

  test('a rate limit gives 4xx once it trips, only to the client over it', async () => {
    const first = await send(['a@limited.example', 'b@limited.example'], { localInterface: '127.0.0.12' });
    expect(first.exitCode).toBe(0);
    const over = await send('c@limited.example', { localInterface: '127.0.0.12' });
    const rcpt = over.replies.find((x) => x.code === 450);
    expect(rcpt?.text).toMatch(/^4\.7\.1 .*Too many recipients from your address, slow down/);
    const otherClient = await send('d@limited.example', { localInterface: '127.0.0.13' });
    expect(otherClient.exitCode).toBe(0);
  });

  test('quarantine puts the message in the hold queue, where it stays after a flush', async () => {
    const r = await send('hold@example.org', { localInterface: '127.0.0.14' });
    expect(r.exitCode).toBe(0);
    const id = queuedId(r);
    expect(id).toBeDefined();
    let held: string[] = [];
    for (let i = 0; i < 100 && (id === undefined || !held.includes(id)); i++) {
      held = await mta().holdQueue();
      if (id !== undefined && !held.includes(id)) await sleep(50);
    }
    expect(held).toContain(id);
    await mta().flush();
    await sleep(500);
    expect(mta().deliveredTo('hold@example.org')).toEqual([]);
    expect(mta().maillog()).toMatch(/hold: RCPT from .*<hold@example\.org>: .*held for review by levee/);
  });

  test('discard answers 250 but the message is never delivered', async () => {
    const r = await send('discard@example.org', { localInterface: '127.0.0.15' });
    expect(r.exitCode).toBe(0);
    const id = queuedId(r);
    expect(id).toBeDefined();
    // smtpd marks the transaction discarded; cleanup drops the message, so it
    // never reaches the queue manager and nothing is delivered or bounced.
    expect(mta().maillog()).toMatch(/discard: RCPT from unknown\[127\.0\.0\.15\]: <discard@example\.org>: .*dropped by levee/);
    await mta().flush();
    await sleep(500);
    expect(mta().maillog()).not.toMatch(new RegExp(`${String(id)}: from=`));
    expect(mta().deliveredTo('discard@example.org')).toEqual([]);
    expect(await mta().queueIds()).not.toContainEqual(expect.objectContaining({ id }));
  });

  test('over IPv6: the client address reaches the rules, a rate limit trips per address', async () => {
    expect(ipv6LoopbackAvailable()).toBe(true);
    expect(mta().ipv6).toBe(true);
    const ok = await send(['e@limited.example', 'f@limited.example'], { server: '::1' });
    expect(ok.exitCode).toBe(0);
    const over = await send('g@limited.example', { server: '::1' });
    expect(over.replies.find((x) => x.code === 450)?.text).toMatch(/4\.7\.1/);
    expect(decisions().some((l) => l['client'] === '::1' && l['rule'] === 'per-client-recipients')).toBe(true);
  });

  test('with Levee stopped, Postfix applies smtpd_policy_service_default_action (DUNNO: mail flows)', async () => {
    await levee?.close();
    levee = undefined;
    const r = await send('reject@example.org', { localInterface: '127.0.0.16' });
    expect(r.exitCode).toBe(0);
    await mta().waitForDeliveryTo('reject@example.org', 20_000);
    expect(mta().maillog()).toMatch(/problem talking to server 127\.0\.0\.1:\d+/);
  });
});
