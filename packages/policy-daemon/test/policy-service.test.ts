import { connect } from 'node:net';
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';

const CONFIG = `
rules:
  - name: blocked-network
    stage: [connect, rcpt]
    match: { client_address: ["192.0.2.0/24", "2001:db8:bad::/48"] }
    action: reject
    code: 550
    enhanced_code: "5.7.1"
    text: "Your network is blocked"
  - name: quarantine-me
    stage: rcpt
    match: { recipient: ["hold@example.org"] }
    action: quarantine
    text: "held by levee"
  - name: drop-me
    stage: rcpt
    match: { recipient: ["drop@example.org"] }
    action: discard
  - name: shadow-rule
    stage: rcpt
    mode: warn
    match: { sender: ["@shadow.example"] }
    action: reject
  - name: per-client
    stage: rcpt
    limit: { key: "{client_address}", max: 3, window: 60s }
    action: tempfail
    code: 450
    enhanced_code: "4.7.1"
    text: "Too many recipients, slow down"
`;

describe('policy service over loopback', () => {
  let levee: TestDaemon;
  beforeEach(async () => {
    levee = await startTestDaemon(CONFIG, { metrics: true });
  });
  afterEach(async () => {
    await levee.close();
  });

  test('a request no rule decides gets DUNNO', async () => {
    const client = await levee.client();
    expect((await client.request(rcptRequest())).action).toBe('DUNNO');
  });

  test('reject rules answer their full 5xx reply, for IPv4 and for an IPv6 /48', async () => {
    const client = await levee.client();
    expect((await client.request(rcptRequest({ client_address: '192.0.2.44' }))).action).toBe('550 5.7.1 Your network is blocked');
    expect((await client.request(rcptRequest({ client_address: '2001:db8:bad:1::25' }))).action).toBe('550 5.7.1 Your network is blocked');
    expect((await client.request(rcptRequest({ protocol_state: 'CONNECT', client_address: '192.0.2.1' }))).action).toBe(
      '550 5.7.1 Your network is blocked',
    );
  });

  test('quarantine is HOLD and discard is DISCARD', async () => {
    const client = await levee.client();
    expect((await client.request(rcptRequest({ recipient: 'hold@example.org' }))).action).toBe('HOLD held by levee');
    expect((await client.request(rcptRequest({ recipient: 'drop@example.org' }))).action).toMatch(/^DISCARD\b/);
  });

  test('a rate limit tempfails the (max+1)th request in the window, and lets mail through once the window has passed', async () => {
    const client = await levee.client();
    const other = rcptRequest({ client_address: '203.0.113.9' });
    for (let i = 0; i < 3; i++) expect((await client.request(rcptRequest())).action).toBe('DUNNO');
    expect((await client.request(rcptRequest())).action).toBe('450 4.7.1 Too many recipients, slow down');
    // Another client has its own counter.
    expect((await client.request(other)).action).toBe('DUNNO');
    levee.clock += 61_000;
    expect((await client.request(rcptRequest())).action).toBe('DUNNO');
    const limited = levee.logs.find((l) => l['action'] === 'tempfail');
    expect(limited).toMatchObject({ rule: 'per-client', counter: { rule: 'per-client', count: 4, limit: 3, windowMs: 60_000 } });
  });

  test('warn-mode rules never act but are logged and counted', async () => {
    const client = await levee.client();
    expect((await client.request(rcptRequest({ sender: 'x@shadow.example' }))).action).toBe('DUNNO');
    const line = levee.logs.find((l) => l['msg'] === 'decision' && l['sender'] === 'x@shadow.example');
    expect(line?.['warn']).toEqual([expect.objectContaining({ rule: 'shadow-rule', action: 'reject' })]);
    expect(await levee.metricsText()).toMatch(/levee_rule_hits_total\{rule="shadow-rule",action="reject",mode="warn"\} 1/);
  });

  test('one JSON decision line per request, with the facts a postmaster reads', async () => {
    const client = await levee.client();
    await client.request(rcptRequest({ client_address: '192.0.2.5' }));
    const decisions = levee.logs.filter((l) => l['msg'] === 'decision');
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({
      proto: 'policy',
      stage: 'rcpt',
      client: '192.0.2.5',
      helo: 'client.example.net',
      sender: 'alice@example.net',
      rcpt: 'bob@example.org',
      action: 'reject',
      rule: 'blocked-network',
      reply: '550 5.7.1 Your network is blocked',
    });
    expect(typeof decisions[0]?.['ms']).toBe('number');
  });

  test('requests pipelined on one connection are answered in order', async () => {
    const client = await levee.client();
    const replies = await Promise.all([
      client.request(rcptRequest()),
      client.request(rcptRequest({ recipient: 'hold@example.org' })),
      client.request(rcptRequest({ client_address: '192.0.2.1' })),
      client.request(rcptRequest({ recipient: 'drop@example.org' })),
    ]);
    expect(replies.map((r) => r.action.split(' ')[0])).toEqual(['DUNNO', 'HOLD', '550', 'DISCARD']);
  });

  test('the null sender after MAIL is a fact rules can match', async () => {
    await levee.close();
    levee = await startTestDaemon(`
rules:
  - name: bounces
    stage: rcpt
    match: { null_sender: true }
    action: reject
    text: "No bounces here"
`);
    const client = await levee.client();
    expect((await client.request(rcptRequest({ sender: '' }))).action).toBe('550 5.7.1 No bounces here');
    expect((await client.request(rcptRequest())).action).toBe('DUNNO');
  });

  test('a malformed request closes the connection without a reply and is counted; the daemon keeps serving', async () => {
    const raw = connect({ host: '127.0.0.1', port: levee.policyPort });
    const received: Buffer[] = [];
    raw.on('data', (d: Buffer) => received.push(d));
    raw.write('request=smtpd_access_policy\nthis line has no equals sign\n\n');
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
    expect(Buffer.concat(received).length).toBe(0);
    expect(await levee.metricsText()).toMatch(/levee_protocol_errors_total\{protocol="policy",code="missing-equals"\} 1/);
    const client = await levee.client();
    expect((await client.request(rcptRequest())).action).toBe('DUNNO');
  });

  test('an oversized line is refused before it is buffered whole', async () => {
    const raw = connect({ host: '127.0.0.1', port: levee.policyPort });
    raw.on('error', () => undefined);
    raw.write(`sender=${'a'.repeat(20_000)}`);
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
    expect(await levee.metricsText()).toMatch(/levee_protocol_errors_total\{protocol="policy",code="line-too-long"\} 1/);
  });

  test('a request that is not smtpd_access_policy gets the fail action (DUNNO by default), not silence', async () => {
    const client = await levee.client();
    expect((await client.request({ request: 'something_else', protocol_state: 'RCPT' })).action).toBe('DUNNO');
    expect((await client.request(rcptRequest({ protocol_state: 'BOGUS' }))).action).toBe('DUNNO');
    expect(await levee.metricsText()).toMatch(/levee_protocol_errors_total\{protocol="policy",code="bad-request"\} 2/);
  });

  test('metrics expose requests by stage and action and the decision latency histogram, with no address in any label', async () => {
    const client = await levee.client();
    await client.request(rcptRequest());
    await client.request(rcptRequest({ client_address: '192.0.2.9' }));
    const text = await levee.metricsText();
    expect(text).toMatch(/levee_requests_total\{protocol="policy",stage="rcpt",action="continue"\} 1/);
    expect(text).toMatch(/levee_requests_total\{protocol="policy",stage="rcpt",action="reject"\} 1/);
    expect(text).toMatch(/levee_decision_duration_seconds_bucket\{le="0.0001",protocol="policy"\} \d+/);
    expect(text).toMatch(/levee_decision_duration_seconds_count\{protocol="policy"\} 2/);
    expect(text).toMatch(/levee_counter_keys \d+/);
    const labelValues = [...text.matchAll(/\{([^}]*)\}/g)].map((m) => m[1] ?? '');
    for (const labels of labelValues) expect(labels).not.toMatch(/198\.51\.100|192\.0\.2|example\.(net|org)/);
  });
});

describe('add_header on the policy path', () => {
  test('a tagging rule becomes PREPEND, except at END-OF-MESSAGE where Postfix refuses it', async () => {
    const levee = await startTestDaemon(`
rules:
  - name: tag
    match: { sender: ["@tagged.example"] }
    action: continue
    add_header: "X-Levee-Tag: external"
`);
    try {
      const client = await levee.client();
      expect((await client.request(rcptRequest({ sender: 'a@tagged.example' }))).action).toBe('PREPEND X-Levee-Tag: external');
      expect((await client.request(rcptRequest({ sender: 'a@tagged.example', protocol_state: 'END-OF-MESSAGE' }))).action).toBe('DUNNO');
      expect((await client.request(rcptRequest())).action).toBe('DUNNO');
    } finally {
      await levee.close();
    }
  });
});

describe('fail action', () => {
  test('when deciding throws, the configured fail action is answered and counted', async () => {
    const levee = await startTestDaemon(
      `
policy: { fail_action: tempfail }
rules:
  - name: per-client
    stage: rcpt
    limit: { key: "{client_address}", max: 3, window: 60s }
    action: tempfail
`,
      { metrics: true },
    );
    try {
      const broken = levee.daemon.store;
      broken.apply = () => {
        throw new Error('store exploded');
      };
      const client = await levee.client();
      expect((await client.request(rcptRequest())).action).toBe('451 4.3.0 Temporary policy failure, try again later');
      expect(await levee.metricsText()).toMatch(/levee_internal_errors_total\{protocol="policy"\} 1/);
      expect(levee.logs.some((l) => l['msg'] === 'decision failed, answering the fail action' && l['err'] === 'Error: store exploded')).toBe(true);
    } finally {
      await levee.close();
    }
  });
});
