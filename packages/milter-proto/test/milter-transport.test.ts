import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import {
  createMilterClient,
  encodeMilterCommand,
  encodeMilterReply,
  serveMilterConnection,
  SMFI_CURR_PROT,
  SMFIF_ADDHDRS,
  SMFIF_CHGBODY,
  SMFIF_CHGHDRS,
  SMFIF_QUARANTINE,
  SMFIP_NOBODY,
  SMFIP_NOHDRS,
  SMFIP_NOUNKNOWN,
  SMFIP_NR_HDR,
  SMFIP_NR_RCPT,
  SMFIP_SKIP,
  type MilterClient,
  type MilterClientOptions,
  type MilterCommand,
  type MilterConnection,
  type MilterContext,
  type MilterHandler,
  type MilterModification,
  type MilterReply,
  type MilterResponse,
  type MilterTransportOptions,
} from '../src/index.js';

const CONTINUE: MilterResponse = { action: 'continue' };
const CONNECT_INFO = { hostname: 'client.example.net', family: '4', port: 41000, address: '198.51.100.7' } as const;

/** A handler whose error callbacks fail the test unless it expects them. */
function handlerWith(overrides: Partial<MilterHandler>): MilterHandler {
  return {
    onProtocolError: (code, detail) => {
      throw new Error(`unexpected protocol error ${code}: ${detail}`);
    },
    onHandlerError: (error) => {
      throw error;
    },
    ...overrides,
  };
}

// --- real sockets on 127.0.0.1, port 0 ------------------------------------------------

interface Loopback {
  client: MilterClient;
  connection: MilterConnection;
  clientSocket: Socket;
  serverSocket: Socket;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

async function loopback(handler: MilterHandler, options: MilterTransportOptions = {}, clientOptions: MilterClientOptions = {}): Promise<Loopback> {
  const server = createServer();
  servers.push(server);
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const clientSocket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const serverSocket = await accepted;
  sockets.push(clientSocket, serverSocket);
  const connection = serveMilterConnection(serverSocket, handler, options);
  return { client: createMilterClient(clientSocket, clientOptions), connection, clientSocket, serverSocket };
}

const closed = (socket: Socket): Promise<void> => new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

describe('milter transport + client over loopback', () => {
  test('a full transaction: 5 recipients, 10 headers, a 4 KiB body, EOM with addHeader + quarantine + continue', async () => {
    const seen: string[] = [];
    let eomContext: MilterContext | undefined;
    let closeReason: Promise<string>;
    const body = Buffer.alloc(4096, 'a');
    body.write('\r\n', 4094);
    const bodySeen: Buffer[] = [];
    const { client, connection, clientSocket } = await loopback(
      handlerWith({
        onNegotiate: (offer, agreed) => void seen.push(`negotiate offer v${offer.version} agreed v${agreed.version}`),
        onConnect: (info, ctx) => {
          seen.push(`connect ${info.address}:${info.port} j=${ctx.macro('j')}`);
          return CONTINUE;
        },
        onHelo: (helo) => {
          seen.push(`helo ${helo}`);
          return CONTINUE;
        },
        onMail: async (sender, ctx) => {
          seen.push(`mail ${sender.address} ${sender.args.join(',')} auth=${ctx.macro('{auth_authen}')}`);
          return CONTINUE;
        },
        onRcpt: (rcpt) => {
          seen.push(`rcpt ${rcpt.address}`);
          return CONTINUE;
        },
        onData: () => {
          seen.push('data');
          return CONTINUE;
        },
        onHeader: (name, value) => {
          seen.push(`header ${name}: ${value}`);
          return CONTINUE;
        },
        onEoh: () => {
          seen.push('eoh');
          return CONTINUE;
        },
        onBody: (chunk) => {
          bodySeen.push(Buffer.from(chunk));
          return CONTINUE;
        },
        onEom: async (ctx) => {
          seen.push(`eom i=${ctx.macro('i')}`);
          eomContext = ctx;
          return {
            modifications: [
              { type: 'addHeader', name: 'X-Levee', value: 'checked' },
              { type: 'quarantine', reason: 'suspicious' },
            ],
            response: CONTINUE,
          };
        },
        onAbort: () => void seen.push('abort'),
        onClose: (reason) => void seen.push(`close ${reason}`),
      }),
    );
    closeReason = new Promise((resolve) => clientSocket.once('end', () => resolve('server ended its side')));

    expect(await client.negotiate()).toEqual({ type: 'OPTNEG', version: 6, actions: 0x31, protocol: SMFIP_NOUNKNOWN | SMFIP_SKIP, symbolLists: [] });
    const continued = { sent: true, reply: { type: 'CONTINUE' } };
    expect(await client.connect(CONNECT_INFO, { j: 'mx.example.com', '{daemon_name}': 'mx.example.com' })).toEqual(continued);
    expect(await client.helo('client.example.net', [])).toEqual(continued);
    expect(await client.mail('<alice@example.net>', ['SIZE=5000'], { i: '', '{auth_authen}': 'alice' })).toEqual(continued);
    for (let i = 1; i <= 5; i++) expect(await client.rcpt(`<r${i}@example.org>`)).toEqual(continued);
    expect(await client.data()).toEqual(continued);
    for (let i = 1; i <= 10; i++) expect(await client.header(`X-H${i}`, `value ${i}`)).toEqual(continued);
    expect(await client.eoh()).toEqual(continued);
    expect(await client.body(body)).toEqual(continued);
    expect(await client.eom({ i: '4XyzQ' })).toEqual({
      modifications: [
        { type: 'ADDHEADER', name: 'X-Levee', value: 'checked' },
        { type: 'QUARANTINE', reason: 'suspicious' },
      ],
      reply: { type: 'CONTINUE' },
    });
    client.abort(); // Postfix sends ABORT after every transaction: no reply, no abort event.
    client.quit();
    expect(await closeReason).toBe('server ended its side');

    expect(seen).toEqual([
      'negotiate offer v6 agreed v6',
      'connect 198.51.100.7:41000 j=mx.example.com',
      'helo client.example.net',
      'mail <alice@example.net> SIZE=5000 auth=alice',
      ...[1, 2, 3, 4, 5].map((i) => `rcpt <r${i}@example.org>`),
      'data',
      ...Array.from({ length: 10 }, (_, i) => `header X-H${i + 1}: value ${i + 1}`),
      'eoh',
      'eom i=4XyzQ',
      'close quit',
    ]);
    expect(Buffer.concat(bodySeen).equals(body)).toBe(true);
    expect(eomContext?.message).toEqual(
      expect.objectContaining({
        sender: { address: '<alice@example.net>', args: ['SIZE=5000'] },
        bodyBytes: 4096,
        ended: true,
      }),
    );
    expect(eomContext?.message?.recipients).toHaveLength(5);
    expect(eomContext?.message?.headers).toHaveLength(10);
    expect(connection.state.phase).toBe('closed');
    expect(connection.inFlight).toBe(0);
  });

  test('reject and replycode at RCPT are per recipient; the transaction goes on', async () => {
    const { client } = await loopback(
      handlerWith({
        onRcpt: (rcpt) => {
          if (rcpt.address === '<spam@example.org>') return { action: 'reject' };
          if (rcpt.address === '<nobody@example.org>') return { action: 'replycode', code: 550, enhancedCode: '5.1.1', text: 'No such user (100% sure)' };
          if (rcpt.address === '<later@example.org>') return { action: 'tempfail' };
          return CONTINUE;
        },
        onEom: () => ({ action: 'accept' }),
      }),
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await client.helo('client.example.net');
    await client.mail('<a@example.net>');
    expect((await client.rcpt('<spam@example.org>')).reply).toEqual({ type: 'REJECT' });
    // `%` is doubled for sendmail; Postfix turns `%%` back into `%`.
    expect((await client.rcpt('<nobody@example.org>')).reply).toEqual({ type: 'REPLYCODE', text: '550 5.1.1 No such user (100%% sure)' });
    expect((await client.rcpt('<later@example.org>')).reply).toEqual({ type: 'TEMPFAIL' });
    expect((await client.rcpt('<ok@example.org>')).reply).toEqual({ type: 'CONTINUE' });
    await client.data();
    await client.eoh();
    expect(await client.eom()).toEqual({ modifications: [], reply: { type: 'ACCEPT' } });
  });

  test('a protocol error is reported and the stream closed; the open connection is closed for the handler', async () => {
    const calls: string[] = [];
    const { client, clientSocket, serverSocket } = await loopback(
      handlerWith({
        onProtocolError: (code) => void calls.push(`protocol-error ${code}`),
        onAbort: () => void calls.push('abort'),
        onClose: (reason) => void calls.push(`close ${reason}`),
      }),
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await client.mail('<a@example.net>');
    clientSocket.write(Buffer.from('00000000', 'hex')); // len 0
    await expect(client.rcpt('<b@example.org>')).rejects.toThrow(/closed/);
    await closed(serverSocket);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual(['protocol-error frame-empty', 'abort', 'close eof']);
  });

  test('a command before OPTNEG is a session protocol error', async () => {
    const errors: string[] = [];
    const { clientSocket, serverSocket } = await loopback(handlerWith({ onProtocolError: (code) => void errors.push(code) }));
    clientSocket.write(encodeMilterCommand({ type: 'HELO', helo: 'x' }));
    await closed(serverSocket);
    expect(errors).toEqual(['not-negotiated']);
  });

  test('an MTA offering version 5 is refused', async () => {
    const errors: string[] = [];
    const { client, serverSocket } = await loopback(handlerWith({ onProtocolError: (code) => void errors.push(code) }));
    await expect(client.negotiate({ version: 5 })).rejects.toThrow(/closed/);
    await closed(serverSocket);
    expect(errors).toEqual(['unsupported-version']);
  });

  test('an invalid handler answer is reported through onHandlerError and closes the stream, nothing is written', async () => {
    const errors: unknown[] = [];
    const { client, serverSocket } = await loopback(
      handlerWith({
        onHelo: () => ({ action: 'replycode', code: 250, enhancedCode: '2.0.0', text: 'ok' }),
        onHandlerError: (error) => void errors.push(error),
      }),
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await expect(client.helo('x')).rejects.toThrow(/closed/);
    await closed(serverSocket);
    expect(errors).toEqual([expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/250 .*4xx or 5xx/) })]);
  });

  test('NR_* negotiated: no reply is sent or awaited, and later replies stay in sync', async () => {
    const rcpts: string[] = [];
    const headers: string[] = [];
    const { client } = await loopback(
      handlerWith({
        // A decision on a no-reply event is dropped, as libmilter does.
        onRcpt: (rcpt) => {
          rcpts.push(rcpt.address);
          return { action: 'reject' };
        },
        onHeader: (name) => {
          headers.push(name);
          return CONTINUE;
        },
        onEoh: () => ({ action: 'tempfail' }),
      }),
      { wanted: { actions: SMFIF_ADDHDRS, protocol: SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NOUNKNOWN } },
    );
    const optneg = await client.negotiate();
    expect(optneg.protocol).toBe(SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NOUNKNOWN);
    await client.connect(CONNECT_INFO);
    await client.mail('<a@example.net>');
    expect(await client.rcpt('<b@example.org>')).toEqual({ sent: true, reply: undefined });
    expect(await client.rcpt('<c@example.org>')).toEqual({ sent: true, reply: undefined });
    expect((await client.data()).reply).toEqual({ type: 'CONTINUE' });
    expect(await client.header('Subject', 'x')).toEqual({ sent: true, reply: undefined });
    // Had the filter answered RCPT or HEADER, this reply would be one of those and the client would fail.
    expect((await client.eoh()).reply).toEqual({ type: 'TEMPFAIL' });
    expect(rcpts).toEqual(['<b@example.org>', '<c@example.org>']);
    expect(headers).toEqual(['Subject']);
    expect(client.outstanding).toBe(0);
  });

  test('NO* negotiated: the client does not send skipped events but still sends their macros', async () => {
    const headers: string[] = [];
    let eomMacro: string | undefined;
    const { client } = await loopback(
      handlerWith({
        onHeader: (name) => {
          headers.push(name);
          return CONTINUE;
        },
        onEom: (ctx) => {
          eomMacro = ctx.macro('{hdr_macro}');
          return CONTINUE;
        },
      }),
      { wanted: { actions: 0, protocol: SMFIP_NOHDRS | SMFIP_NOBODY } },
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await client.mail('<a@example.net>');
    await client.rcpt('<b@example.org>');
    expect(await client.header('Subject', 'x', { '{hdr_macro}': 'from-L' })).toEqual({ sent: false, reply: undefined });
    expect(await client.eoh()).toEqual({ sent: true, reply: { type: 'CONTINUE' } });
    expect(await client.body(Buffer.from('x\r\n'))).toEqual({ sent: false, reply: undefined });
    expect((await client.eom()).reply).toEqual({ type: 'CONTINUE' });
    expect(headers).toEqual([]);
    expect(eomMacro).toBe('from-L');
  });

  test('async answers of varying latency come back in command order', async () => {
    const { client } = await loopback(
      handlerWith({
        onRcpt: async (rcpt) => {
          const n = Number(/\d+/.exec(rcpt.address)?.[0]);
          await new Promise((resolve) => setTimeout(resolve, (n * 7) % 5));
          return n % 2 === 1 ? { action: 'reject' } : CONTINUE;
        },
      }),
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await client.mail('<a@example.net>');
    // Pipelined (a real MTA waits; the order must hold either way).
    const replies = await Promise.all(Array.from({ length: 10 }, (_, n) => client.rcpt(`<r${n}@example.org>`)));
    expect(replies.map((r) => r.reply?.type)).toEqual(Array.from({ length: 10 }, (_, n) => (n % 2 === 1 ? 'REJECT' : 'CONTINUE')));
  });

  test('replaceBody is sent in REPLBODY chunks of at most 65535 bytes', async () => {
    const newBody = Buffer.alloc(150_000);
    for (let i = 0; i < newBody.length; i++) newBody[i] = 0x41 + (i % 26);
    const { client } = await loopback(
      handlerWith({ onEom: () => ({ modifications: [{ type: 'replaceBody', body: newBody }], response: CONTINUE }) }),
      { wanted: { actions: SMFIF_CHGBODY, protocol: 0 } },
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    const { modifications, reply } = await client.eom();
    expect(reply).toEqual({ type: 'CONTINUE' });
    expect(modifications.map((m) => (m.type === 'REPLBODY' ? m.chunk.length : m.type))).toEqual([65535, 65535, 18930]);
    expect(Buffer.concat(modifications.map((m) => (m.type === 'REPLBODY' ? m.chunk : new Uint8Array()))).equals(newBody)).toBe(true);
  });

  test('skip after BODY is SKIP when offered, CONTINUE when the MTA lacks SMFIP_SKIP', async () => {
    for (const [protocol, expected] of [
      [SMFI_CURR_PROT, 'SKIP'],
      [SMFI_CURR_PROT & ~SMFIP_SKIP, 'CONTINUE'],
    ] as const) {
      const { client } = await loopback(handlerWith({ onBody: () => ({ action: 'skip' }) }));
      await client.negotiate({ protocol });
      await client.connect(CONNECT_INFO);
      expect((await client.body(Buffer.from('x\r\n'))).reply?.type).toBe(expected);
    }
  });

  test('end of stream without QUIT mid-message: onAbort then onClose(eof), no error', async () => {
    const calls: string[] = [];
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const { client, clientSocket } = await loopback(
      handlerWith({
        onAbort: (ctx) => void calls.push(`abort ${ctx.message?.recipients.length}`),
        onClose: (reason, ctx) => {
          calls.push(`close ${reason} ${ctx.connection.connect?.hostname}`);
          done();
        },
      }),
    );
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await client.mail('<a@example.net>');
    await client.rcpt('<b@example.org>');
    clientSocket.end();
    await finished;
    expect(calls).toEqual(['abort 1', 'close eof client.example.net']);
  });

  test('the client enforces its deadline', async () => {
    const { client } = await loopback(handlerWith({ onHelo: () => new Promise<MilterResponse>(() => undefined) }), {}, { timeoutMs: 50 });
    await client.negotiate();
    await client.connect(CONNECT_INFO);
    await expect(client.helo('slow.example')).rejects.toThrow(/timed out after 50 ms/);
  });
});

// --- byte level, through an in-memory duplex ---------------------------------------------

/** A Duplex we feed by hand; everything the transport writes is collected. */
function memoryStream(): { stream: Duplex; written: Buffer[]; ended: () => boolean } {
  const written: Buffer[] = [];
  let ended = false;
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written.push(Buffer.from(chunk));
      callback();
    },
    final(callback) {
      ended = true;
      callback();
    },
  });
  return { stream, written, ended: () => ended };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function conversation(): Buffer {
  const c = (command: MilterCommand): Buffer => encodeMilterCommand(command);
  const transaction = (n: number): Buffer[] => [
    c({ type: 'MACRO', stage: 'M', macros: [['i', '']] }),
    c({ type: 'MAIL', args: [`<a${n}@example.net>`] }),
    c({ type: 'MACRO', stage: 'R', macros: [] }),
    c({ type: 'RCPT', args: ['<b@example.org>'] }),
    c({ type: 'MACRO', stage: 'T', macros: [['i', 'QID']] }),
    c({ type: 'DATA' }),
    c({ type: 'MACRO', stage: 'L', macros: [] }),
    c({ type: 'HEADER', name: 'Subject', value: 'hi' }),
    c({ type: 'MACRO', stage: 'N', macros: [] }),
    c({ type: 'EOH' }),
    c({ type: 'MACRO', stage: 'B', macros: [] }),
    c({ type: 'BODY', chunk: Buffer.from('hello\r\n') }),
    c({ type: 'MACRO', stage: 'E', macros: [['i', 'QID']] }),
    c({ type: 'BODYEOB' }),
    c({ type: 'ABORT' }),
    c({ type: 'ABORT' }),
  ];
  return Buffer.concat([
    c({ type: 'OPTNEG', version: 6, actions: 0x1ff, protocol: 0x1fffff }),
    c({ type: 'MACRO', stage: 'C', macros: [['j', 'mx.example.com']] }),
    c({ type: 'CONNECT', hostname: '[172.17.0.1]', family: '4', port: 33148, address: '172.17.0.1' }),
    c({ type: 'MACRO', stage: 'H', macros: [] }),
    c({ type: 'HELO', helo: 'client.example.net' }),
    ...transaction(1),
    ...transaction(2),
    c({ type: 'QUIT' }),
  ]);
}

describe('milter transport at the byte level', () => {
  const eomHandler = (): MilterHandler => handlerWith({ onEom: () => ({ modifications: [{ type: 'addHeader', name: 'X-Levee', value: 'yes' }], response: CONTINUE }) });

  test('the B.9 conversation: one reply per command that expects one, none for MACRO/ABORT/QUIT, EOF after QUIT', async () => {
    const { stream, written, ended } = memoryStream();
    serveMilterConnection(stream, eomHandler(), { wanted: { actions: SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE, protocol: 0 } });
    stream.push(conversation());
    await tick();
    const r = (reply: MilterReply): Buffer => encodeMilterReply(reply);
    const eachTransaction = [...Array.from({ length: 6 }, () => r({ type: 'CONTINUE' })), r({ type: 'ADDHEADER', name: 'X-Levee', value: 'yes' }), r({ type: 'CONTINUE' })];
    const expected = Buffer.concat([
      r({ type: 'OPTNEG', version: 6, actions: 0x31, protocol: 0, symbolLists: [] }),
      r({ type: 'CONTINUE' }), // CONNECT
      r({ type: 'CONTINUE' }), // HELO
      ...eachTransaction,
      ...eachTransaction,
    ]);
    expect(Buffer.concat(written).toString('hex')).toBe(expected.toString('hex'));
    expect(ended()).toBe(true);
  });

  test('the same bytes fed one at a time give the same output', async () => {
    const whole = memoryStream();
    serveMilterConnection(whole.stream, eomHandler());
    whole.stream.push(conversation());
    await tick();

    const sliced = memoryStream();
    serveMilterConnection(sliced.stream, eomHandler());
    const bytes = conversation();
    for (let i = 0; i < bytes.length; i++) sliced.stream.push(bytes.subarray(i, i + 1));
    await tick();

    expect(Buffer.concat(sliced.written).equals(Buffer.concat(whole.written))).toBe(true);
    expect(Buffer.concat(whole.written).length).toBeGreaterThan(17);
  });

  test('serveMilterConnection refuses invalid negotiation settings up front', () => {
    expect(() => serveMilterConnection(memoryStream().stream, eomHandler(), { wanted: { actions: 0, protocol: 0, macros: { connect: ['a b'] } } })).toThrow(
      RangeError,
    );
  });

  const OPEN = Buffer.concat([
    encodeMilterCommand({ type: 'OPTNEG', version: 6, actions: 0x1ff, protocol: 0x1fffff }),
    encodeMilterCommand({ type: 'CONNECT', ...CONNECT_INFO }),
  ]);
  const EOM = Buffer.concat([encodeMilterCommand({ type: 'MAIL', args: ['<a@b>'] }), encodeMilterCommand({ type: 'BODYEOB' })]);
  const eom = (modifications: MilterModification[], response: MilterResponse = CONTINUE): Partial<MilterHandler> => ({
    onEom: () => ({ modifications, response }),
  });

  // [name, callbacks, input, replies written before the failing one] (every row has all four: jest
  // would take a missing last argument for a `done` callback)
  test.each<[string, Partial<MilterHandler>, Buffer, number]>([
    ['discard at CONNECT', { onConnect: () => ({ action: 'discard' }) }, OPEN, 1],
    ['skip at CONNECT', { onConnect: () => ({ action: 'skip' }) }, OPEN, 1],
    ['a replycode with a mismatched enhanced code', { onConnect: () => ({ action: 'replycode', code: 550, enhancedCode: '4.7.1', text: 'x' }) }, OPEN, 1],
    ['a replycode with CR LF in its text', { onConnect: () => ({ action: 'replycode', code: 550, enhancedCode: '5.7.1', text: 'a\r\nb' }) }, OPEN, 1],
    ['an unknown action', { onConnect: () => ({ action: 'maybe' }) as unknown as MilterResponse }, OPEN, 1],
    ['no response at all', { onConnect: () => undefined as unknown as MilterResponse }, OPEN, 1],
    ['modifications at MAIL', { onMail: () => ({ modifications: [], response: CONTINUE }) as unknown as MilterResponse }, Buffer.concat([OPEN, EOM]), 2],
    ['a callback that throws', { onConnect: () => { throw new Error('boom'); } }, OPEN, 1],
    ['a callback that rejects', { onConnect: () => Promise.reject(new Error('boom')) }, OPEN, 1],
    ['changeFrom without SMFIF_CHGFROM', eom([{ type: 'changeFrom', from: '<x@y>' }]), Buffer.concat([OPEN, EOM]), 3],
    ['two replaceBody', eom([{ type: 'replaceBody', body: Buffer.from('a') }, { type: 'replaceBody', body: Buffer.from('b') }]), Buffer.concat([OPEN, EOM]), 3],
    ['a header name with a colon', eom([{ type: 'addHeader', name: 'X-A:', value: 'v' }]), Buffer.concat([OPEN, EOM]), 3],
    ['a header value with CR LF folding', eom([{ type: 'addHeader', name: 'X-A', value: 'a\r\n b' }]), Buffer.concat([OPEN, EOM]), 3],
    ['a header value with a bare line break', eom([{ type: 'addHeader', name: 'X-A', value: 'a\nb' }]), Buffer.concat([OPEN, EOM]), 3],
    ['skip as the final answer to EOM', eom([], { action: 'skip' }), Buffer.concat([OPEN, EOM]), 3],
  ])('invalid answer: %s -> onHandlerError, stream destroyed, nothing written for it', async (_name, overrides, input, before) => {
    const { stream, written } = memoryStream();
    const errors: unknown[] = [];
    serveMilterConnection(
      stream,
      handlerWith({ ...overrides, onHandlerError: (error) => void errors.push(error) }),
      { wanted: { actions: SMFIF_ADDHDRS | SMFIF_CHGBODY, protocol: 0 } },
    );
    stream.push(input);
    await tick();
    expect(errors).toHaveLength(1);
    expect(stream.destroyed).toBe(true);
    // Only the replies before the failing command went out: OPTNEG (and CONNECT, MAIL for EOM cases).
    const frames = Buffer.concat(written);
    const count = before;
    let at = 0;
    for (let i = 0; i < count; i++) at += 4 + frames.readUInt32BE(at);
    expect(at).toBe(frames.length);
  });

  test('a valid folded header and multi-modification EOM are accepted', async () => {
    const { stream, written } = memoryStream();
    serveMilterConnection(
      stream,
      handlerWith(
        eom([
          { type: 'addHeader', name: 'X-A', value: 'part one\n\tpart two' },
          { type: 'insertHeader', index: 0, name: 'X-B', value: '' },
          { type: 'changeHeader', index: 1, name: 'Subject', value: '' },
        ]),
      ),
      { wanted: { actions: SMFIF_ADDHDRS | SMFIF_CHGHDRS, protocol: 0 } },
    );
    stream.push(Buffer.concat([OPEN, EOM]));
    await tick();
    const tail = Buffer.concat([
      encodeMilterReply({ type: 'ADDHEADER', name: 'X-A', value: 'part one\n\tpart two' }),
      encodeMilterReply({ type: 'INSHEADER', index: 0, name: 'X-B', value: '' }),
      encodeMilterReply({ type: 'CHGHEADER', index: 1, name: 'Subject', value: '' }),
      encodeMilterReply({ type: 'CONTINUE' }),
    ]);
    const all = Buffer.concat(written);
    expect(all.subarray(all.length - tail.length).equals(tail)).toBe(true);
  });

  test('reading pauses while our writes are not drained, and resumes after drain', async () => {
    const written: Buffer[] = [];
    const stream = new Duplex({
      read() {},
      writableHighWaterMark: 1,
      write(chunk: Buffer, _encoding, callback) {
        written.push(Buffer.from(chunk));
        setTimeout(callback, 1); // a slow reader on the MTA side
      },
    });
    let pausedSeen = false;
    const connection = serveMilterConnection(stream, handlerWith({}));
    stream.on('pause', () => (pausedSeen = true));
    stream.push(Buffer.concat([OPEN, ...Array.from({ length: 20 }, (_, i) => encodeMilterCommand({ type: 'RCPT', args: [`<r${i}@x>`] }))]));
    for (let i = 0; i < 200 && written.length < 22; i++) await new Promise((resolve) => setTimeout(resolve, 2));
    expect(pausedSeen).toBe(true);
    expect(written).toHaveLength(22); // OPTNEG, CONNECT, 20 x RCPT: one reply each, in order
    expect(Buffer.concat(written.slice(1)).equals(Buffer.concat(Array.from({ length: 21 }, () => encodeMilterReply({ type: 'CONTINUE' }))))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(stream.isPaused()).toBe(false);
    expect(connection.inFlight).toBe(0);
  });

  test('reading pauses while too many commands wait for a slow handler', async () => {
    const { stream } = memoryStream();
    const release: (() => void)[] = [];
    const connection = serveMilterConnection(
      stream,
      handlerWith({
        onRcpt: () =>
          new Promise<MilterResponse>((resolve) => {
            release.push(() => resolve(CONTINUE));
          }),
      }),
      { maxQueuedCommands: 4 },
    );
    stream.push(Buffer.concat([OPEN, ...Array.from({ length: 10 }, (_, i) => encodeMilterCommand({ type: 'RCPT', args: [`<r${i}@x>`] }))]));
    await tick();
    expect(stream.isPaused()).toBe(true);
    expect(connection.inFlight).toBe(10);
    while (release.length > 0 || connection.inFlight > 0) {
      release.shift()?.();
      await tick();
    }
    expect(stream.isPaused()).toBe(false);
  });
});
