// The worm-years defences end to end through a real Postfix asking Levee via
// check_policy_service (smtpd_delay_reject = no, so Levee sees CONNECT too).
import { postfixAvailable, startPostfix, type PostfixInstance } from './support/postfix.js';
import { swaks, swaksAvailable, type SwaksResult } from './support/swaks.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

jest.setTimeout(90_000);

const INSTALL = 'Postfix/swaks are not installed: run `bash scripts/install-test-deps.sh` (as root) before the MTA tests';

const RECIPIENTS = `
@example.org
alice@example.org
bob@example.org
`;

// The built-in defence families, switched on and tuned (defences: section). The
// test clients are on 127.0.0.x, so the default exemption of loopback is off.
const CONFIG = `
recipients: { file: /etc/levee/recipients }   # the directory itself comes from the harness
defences:
  exempt: []
  # Connection floods (sendmail's ConnectionRateThrottle, per client).
  connection_floods: { per_client: { max: 3, window: 1m }, tarpit: 0s }
  # Dictionary attacks and Joe jobs: after 8 unknown recipients, refuse the rest.
  dictionary_attack: { max: 8, window: 10m }
  # Permanent means permanent.
  unknown_recipients: true
`;

describe('defences through a real Postfix', () => {
  let levee: TestDaemon | undefined;
  let postfix: PostfixInstance | undefined;

  beforeAll(async () => {
    if (!postfixAvailable() || !swaksAvailable()) throw new Error(INSTALL);
    levee = await startTestDaemon(CONFIG, { recipients: RECIPIENTS });
    const service = `check_policy_service inet:127.0.0.1:${String(levee.policyPort)}`;
    postfix = await startPostfix({
      mainCf: {
        smtpd_policy_service_default_action: 'DUNNO',
        smtpd_client_restrictions: service,
        smtpd_recipient_restrictions: `reject_unauth_destination, ${service}`,
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
  const send = (to: string | string[], from: string, localInterface: string): Promise<SwaksResult> =>
    swaks({ server: mta().smtpHost, port: mta().smtpPort, from, to, helo: 'mx.example.net', localInterface, body: 'bounce\n' });

  test('a storm of bounces to random unknown users gets 550 5.1.1, never 4xx; then the dictionary limit refuses the rest', async () => {
    // Eight bounces to random unknown users in one session (three connections in all
    // from this client, so the connection-rate rule stays out of it).
    const storm = Array.from({ length: 8 }, (_, i) => `nobody${i}x${Math.random().toString(36).slice(2, 8)}@example.org`);
    const r = await send(storm, '<>', '127.0.0.20');
    const codes = r.replies.filter((x) => x.code >= 400).map((x) => `${x.code} ${x.text.slice(0, 5)}`);
    expect(codes).toEqual(Array.from({ length: 8 }, () => '550 5.1.1'));
    // The ninth unknown recipient, and now even a real one, from the same client.
    const ninth = await send('nobody-more@example.org', '<>', '127.0.0.20');
    expect(ninth.replies.find((x) => x.code === 550)?.text).toMatch(/^5\.7\.1 .*Too many unknown recipients/);
    const known = await send('alice@example.org', 'someone@example.net', '127.0.0.20');
    expect(known.replies.find((x) => x.code === 550)?.text).toMatch(/^5\.7\.1 .*Too many unknown recipients/);
    // No 4xx anywhere in the storm: nobody is told to retry for days.
    expect(mta().maillog()).not.toMatch(/127\.0\.0\.20\]: 4\d\d /);
  });

  test('a real recipient from another client is delivered meanwhile', async () => {
    const r = await send('bob@example.org', 'friend@example.net', '127.0.0.21');
    expect(r.exitCode).toBe(0);
    await mta().waitForDeliveryTo('bob@example.org', 20_000);
  });

  test('a connection burst from one address is throttled with 421 while another client gets 250', async () => {
    const burst: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await swaks({ server: mta().smtpHost, port: mta().smtpPort, from: 'x@example.net', to: 'alice@example.org', localInterface: '127.0.0.30', quitAfter: 'RCPT' });
      burst.push(r.replies[0]?.code ?? 0);
    }
    expect(burst).toEqual([220, 220, 220, 421, 421, 421]);
    const other = await swaks({ server: mta().smtpHost, port: mta().smtpPort, from: 'x@example.net', to: 'alice@example.org', localInterface: '127.0.0.31' });
    expect(other.exitCode).toBe(0);
  });
});
