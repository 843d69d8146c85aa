// The milter listener in-process, driven by milter-proto's client as an MTA would.
import { connect } from 'node:net';
import { createMilterClient, type MilterClient, type MilterReply } from '@levee/milter-proto';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

const CONFIG = `
rules:
  - name: too-many-connections
    stage: connect
    match: { client_concurrency: { min: 3 } }
    action: tempfail
    code: 421
    enhanced_code: "4.7.0"
    text: "Too many connections from your address"
  - name: unknown-user
    stage: rcpt
    match: { recipient: ["nobody@example.org"] }
    action: reject
    code: 550
    enhanced_code: "5.1.1"
    text: "No such user"
  - name: slow-down
    stage: rcpt
    match: { recipient: ["@busy.example"] }
    action: tempfail
    text: "Busy"
  - name: worm
    stage: eom
    match: { attachment_name: [".pif", ".scr"] }
    action: discard
  - name: hold-zip
    stage: eom
    match: { attachment_type: ["application/zip"] }
    action: quarantine
    text: "zip attachment held"
  - name: av-notice
    stage: eom
    match: { header: { Subject: ["/virus found/i"] } }
    action: reject
    text: "No virus notifications"
  - name: tag
    stage: eom
    action: continue
    add_header: "X-Levee: checked"
`;

const text = (r: MilterReply | undefined): string => (r?.type === 'REPLYCODE' ? r.text : String(r?.type));

function multipart(filename: string, contentType: string): string {
  return [
    'This is a multi-part message',
    '--b1',
    'Content-Type: text/plain',
    '',
    'hello',
    '--b1',
    `Content-Type: ${contentType}; name="${filename}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${filename}"`,
    '',
    Buffer.alloc(3000, 7).toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--b1--',
    '',
  ].join('\r\n');
}

describe('milter service', () => {
  let levee: TestDaemon;
  const clients: MilterClient[] = [];
  beforeEach(async () => {
    levee = await startTestDaemon(CONFIG, { milter: true, metrics: true });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await levee.close();
  });

  async function session(address = '198.51.100.7'): Promise<MilterClient> {
    const socket = connect({ host: '127.0.0.1', port: levee.milterPort });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = createMilterClient(socket, { timeoutMs: 5000 });
    clients.push(client);
    await client.negotiate();
    const r = await client.connect({ hostname: '[' + address + ']', family: address.includes(':') ? '6' : '4', port: 40000, address });
    expect(r.reply?.type).toBe('CONTINUE');
    await client.helo('client.example.net');
    return client;
  }

  async function message(
    client: MilterClient,
    opts: { subject?: string; contentType?: string; body?: string; rcpt?: string[] } = {},
  ): Promise<{ modifications: readonly MilterReply[]; reply: MilterReply }> {
    await client.mail('<alice@example.net>', [], { i: 'ABC123', '{auth_authen}': '' });
    for (const r of opts.rcpt ?? ['bob@example.org']) expect((await client.rcpt(`<${r}>`)).reply?.type).toBe('CONTINUE');
    await client.data();
    await client.header('From', 'alice@example.net');
    await client.header('Subject', opts.subject ?? 'hello');
    await client.header('Content-Type', opts.contentType ?? 'text/plain');
    await client.eoh();
    await client.body(Buffer.from(opts.body ?? 'just text\r\n'));
    return client.eom();
  }

  test('per recipient at RCPT: reject with the rule’s 550 5.1.1, tempfail with 450; others continue', async () => {
    const client = await session();
    await client.mail('<alice@example.net>');
    expect(text((await client.rcpt('<nobody@example.org>')).reply)).toBe('550 5.1.1 No such user');
    expect(text((await client.rcpt('<a@busy.example>')).reply)).toBe('450 4.7.1 Busy');
    expect((await client.rcpt('<bob@example.org>')).reply?.type).toBe('CONTINUE');
  });

  test('a clean message continues, tagged with the header of the continue rule', async () => {
    const client = await session();
    const eom = await message(client);
    expect(eom.reply.type).toBe('CONTINUE');
    expect(eom.modifications).toEqual([{ type: 'ADDHEADER', name: 'X-Levee', value: 'checked' }]);
  });

  test('a worm attachment (.pif) is discarded at end of message, found by streaming the MIME structure', async () => {
    const client = await session();
    const eom = await message(client, { contentType: 'multipart/mixed; boundary="b1"', body: multipart('document.pif', 'application/octet-stream') });
    expect(eom.reply.type).toBe('DISCARD');
    const line = levee.logs.find((l) => l['msg'] === 'decision' && l['stage'] === 'eom');
    expect(line).toMatchObject({ proto: 'milter', action: 'discard', rule: 'worm', attachments: 1, queue_id: 'ABC123' });
  });

  test('quarantine at end of message: QUARANTINE with the reason, then CONTINUE', async () => {
    const client = await session();
    const eom = await message(client, { contentType: 'multipart/mixed; boundary="b1"', body: multipart('files.zip', 'application/zip') });
    expect(eom.reply.type).toBe('CONTINUE');
    expect(eom.modifications).toEqual([{ type: 'QUARANTINE', reason: 'zip attachment held' }]);
  });

  test('header rules see the message headers', async () => {
    const client = await session();
    const eom = await message(client, { subject: 'VIRUS FOUND in your message' });
    expect(text(eom.reply)).toBe('550 5.7.1 No virus notifications');
  });

  test('several messages on one connection: state of one does not leak into the next; ABORT resets the message only', async () => {
    const client = await session();
    expect((await message(client, { contentType: 'multipart/mixed; boundary="b1"', body: multipart('x.scr', 'application/octet-stream') })).reply.type).toBe(
      'DISCARD',
    );
    await client.mail('<alice@example.net>');
    await client.rcpt('<bob@example.org>');
    client.abort();
    const clean = await message(client);
    expect(clean.reply.type).toBe('CONTINUE');
    expect(clean.modifications).toEqual([{ type: 'ADDHEADER', name: 'X-Levee', value: 'checked' }]);
  });

  test('concurrency per client address: the third open connection from one address is refused with 421, others are not', async () => {
    await session('203.0.113.5');
    await session('203.0.113.5');
    const socket = connect({ host: '127.0.0.1', port: levee.milterPort });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const third = createMilterClient(socket, { timeoutMs: 5000 });
    clients.push(third);
    await third.negotiate();
    const r = await third.connect({ hostname: '[203.0.113.5]', family: '4', port: 1, address: '203.0.113.5' });
    expect(text(r.reply)).toBe('421 4.7.0 Too many connections from your address');
    await session('203.0.113.6');
    // When a connection closes, the count drops again.
    third.close();
    clients[0]?.close();
    for (let i = 0; i < 50 && levee.daemon.milterConcurrency('203.0.113.5') > 1; i++) await new Promise((res) => setTimeout(res, 20));
    expect(levee.daemon.milterConcurrency('203.0.113.5')).toBe(1);
    await session('203.0.113.5');
  });

  test('IPv6 clients: the address reaches the rules in canonical form', async () => {
    const client = await session('2001:0DB8:0:0::25');
    await message(client);
    expect(levee.logs.some((l) => l['msg'] === 'decision' && l['client'] === '2001:db8::25')).toBe(true);
  });

  test('a malformed packet closes the connection, is counted, and the daemon keeps serving', async () => {
    const raw = connect({ host: '127.0.0.1', port: levee.milterPort });
    raw.on('error', () => undefined);
    await new Promise<void>((resolve) => raw.once('connect', resolve));
    raw.write(Buffer.from([0, 0, 0, 0]));
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
    expect(await levee.metricsText()).toMatch(/levee_protocol_errors_total\{protocol="milter",code="[a-z-]+"\} 1/);
    const client = await session();
    expect((await message(client)).reply.type).toBe('CONTINUE');
  });

  test('metrics count milter decisions by stage and action', async () => {
    const client = await session();
    await message(client);
    const metrics = await levee.metricsText();
    expect(metrics).toMatch(/levee_requests_total\{protocol="milter",stage="connect",action="continue"\} 1/);
    expect(metrics).toMatch(/levee_requests_total\{protocol="milter",stage="eom",action="continue"\} 1/);
    expect(metrics).toMatch(/levee_connections\{protocol="milter"\} 1/);
  });
});

describe('embedded defaults through the milter', () => {
  test('an anti-virus "virus found" notice is discarded; ordinary mail continues', async () => {
    const { DEFAULT_CONFIG_YAML } = await import('@levee/rules');
    const levee = await startTestDaemon(DEFAULT_CONFIG_YAML, { milter: true });
    const socket = connect({ host: '127.0.0.1', port: levee.milterPort });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const client = createMilterClient(socket, { timeoutMs: 5000 });
    try {
      await client.negotiate();
      await client.connect({ hostname: '[198.51.100.9]', family: '4', port: 1, address: '198.51.100.9' });
      const send = async (subject: string): Promise<string> => {
        await client.mail('<>');
        await client.rcpt('<innocent@example.org>');
        await client.header('Subject', subject);
        await client.eoh();
        await client.body(Buffer.from('Our gateway found a virus in the message you sent.\r\n'));
        return (await client.eom()).reply.type;
      };
      expect(await send('VIRUS FOUND in message "Your document"')).toBe('DISCARD');
      expect(await send('Security Alert: W32/Mydoom@MM detected')).toBe('DISCARD');
      expect(await send('Lunch on Friday?')).toBe('CONTINUE');
    } finally {
      client.close();
      await levee.close();
    }
  });
});
