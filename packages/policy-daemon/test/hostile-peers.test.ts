// Hostile or broken peers on the policy and milter listeners: none of them may hurt the
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

/** Resolves true when `socket` closes within `ms`, false otherwise. */
function closesWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return Promise.race([new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))), sleep(ms).then(() => false)]);
}

describe('connection caps and the milter idle timeout', () => {
  let levee: TestDaemon | undefined;
  afterEach(async () => {
    await levee?.close();
    levee = undefined;
  });

  test('policy.max_connections: one connection too many is closed on arrival and counted; the open ones are still answered', async () => {
    levee = await startTestDaemon('policy: { max_connections: 5 }\nrules: []\n', { metrics: true });
    const client = await levee.client(); // 1 of 5
    const idle: Socket[] = [];
    for (let i = 0; i < 4; i++) idle.push(await open(levee.policyPort)); // 5 of 5
    const extra = await open(levee.policyPort);
    expect(await closesWithin(extra, 3000)).toBe(true);
    expect((await client.request(rcptRequest())).action).toBe('DUNNO');
    expect(await levee.metricsText()).toMatch(/^levee_connections_refused_total\{protocol="policy"\} 1$/m);
    expect(levee.logs.some((l) => l['msg'] === 'connection limit reached, closing new connections' && l['proto'] === 'policy')).toBe(true);
    // Room again once one goes away.
    idle[0]?.destroy();
    let answered: string | undefined;
    for (let i = 0; i < 50 && answered === undefined; i++) {
      await sleep(50);
      answered = await levee
        .client()
        .then((c) => c.request(rcptRequest()))
        .then((r) => r.action)
        .catch(() => undefined);
    }
    expect(answered).toBe('DUNNO');
    for (const s of idle) s.destroy();
  });

  test('milter.max_connections caps the milter listener the same way', async () => {
    levee = await startTestDaemon('milter: { max_connections: 2 }\nrules: []\n', { metrics: true, milter: true });
    const held = [await open(levee.milterPort), await open(levee.milterPort)];
    const extra = await open(levee.milterPort);
    expect(await closesWithin(extra, 3000)).toBe(true);
    expect(held.some((s) => s.destroyed)).toBe(false);
    expect(await levee.metricsText()).toMatch(/^levee_connections_refused_total\{protocol="milter"\} 1$/m);
    for (const s of held) s.destroy();
  });

  test('milter.idle_timeout: a silent peer and one that stops mid-packet are both closed; the metric returns to 0', async () => {
    levee = await startTestDaemon('milter: { idle_timeout: 1s }\nrules: []\n', { metrics: true, milter: true });
    const silent = await open(levee.milterPort);
    const halfPacket = await open(levee.milterPort);
    // A length of 1 MiB and three bytes of it; the rest never comes.
    halfPacket.write(Buffer.from([0x00, 0x10, 0x00, 0x00, 0x4c, 0x58, 0x2d]));
    expect(await closesWithin(silent, 8000)).toBe(true);
    expect(await closesWithin(halfPacket, 8000)).toBe(true);
    expect(levee.logs.filter((l) => l['msg'] === 'idle timeout, closing the milter connection')).toHaveLength(2);
    let gauge = '';
    for (let i = 0; i < 40; i++) {
      gauge = await levee.metricsText();
      if (/^levee_connections\{protocol="milter"\} 0$/m.test(gauge)) break;
      await sleep(50);
    }
    expect(gauge).toMatch(/^levee_connections\{protocol="milter"\} 0$/m);
  });
});
