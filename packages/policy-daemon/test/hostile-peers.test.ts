// Hostile or broken peers on the policy listener: none of them may hurt the
// daemon or delay other clients. Everything here is bounded in count and time.
import { connect, type Socket } from 'node:net';
import { encodePolicyAttributes } from '@levee/milter-proto';
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';

jest.setTimeout(60_000);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function open(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

async function timedAnswer(levee: TestDaemon): Promise<{ action: string; ms: number }> {
  const client = await levee.client();
  const t0 = performance.now();
  const action = (await client.request(rcptRequest())).action;
  return { action, ms: performance.now() - t0 };
}

describe('hostile peers on the policy listener', () => {
  let levee: TestDaemon;
  beforeEach(async () => {
    levee = await startTestDaemon('policy: { idle_timeout: 1s }\nrules: []\n');
  });
  afterEach(async () => {
    await levee.close();
  });

  test('a thousand idle connections: another client is still answered at once; idle ones are closed after idle_timeout', async () => {
    const idle: Socket[] = [];
    for (let i = 0; i < 1000; i++) idle.push(await open(levee.policyPort));
    const r = await timedAnswer(levee);
    expect(r.action).toBe('DUNNO');
    expect(r.ms).toBeLessThan(500);
    const closed = await Promise.race([
      Promise.all(idle.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve())))).then(() => true),
      sleep(10_000).then(() => false),
    ]);
    expect(closed).toBe(true);
  });

  test('a peer that pipelines requests and never reads the replies does not delay other clients', async () => {
    const peer = await open(levee.policyPort);
    peer.pause(); // never read
    const request = encodePolicyAttributes(rcptRequest());
    let written = 0;
    // Write for at most 3 s or until the kernel buffers are full both ways.
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && written < 200_000) {
      if (!peer.write(request)) {
        const drained = await Promise.race([new Promise<boolean>((resolve) => peer.once('drain', () => resolve(true))), sleep(500).then(() => false)]);
        if (!drained) break;
      }
      written++;
    }
    // On loopback the kernel buffers megabytes of replies before the daemon's writes
    // block (then it stops reading that peer); within this bounded run the peer gets
    // far, and what matters is that nobody else waits for it.
    expect(written).toBeGreaterThan(0);
    const r = await timedAnswer(levee);
    expect(r.action).toBe('DUNNO');
    expect(r.ms).toBeLessThan(1000);
    peer.destroy();
  });

  test('a peer that dribbles a request a few bytes at a time is answered once the request is whole', async () => {
    const peer = await open(levee.policyPort);
    const request = encodePolicyAttributes({ request: 'smtpd_access_policy', protocol_state: 'RCPT', client_address: '192.0.2.1' });
    const reply = new Promise<string>((resolve) => peer.once('data', (d: Buffer) => resolve(d.toString())));
    for (let i = 0; i < request.length; i += 8) {
      peer.write(request.subarray(i, i + 8));
      await sleep(20);
    }
    expect(await reply).toBe('action=DUNNO\n\n');
    peer.destroy();
  });

  test('connections that come and go by the thousand leave no trace', async () => {
    for (let i = 0; i < 500; i++) {
      const s = await open(levee.policyPort);
      if (i % 2 === 0) s.write('request=smtpd_access_policy\nprotocol_state=RC');
      s.destroy();
    }
    for (let i = 0; i < 100 && levee.daemon.metrics !== undefined; i++) {
      const text = await levee.daemon.metrics.registry.getSingleMetricAsString('levee_connections');
      if (/levee_connections\{protocol="policy"\} 0/.test(text)) break;
      await sleep(50);
    }
    expect(await levee.daemon.metrics.registry.getSingleMetricAsString('levee_connections')).toMatch(/levee_connections\{protocol="policy"\} 0/);
    expect((await timedAnswer(levee)).action).toBe('DUNNO');
  });
});
