// Outbreak mode through the policy listener: the tier from (injected) load
// readings refuses new mail, slows answers down, and switches rules on.
import type { LoadSources } from '../src/load-monitor.js';
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';

const CONFIG = `
load:
  sample_interval: 100ms
  hold: 0s
  delay: 300ms
  thresholds:
    load_per_cpu: { delay: 2, shed: 4, refuse: 8 }
rules:
  - name: strict-in-outbreak
    stage: rcpt
    match: { tier: [shed, refuse], sender: ["@bulk.example"] }
    action: tempfail
    text: "Busy with an outbreak, bulk mail later"
  - name: tarpit-suspects
    stage: rcpt
    match: { helo_name: ["/^unknown/"] }
    action: continue
    add_header: "X-Tarpit: yes"
    delay: 400ms
`;

describe('load tiers through the policy listener', () => {
  let levee: TestDaemon;
  const load = { value: 0.1 };
  const sources: LoadSources = {
    loadPerCpu: () => load.value,
    eventLoopLagMs: () => 0,
    freeBytes: () => Promise.resolve(undefined),
    countFiles: () => Promise.resolve(undefined),
  };
  beforeEach(async () => {
    load.value = 0.1;
    levee = await startTestDaemon(CONFIG, { metrics: true, loadSources: sources });
  });
  afterEach(async () => {
    await levee.close();
  });

  const timed = async (request: Record<string, string>): Promise<{ action: string; ms: number }> => {
    const client = await levee.client();
    const t0 = performance.now();
    const action = (await client.request(request)).action;
    return { action, ms: performance.now() - t0 };
  };
  const tierTo = async (value: number, tier: string): Promise<void> => {
    load.value = value;
    await levee.daemon.load.sample();
    expect(levee.daemon.load.tier).toBe(tier);
  };

  test('normal: answers at once, outbreak rules stay off', async () => {
    const r = await timed(rcptRequest({ sender: 'a@bulk.example' }));
    expect(r.action).toBe('DUNNO');
    expect(r.ms).toBeLessThan(250);
  });

  test('delay tier: the answer is held back by load.delay', async () => {
    await tierTo(3, 'delay');
    const r = await timed(rcptRequest());
    expect(r.action).toBe('DUNNO');
    expect(r.ms).toBeGreaterThanOrEqual(290);
  });

  test('shed tier: rules restricted to it switch on', async () => {
    await tierTo(5, 'shed');
    expect((await timed(rcptRequest({ sender: 'a@bulk.example' }))).action).toBe('450 4.7.1 Busy with an outbreak, bulk mail later');
    expect((await timed(rcptRequest({ sender: 'a@friend.example' }))).action).toBe('DUNNO');
  });

  test('refuse tier: new mail gets 4.3.2 (421 at CONNECT, 451 later), messages under way finish; logged and exported', async () => {
    await tierTo(9, 'refuse');
    expect((await timed(rcptRequest({ protocol_state: 'CONNECT' }))).action).toBe('421 4.3.2 System overloaded, try again later');
    expect((await timed(rcptRequest())).action).toBe('451 4.3.2 System overloaded, try again later');
    expect((await timed(rcptRequest({ protocol_state: 'END-OF-MESSAGE' }))).action).toBe('DUNNO');
    expect(levee.logs.some((l) => l['msg'] === 'load tier raised' && l['tier'] === 'refuse' && l['cause'] === 'loadPerCpu')).toBe(true);
    expect(await levee.metricsText()).toMatch(/levee_load_tier 3/);
    // And back down when the load is gone (hold 0s here: one step per sample).
    load.value = 0.1;
    for (const tier of ['shed', 'delay', 'normal']) {
      await levee.daemon.load.sample();
      expect(levee.daemon.load.tier).toBe(tier);
    }
  });

  test('a rule delay tarpits only the requests it decides', async () => {
    const slow = await timed(rcptRequest({ helo_name: 'unknown-host' }));
    expect(slow.action).toBe('PREPEND X-Tarpit: yes');
    expect(slow.ms).toBeGreaterThanOrEqual(390);
    expect((await timed(rcptRequest())).ms).toBeLessThan(250);
  });
});

describe('load tiers through the milter listener', () => {
  const load = { value: 0.1 };
  const sources: LoadSources = {
    loadPerCpu: () => load.value,
    eventLoopLagMs: () => 0,
    freeBytes: () => Promise.resolve(undefined),
    countFiles: () => Promise.resolve(undefined),
  };
  const config = `
load:
  hold: 0s
  delay: 300ms
  thresholds:
    load_per_cpu: { delay: 2, shed: 4, refuse: 8 }
rules:
  - name: worm
    stage: eom
    match: { attachment_name: [".pif"] }
    action: discard
`;
  const worm = ['--B', 'Content-Type: application/octet-stream; name="x.pif"', 'Content-Disposition: attachment; filename="x.pif"', '', 'TVo=', '--B--', ''].join('\r\n');

  test('shed skips content scanning (the attachment is not seen); delay holds the CONNECT answer back', async () => {
    const levee = await startTestDaemon(config, { milter: true, loadSources: sources });
    const { connect } = await import('node:net');
    const { createMilterClient } = await import('@levee/milter-proto');
    const session = async () => {
      const socket = connect({ host: '127.0.0.1', port: levee.milterPort });
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      const client = createMilterClient(socket, { timeoutMs: 5000 });
      await client.negotiate();
      const t0 = performance.now();
      await client.connect({ hostname: '[192.0.2.5]', family: '4', port: 1, address: '192.0.2.5' });
      return { client, connectMs: performance.now() - t0 };
    };
    const sendWorm = async (client: Awaited<ReturnType<typeof session>>['client']): Promise<string> => {
      await client.mail('<a@example.net>');
      await client.rcpt('<b@example.org>');
      await client.header('Content-Type', 'multipart/mixed; boundary="B"');
      await client.eoh();
      await client.body(Buffer.from(worm));
      return (await client.eom()).reply.type;
    };
    try {
      const normal = await session();
      expect(await sendWorm(normal.client)).toBe('DISCARD');
      normal.client.close();

      load.value = 5;
      await levee.daemon.load.sample();
      expect(levee.daemon.load.tier).toBe('shed');
      const shed = await session();
      expect(shed.connectMs).toBeGreaterThanOrEqual(290);
      expect(await sendWorm(shed.client)).toBe('CONTINUE');
      shed.client.close();
    } finally {
      load.value = 0.1;
      await levee.close();
    }
  });
});
