// Bounded fuzzing of the live milter listener (inputs from fast-check): random
// bytes; packets with random command bytes and payloads; zero, oversized and
// lying lengths; SMFIC_CONNECT with odd families, ports, IPv6 spellings and
// missing NULs; huge and invalid-UTF-8 headers and bodies; valid commands in
// the wrong order. Each case is thrown at the milter port on a connection of
// its own. The daemon must
// - close a connection that sent a packet the codec refuses, by itself;
// - close any other connection once the peer has ended its side;
// - afterwards still run a whole well-formed session (negotiate to end of
//   message, with the header its rules add);
// - end with no milter connection open and its heap not grown by the run.
// Time-bounded for CI; `pnpm fuzz` (FUZZ_SECONDS) runs it longer.
//
// Milter connections have no idle timeout in Levee (they live as long as the
// MTA's SMTP session; docs/security.md): a case that leaves a packet half sent
// and never ends would wait forever, so every case here ends its side or
// sends something the daemon must refuse, and every wait has a deadline.
import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import {
  createMilterClient,
  DEFAULT_MILTER_LIMITS,
  encodeMilterCommand,
  encodeMilterFrame,
  SMFIC_BODY,
  SMFIC_CONNECT,
  SMFIC_HEADER,
  SMFIC_NAMES,
  type MilterCommand,
} from '@levee/milter-proto';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

const SECONDS = Number(process.env['FUZZ_SECONDS'] ?? '8');
jest.setTimeout((SECONDS * 2 + 60) * 1000);

/** How long the daemon may take to close a connection it must close. */
const CLOSE_DEADLINE_MS = 5000;

// --- inputs -------------------------------------------------------------------------

/** A case: packets to send, and whether the codec must refuse one of them (the daemon then closes without our FIN). */
interface FuzzCase {
  readonly label: string;
  readonly chunks: readonly Uint8Array[];
  readonly refused: boolean;
}

const bytes = (b: Buffer): Uint8Array => new Uint8Array(b);
const cmd = (c: MilterCommand): Uint8Array => bytes(encodeMilterCommand(c));
const frame = (code: number, payload: Uint8Array): Uint8Array => bytes(encodeMilterFrame(code, payload));
const lengthThen = (len: number, rest: Uint8Array): Uint8Array => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(len >>> 0);
  return bytes(Buffer.concat([head, rest]));
};

const OPTNEG = cmd({ type: 'OPTNEG', version: 6, actions: 0x1ff, protocol: 0x1fffff });
const SESSION_PREFIX = [
  OPTNEG,
  cmd({ type: 'CONNECT', hostname: '[192.0.2.1]', family: '4', port: 4321, address: '192.0.2.1' }),
  cmd({ type: 'HELO', helo: 'client.example.net' }),
  cmd({ type: 'MAIL', args: ['<a@example.net>'] }),
  cmd({ type: 'RCPT', args: ['<b@example.org>'] }),
  cmd({ type: 'DATA' }),
];
const KNOWN_CODES = Object.keys(SMFIC_NAMES).map(Number);

/** Strings with NULs, lone surrogates turned into invalid UTF-8, and raw high bytes. */
const oddBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.string({ maxLength: 80 }).map((s) => bytes(Buffer.from(s, 'utf8'))),
  fc.uint8Array({ minLength: 1, maxLength: 60 }).map((a) => a.map((x) => 0x80 | x)),
);
const cstring = (b: Uint8Array): Uint8Array => bytes(Buffer.concat([Buffer.from(b.filter((x) => x !== 0)), Buffer.of(0)]));

const address = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV6().map((a) => `IPv6:${a}`),
  fc.ipV6().map((a) => `[IPv6:${a}]`),
  fc.ipV6().map((a) => `ipv6:${a.toUpperCase()}`),
  fc.ipV4().map((a) => `::ffff:${a}`),
  fc.constantFrom('fe80::1%lo', '::', '::1', '1::2::3', ':::', '[]', '[', 'IPv6:', '/var/run/x.sock', '0.0.0.0', '999.1.1.1', '127.1'),
  fc.string({ maxLength: 300 }),
);

/** SMFIC_CONNECT with every part possibly odd: hostname, family byte, port, address, NULs, length. */
const oddConnect = fc
  .record({
    hostname: oddBytes,
    family: fc.oneof(fc.constantFrom('4', '6', 'L', 'U').map((f) => f.charCodeAt(0)), fc.integer({ min: 0, max: 255 })),
    port: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constant(-1)),
    address: fc.oneof(address.map((a) => bytes(Buffer.from(a, 'utf8'))), oddBytes),
    terminate: fc.boolean(),
    cut: fc.nat(40),
  })
  .map(({ hostname, family, port, address: addr, terminate, cut }) => {
    const portBytes = port < 0 ? Buffer.alloc(0) : Buffer.from([port >> 8, port & 0xff]);
    const payload = Buffer.concat([cstring(hostname), Buffer.of(family), portBytes, terminate ? cstring(addr) : Buffer.from(addr)]);
    return frame(SMFIC_CONNECT, bytes(payload.subarray(0, Math.max(0, payload.length - (cut > 30 ? cut - 30 : 0)))));
  });

/** A header of up to a whole packet: long names and values, NULs, invalid UTF-8, bare LF. */
const hugeHeader = fc
  .record({ nameLen: fc.integer({ min: 0, max: 2000 }), valueLen: fc.integer({ min: 0, max: DEFAULT_MILTER_LIMITS.maxFrameBytes - 3000 }), fill: fc.integer({ min: 0, max: 255 }), lf: fc.boolean() })
  .map(({ nameLen, valueLen, fill, lf }) => {
    const name = Buffer.alloc(nameLen, 'X');
    const value = Buffer.alloc(valueLen, fill === 0 ? 0x41 : fill);
    if (lf && valueLen > 10) value[5] = 0x0a;
    return frame(SMFIC_HEADER, bytes(Buffer.concat([name, Buffer.of(0), value, Buffer.of(0)])));
  });

const anyCommand: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constantFrom(...SESSION_PREFIX),
  fc.constantFrom<MilterCommand>({ type: 'EOH' }, { type: 'BODYEOB' }, { type: 'ABORT' }, { type: 'QUIT_NC' }, { type: 'DATA' }).map(cmd),
  fc.tuple(fc.constantFrom(...KNOWN_CODES), oddBytes).map(([code, p]) => frame(code, p)),
  fc.tuple(oddBytes, oddBytes).map(([n, v]) => frame(SMFIC_HEADER, bytes(Buffer.concat([cstring(n), cstring(v)])))),
  fc.uint8Array({ maxLength: 70_000 }).map((b) => frame(SMFIC_BODY, b)),
  fc.tuple(fc.constantFrom(...'CHMRTLNE'.split('')), fc.array(fc.tuple(oddBytes, oddBytes), { maxLength: 300 })).map(([stage, pairs]) =>
    frame(0x44, bytes(Buffer.concat([Buffer.from(stage), ...pairs.flatMap(([n, v]) => [cstring(n), cstring(v)])]))),
  ),
  oddConnect,
  hugeHeader,
);

/** Something the codec refuses, whatever came before. */
const refusedPacket = fc.oneof(
  fc.constant(lengthThen(0, new Uint8Array(0))),
  fc.integer({ min: DEFAULT_MILTER_LIMITS.maxFrameBytes + 1, max: 0xffffffff }).map((len) => lengthThen(len, new Uint8Array([0x42]))),
  fc.integer({ min: 0, max: 255 }).filter((c) => !KNOWN_CODES.includes(c)).chain((code) => oddBytes.map((p) => frame(code, p))),
);

const fuzzCase: fc.Arbitrary<FuzzCase> = fc.oneof(
  fc.array(fc.uint8Array({ minLength: 1, maxLength: 400 }), { minLength: 1, maxLength: 5 }).map((chunks) => ({ label: 'random bytes', chunks, refused: false })),
  fc.tuple(fc.boolean(), fc.array(anyCommand, { minLength: 1, maxLength: 6 })).map(([prefix, cmds]) => ({
    label: 'commands',
    chunks: [...(prefix ? SESSION_PREFIX : [OPTNEG]), ...cmds],
    refused: false,
  })),
  // A packet that lies about its length: claims more than is ever sent.
  fc.tuple(anyCommand, fc.integer({ min: 1, max: 5000 })).map(([c, extra]) => {
    const b = Buffer.from(c);
    b.writeUInt32BE(Math.min(DEFAULT_MILTER_LIMITS.maxFrameBytes, b.readUInt32BE(0) + extra));
    return { label: 'short packet', chunks: [OPTNEG, bytes(b)], refused: false };
  }),
  fc.tuple(fc.boolean(), fc.array(anyCommand, { maxLength: 3 }), refusedPacket).map(([prefix, cmds, bad]) => ({
    label: 'refused packet',
    chunks: [...(prefix ? SESSION_PREFIX : []), ...cmds, bad],
    // The commands before may already have closed it; either way it must close by itself.
    refused: true,
  })),
);

// --- the attack and the checks ---------------------------------------------------------

/** Send a case; 'closed' if the daemon closed the connection within the deadline, else 'open'. */
function throwAt(port: number, c: FuzzCase): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: '127.0.0.1', port, noDelay: true });
    let settled = false;
    const done = (how: 'closed' | 'open'): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(how);
    };
    const timer = setTimeout(() => done('open'), CLOSE_DEADLINE_MS);
    socket.on('data', () => undefined); // read replies, so the daemon's writes never back up
    socket.on('error', () => done('closed')); // reset by the daemon
    socket.on('close', () => done('closed'));
    socket.once('connect', () => {
      for (const chunk of c.chunks) socket.write(chunk);
      // A refused packet must close the connection on its own; anything else: we end our side.
      if (!c.refused) socket.end();
    });
  });
}

async function wellFormedSession(port: number): Promise<string[]> {
  // No Nagle: header, eoh and body go out without waiting for replies (NR_*) and would wait for a delayed ACK.
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const client = createMilterClient(socket, { timeoutMs: 5000 });
  try {
    await client.negotiate();
    const replies = [
      (await client.connect({ hostname: '[2001:db8::7]', family: '6', port: 2525, address: 'IPv6:2001:db8::7' })).reply?.type,
      (await client.helo('client.example.net')).reply?.type,
      (await client.mail('<alice@example.net>')).reply?.type,
      (await client.rcpt('<bob@example.org>')).reply?.type,
    ];
    await client.header('Subject', 'still here');
    await client.eoh();
    await client.body(new Uint8Array(Buffer.from('hello\r\n')));
    const eom = await client.eom();
    client.quit();
    return [...replies.map(String), eom.reply.type, ...eom.modifications.map((m) => (m.type === 'ADDHEADER' ? `${m.name}: ${m.value}` : m.type))];
  } finally {
    client.close();
  }
}

/** A full collection, when the V8 flag can be set at run time; otherwise nothing. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('typeof gc === "function" ? gc : undefined') as (() => void) | undefined;
  gc?.();
}

describe('fuzzing the live milter listener', () => {
  let levee: TestDaemon;
  beforeAll(async () => {
    levee = await startTestDaemon(
      [
        'counters: { max_keys: 10000 }',
        'rules:',
        '  - name: per-client',
        '    stage: rcpt',
        '    limit: { key: "{client_address}", max: 1000000, window: 60s }',
        '    action: tempfail',
        '  - name: tag',
        '    stage: eom',
        '    action: continue',
        '    add_header: "X-Levee: checked"',
        '',
      ].join('\n'),
      { milter: true, metrics: true },
    );
  });
  afterAll(async () => {
    await levee.close();
  });

  const WELL_FORMED = ['CONTINUE', 'CONTINUE', 'CONTINUE', 'CONTINUE', 'CONTINUE', 'X-Levee: checked'];

  test('random and malformed milter input never crashes or stalls it, and memory stays bounded', async () => {
    expect(await wellFormedSession(levee.milterPort)).toEqual(WELL_FORMED);
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;

    const deadline = Date.now() + SECONDS * 1000;
    const labels: Record<string, number> = {};
    const stalled: { label: string; hex: string }[] = [];
    let cases = 0;
    while (Date.now() < deadline && cases < 100_000) {
      // The harness keeps every log line; drop them, or they would be what grows.
      levee.logs.splice(0);
      for (const c of fc.sample(fuzzCase, 20)) {
        if (Date.now() >= deadline) break;
        if ((await throwAt(levee.milterPort, c)) === 'open') {
          stalled.push({ label: c.label, hex: Buffer.concat(c.chunks.map((x) => Buffer.from(x))).subarray(0, 2000).toString('hex') });
        }
        // Every fifth case a whole session; a crash or a stuck daemon fails it.
        if (cases % 5 === 0) expect(await wellFormedSession(levee.milterPort)).toEqual(WELL_FORMED);
        labels[c.label] = (labels[c.label] ?? 0) + 1;
        cases++;
      }
    }
    expect(stalled).toEqual([]);
    expect(await wellFormedSession(levee.milterPort)).toEqual(WELL_FORMED);
    expect(cases).toBeGreaterThan(20);
    expect(Object.keys(labels).sort()).toEqual(['commands', 'random bytes', 'refused packet', 'short packet']);

    // Every connection closed on the daemon's side too (the gauge counts its sockets).
    const open = async (): Promise<string | undefined> => /^levee_connections\{protocol="milter"\} (\d+)/m.exec(await levee.metricsText())?.[1];
    for (let i = 0; i < 100 && (await open()) !== '0'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await open()).toBe('0');
    expect(levee.daemon.milterConcurrency('192.0.2.1')).toBe(0);

    // Nothing per connection stays behind: the heap after a full collection is near where it started.
    levee.logs.splice(0);
    collectGarbage();
    const grownMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    console.log(`milter fuzz: ${cases} cases in ${SECONDS} s ${JSON.stringify(labels)}, heap ${grownMiB.toFixed(1)} MiB grown`);
    expect(grownMiB).toBeLessThan(32);
  });
});
