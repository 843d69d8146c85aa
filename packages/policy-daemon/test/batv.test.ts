// BATV end to end in the daemon: the milter signs outbound envelope senders of
// our domains (CHGFROM); bounces to our addresses are judged by their tag.
import { connect } from 'node:net';
import { createMilterClient } from '@levee/milter-proto';
import { batvSign } from '@levee/rules';
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';

const KEY = { id: 3, secret: 'a-long-enough-batv-secret' };
const CONFIG = `
batv:
  secret_file: /etc/levee/batv.key
  key_id: 3
  domains: [example.org]
  sign_clients: ["192.0.2.0/24"]
rules:
  - name: batv-bounce
    stage: rcpt
    match: { null_sender: true, batv: [unsigned, bad-signature, expired, unknown-key] }
    action: reject
    code: 550
    enhanced_code: "5.7.1"
    text: "Bounce to an address we never used as a sender"
`;

describe('BATV', () => {
  let levee: TestDaemon;
  beforeEach(async () => {
    levee = await startTestDaemon(CONFIG, { milter: true, batvKey: KEY });
  });
  afterEach(async () => {
    await levee.close();
  });

  async function sendFrom(client: { address: string; sasl?: string }, sender: string) {
    const socket = connect({ host: '127.0.0.1', port: levee.milterPort });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const milter = createMilterClient(socket, { timeoutMs: 5000 });
    try {
      await milter.negotiate();
      await milter.connect({ hostname: `[${client.address}]`, family: '4', port: 1, address: client.address });
      await milter.mail(`<${sender}>`, [], { '{auth_authen}': client.sasl ?? '', '{auth_type}': client.sasl === undefined ? '' : 'PLAIN' });
      await milter.rcpt('<friend@other.example>');
      await milter.header('Subject', 'hi');
      await milter.eoh();
      await milter.body(Buffer.from('hello\r\n'));
      return await milter.eom();
    } finally {
      milter.close();
    }
  }

  test('outbound mail of our domain is signed by CHGFROM: authenticated clients and sign_clients networks only', async () => {
    const signed = await sendFrom({ address: '198.51.100.5', sasl: 'alice' }, 'alice@example.org');
    const from = signed.modifications.find((m) => m.type === 'CHGFROM');
    expect(from).toMatchObject({ type: 'CHGFROM', from: expect.stringMatching(/^<prvs=3\d{3}[0-9a-f]{6}=alice@example\.org>$/) }) ;
    const local = await sendFrom({ address: '192.0.2.25' }, 'bob@example.org');
    expect(local.modifications.some((m) => m.type === 'CHGFROM')).toBe(true);
    const stranger = await sendFrom({ address: '198.51.100.5' }, 'carol@example.org');
    expect(stranger.modifications.some((m) => m.type === 'CHGFROM')).toBe(false);
    const otherDomain = await sendFrom({ address: '198.51.100.5', sasl: 'dave' }, 'dave@elsewhere.example');
    expect(otherDomain.modifications.some((m) => m.type === 'CHGFROM')).toBe(false);
  });

  test('a bounce to an unsigned address of ours is refused; to a validly signed one it passes; other domains are not judged', async () => {
    const client = await levee.client();
    expect((await client.request(rcptRequest({ sender: '', recipient: 'alice@example.org' }))).action).toBe(
      '550 5.7.1 Bounce to an address we never used as a sender',
    );
    const tagged = batvSign('alice@example.org', KEY, levee.clock, 7);
    expect((await client.request(rcptRequest({ sender: '', recipient: tagged }))).action).toBe('DUNNO');
    const forged = tagged.replace(/=alice@/, '=mallory@');
    expect((await client.request(rcptRequest({ sender: '', recipient: forged }))).action).toMatch(/^550 5\.7\.1/);
    expect((await client.request(rcptRequest({ sender: '', recipient: 'someone@other.example' }))).action).toBe('DUNNO');
    // Ordinary (non-bounce) mail to unsigned addresses is none of BATV's business.
    expect((await client.request(rcptRequest({ sender: 'x@other.example', recipient: 'alice@example.org' }))).action).toBe('DUNNO');
  });
});

describe('BATV through a real Postfix milter', () => {
  test('mail from our host leaves with a signed Return-Path; a bounce to an unsigned address gets 550', async () => {
    const { postfixAvailable, startPostfix } = await import('./support/postfix.js');
    const { swaks } = await import('./support/swaks.js');
    if (!postfixAvailable()) throw new Error('Postfix is not installed: run `bash scripts/install-test-deps.sh`');
    const levee = await startTestDaemon(CONFIG.replace('sign_clients: ["192.0.2.0/24"]', 'sign_clients: ["127.0.0.0/8"]'), { milter: true, batvKey: KEY });
    const postfix = await startPostfix({ mainCf: { smtpd_milters: `inet:127.0.0.1:${String(levee.milterPort)}`, milter_default_action: 'tempfail', smtpd_recipient_restrictions: 'reject_unauth_destination' } });
    try {
      const out = await swaks({ server: postfix.smtpHost, port: postfix.smtpPort, from: 'alice@example.org', to: 'friend@other.example', helo: 'ws.example.org' });
      expect(out.exitCode).toBe(0);
      const delivered = await postfix.waitForDelivery(1, 20_000);
      expect(delivered[0]).toMatch(/^Return-Path: <prvs=3\d{3}[0-9a-f]{6}=alice@example\.org>$/m);
      const bounce = await swaks({ server: postfix.smtpHost, port: postfix.smtpPort, from: '<>', to: 'alice@example.org', helo: 'mx.other.example' });
      expect(bounce.replies.find((r) => r.code === 550)?.text).toMatch(/^5\.7\.1 Bounce to an address we never used as a sender/);
    } finally {
      await postfix.stop();
      await levee.close();
    }
  }, 60_000);
});
