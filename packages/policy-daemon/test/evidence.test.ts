// Evidence per offending IP, and `levee report` (summary and RFC 5965 ARF)
// against a daemon that just refused a worm through the milter.
import { connect } from 'node:net';
import { createMilterClient } from '@levee/milter-proto';
import type { Facts } from '@levee/rules';
import { createEvidenceStore, receivedIp } from '../src/evidence.js';
import { runCli } from './support/cli.js';
import { startTestDaemon } from './support/daemon.js';

jest.setTimeout(30_000);

describe('evidence store', () => {
  const facts = (address: string, extra: Partial<Facts> = {}): Facts => ({ protocol: 'policy', stage: 'rcpt', clientAddress: address, ...extra });

  test('records only offending decisions, counts by action and rule, keeps bounded samples', () => {
    const store = createEvidenceStore(10);
    store.note(facts('192.0.2.1'), { action: 'continue' }, 1);
    store.note(facts('192.0.2.1'), { action: 'accept', rule: 'a' }, 1);
    store.note(facts('192.0.2.1'), { action: 'tempfail', rule: 'fail-action' }, 1);
    expect(store.get('192.0.2.1')).toBeUndefined();
    for (let i = 0; i < 30; i++) store.note(facts('192.0.2.1', { sender: `x${i}@forged.example` }), { action: 'reject', rule: 'r' }, 100 + i);
    const e = store.get('192.0.2.1');
    expect(e).toMatchObject({ firstSeen: 100, lastSeen: 129, actions: { reject: 30 }, rules: { r: 30 } });
    expect(e?.samples).toHaveLength(10);
  });

  test('is bounded in addresses; top lists the worst first', () => {
    const store = createEvidenceStore(5);
    for (let i = 0; i < 50; i++) store.note(facts(`198.51.100.${i}`), { action: 'reject', rule: 'r' }, i);
    for (let i = 0; i < 3; i++) store.note(facts('198.51.100.49'), { action: 'discard', rule: 'w' }, 60);
    expect(store.size).toBe(5);
    expect(store.top(2)[0]?.address).toBe('198.51.100.49');
  });

  test('the origin IP comes from the first (bottom-most) Received header', () => {
    expect(receivedIp('from pc7 (dsl-7.example.net [203.0.113.9]) by mx.isp.example')).toBe('203.0.113.9');
    expect(receivedIp('from x ([IPv6:2001:DB8::7]) by y')).toBe('2001:db8::7');
    expect(receivedIp('from localhost by y')).toBeUndefined();
  });
});

describe('levee report', () => {
  test('after worms from one IP: a summary, and an ARF report addressed to the abuse contact, not the sender', async () => {
    const levee = await startTestDaemon('rules:\n  - name: worm\n    stage: eom\n    match: { attachment_name: [".pif"] }\n    action: discard\n', {
      milter: true,
      admin: {},
    });
    const admin = `http://127.0.0.1:${String(levee.daemon.admin?.port)}`;
    const socket = connect({ host: '127.0.0.1', port: levee.milterPort });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const client = createMilterClient(socket, { timeoutMs: 5000 });
    try {
      await client.negotiate();
      await client.connect({ hostname: '[203.0.113.77]', family: '4', port: 1, address: '203.0.113.77' });
      for (let i = 0; i < 2; i++) {
        await client.mail('<ceo@forged.example>', [], { i: `Q${i}` });
        await client.rcpt('<victim@example.org>');
        await client.header('Received', 'from infected-pc ([198.18.0.42])\n\tby relay.example.net');
        await client.header('Message-ID', `<worm-${i}@infected-pc>`);
        await client.header('Content-Type', 'multipart/mixed; boundary="B"');
        await client.eoh();
        await client.body(Buffer.from('--B\r\nContent-Disposition: attachment; filename="doc.pif"\r\n\r\nTVo=\r\n--B--\r\n'));
        expect((await client.eom()).reply.type).toBe('DISCARD');
      }
      const list = await runCli(['report', '--admin', admin]);
      expect(list.stdout).toMatch(/^203\.0\.113\.77 +discard 2/m);
      const summary = await runCli(['report', '203.0.113.77', '--admin', admin]);
      expect(summary.stdout).toMatch(/^origins: +198\.18\.0\.42$/m);
      expect(summary.stdout).toMatch(/message-id=<worm-0@infected-pc> queue-id=Q0/);
      const arf = await runCli(['report', '203.0.113.77', '--arf', '--to', 'abuse@isp.example', '--from', 'postmaster@example.org', '--admin', admin]);
      expect(arf.status).toBe(0);
      expect(arf.stdout).toMatch(/^To: abuse@isp\.example\r$/m);
      expect(arf.stdout).not.toMatch(/^To: .*forged\.example/m);
      expect(arf.stdout).toMatch(/^Content-Type: multipart\/report; report-type=feedback-report; boundary=/m);
      expect(arf.stdout).toMatch(/^Feedback-Type: abuse\r$/m);
      expect(arf.stdout).toMatch(/^Source-IP: 203\.0\.113\.77\r$/m);
      expect(arf.stdout).toMatch(/^Content-Type: text\/rfc822-headers\r\n\r\nReceived: from infected-pc/m);
      expect(arf.stdout).toMatch(/please do not contact them/);
      const unknown = await runCli(['report', '192.0.2.200', '--admin', admin]);
      expect(unknown).toMatchObject({ status: 1, stderr: 'levee: no evidence for 192.0.2.200\n' });
    } finally {
      client.close();
      await levee.close();
    }
  });
});
