import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  createMilterCommandDecoder,
  createMilterFrameDecoder,
  createMilterReplyDecoder,
  DEFAULT_MILTER_LIMITS,
  describeMilterFlags,
  encodeMilterCommand,
  encodeMilterFrame,
  encodeMilterReply,
  milterCodeName,
  SMFIC_NAMES,
  SMFIF_ADDHDRS,
  SMFIF_NAMES,
  SMFIF_QUARANTINE,
  SMFIP_MDS_1M,
  SMFIP_NAMES,
  SMFIP_NR_BODY,
  type MilterCommand,
  type MilterCommandResult,
  type MilterReply,
  type MilterReplyResult,
} from '../src/index.js';

// --- vectors as data -----------------------------------------------------------------

interface Vector {
  name: string;
  hex: string;
  decoded: unknown;
  canonicalHex?: string;
}
interface Malformed {
  name: string;
  direction: 'command' | 'reply';
  hex: string;
  error: string;
  before?: unknown[];
  limits?: Record<string, number>;
}
const vectors = JSON.parse(readFileSync(join(__dirname, 'vectors/milter-vectors.json'), 'utf8')) as {
  commands: Vector[];
  replies: Vector[];
  malformed: Malformed[];
};

const fromHex = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

/** JSON form of a decoded value: byte fields become {hex}. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { hex: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/** The reverse: {hex} becomes bytes again. */
function typed<T>(value: unknown): T {
  if (Array.isArray(value)) return value.map((v) => typed(v)) as T;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === 'hex') return fromHex((value as { hex: string }).hex) as T;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typed(v)])) as T;
  }
  return value as T;
}

type AnyResult = MilterCommandResult | MilterReplyResult;

function summarise(results: AnyResult[]): { values: unknown[]; error?: string } {
  const values = results.flatMap((r) => (r.kind === 'command' ? [plain(r.command)] : r.kind === 'reply' ? [plain(r.reply)] : []));
  const error = results.find((r) => r.kind === 'error');
  return error?.kind === 'error' ? { values, error: error.code } : { values };
}

function decodeIn(direction: 'command' | 'reply', input: Uint8Array, cuts: readonly number[] = [], limits = DEFAULT_MILTER_LIMITS): AnyResult[] {
  const decoder = direction === 'command' ? createMilterCommandDecoder(limits) : createMilterReplyDecoder(limits);
  const out: AnyResult[] = [];
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    out.push(...decoder.push(input.subarray(from, cut)));
    from = cut;
  }
  return out;
}

const everyByte = (n: number): number[] => Array.from({ length: Math.max(0, n - 1) }, (_, i) => i + 1);

describe('milter command vectors (B.9)', () => {
  test.each(vectors.commands.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const wire = fromHex(v.hex);
    expect(summarise(decodeIn('command', wire))).toEqual({ values: [v.decoded] });
    expect(summarise(decodeIn('command', wire, everyByte(wire.length)))).toEqual({ values: [v.decoded] });
    expect(encodeMilterCommand(typed<MilterCommand>(v.decoded)).toString('hex')).toBe(fromHex(v.canonicalHex ?? v.hex).toString('hex'));
  });
});

describe('milter reply vectors (B.9)', () => {
  test.each(vectors.replies.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const wire = fromHex(v.hex);
    expect(summarise(decodeIn('reply', wire))).toEqual({ values: [v.decoded] });
    expect(summarise(decodeIn('reply', wire, everyByte(wire.length)))).toEqual({ values: [v.decoded] });
    expect(encodeMilterReply(typed<MilterReply>(v.decoded)).toString('hex')).toBe(fromHex(v.canonicalHex ?? v.hex).toString('hex'));
  });
});

describe('malformed milter packets', () => {
  test.each(vectors.malformed.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const wire = fromHex(v.hex);
    const limits = { ...DEFAULT_MILTER_LIMITS, ...v.limits };
    const expected = { values: v.before ?? [], error: v.error };
    expect(summarise(decodeIn(v.direction, wire, [], limits))).toEqual(expected);
    expect(summarise(decodeIn(v.direction, wire, everyByte(wire.length), limits))).toEqual(expected);
  });

  test('every codec error code has a vector', () => {
    const codes = new Set(vectors.malformed.map((v) => v.error));
    for (const code of [
      'frame-empty',
      'frame-too-large',
      'bad-command-byte',
      'bad-reply-byte',
      'truncated',
      'missing-nul',
      'trailing-bytes',
      'bad-family',
      'too-many-macros',
      'bad-replycode',
    ]) {
      expect(codes).toContain(code);
    }
  });

  test('after an error the decoder stays failed and ignores further input', () => {
    const decoder = createMilterCommandDecoder();
    expect(decoder.push(fromHex('00 00 00 00'))).toEqual([expect.objectContaining({ kind: 'error', code: 'frame-empty' })]);
    expect(decoder.failed).toBe(true);
    expect(decoder.push(fromHex('00 00 00 01 54'))).toEqual([]);
  });

  test('an oversize length is refused from its 4 header bytes alone, before any payload arrives', () => {
    const decoder = createMilterFrameDecoder({ maxFrameBytes: 1024 });
    expect(decoder.push(fromHex('00 00 04 01'))).toEqual([expect.objectContaining({ kind: 'error', code: 'frame-too-large' })]);
    expect(decoder.pendingBytes).toBe(0);
  });

  test('a 1 MiB packet (Postfix sends whole headers unchunked) is accepted by default', () => {
    const value = 'x'.repeat(DEFAULT_MILTER_LIMITS.maxFrameBytes - 'Subject'.length - 3);
    const wire = encodeMilterCommand({ type: 'HEADER', name: 'Subject', value });
    expect(wire.readUInt32BE(0)).toBe(DEFAULT_MILTER_LIMITS.maxFrameBytes);
    const results = decodeIn('command', wire, [3, 70_000, 500_000]);
    expect(results).toHaveLength(1);
    expect(results[0]).toEqual({ kind: 'command', command: { type: 'HEADER', name: 'Subject', value } });
  });

  test('a peer that announces a 1 MiB packet and sends a few bytes makes the decoder hold kilobytes, not the announced size', () => {
    const before = process.memoryUsage().arrayBuffers;
    const decoders = Array.from({ length: 200 }, () => createMilterFrameDecoder());
    // len = 1 MiB, command byte 'L' (HEADER), then 10 bytes of the header name; the rest never comes.
    for (const d of decoders) expect(d.push(Buffer.concat([fromHex('00 10 00 00 4c'), Buffer.from('X-Partial-')]))).toEqual([]);
    const held = process.memoryUsage().arrayBuffers - before;
    expect(decoders[0]?.pendingBytes).toBe(4 + 11);
    // 200 peers: ~200 x 4 KiB now; allocating the announced size would be 200 MiB.
    expect(held).toBeLessThan(16 * 1024 * 1024);
  });

  test('a packet dribbled a byte at a time decodes exactly as one sent whole', () => {
    const wire = encodeMilterCommand({ type: 'HEADER', name: 'Subject', value: 'y'.repeat(20_000) });
    const everyByte = Array.from({ length: wire.length - 1 }, (_, i) => i + 1);
    expect(decodeIn('command', wire, everyByte)).toEqual(decodeIn('command', wire, []));
  });

  test('details are log-safe: control bytes escaped, long strings cut', () => {
    const results = decodeIn('command', encodeMilterFrame(0x48, Buffer.from(`\x01\x1b[31m${'y'.repeat(300)}`)));
    const error = results[0];
    if (error?.kind !== 'error') throw new Error('expected an error');
    expect(error.code).toBe('missing-nul');
    expect(error.detail).not.toMatch(/[\x00-\x1f]/);
    expect(error.detail).toContain('\\\\x1b');
    expect(error.detail.length).toBeLessThan(200);
  });
});

describe('encoders refuse what cannot be framed', () => {
  test.each([
    ['NUL in a HELO', { type: 'HELO', helo: 'a\0b' }],
    ['MAIL without address', { type: 'MAIL', args: [] }],
    ['port out of range', { type: 'CONNECT', hostname: 'h', family: '4', port: 70000, address: '1.2.3.4' }],
    ['family 4 without address', { type: 'CONNECT', hostname: 'h', family: '4', port: 25 }],
    ['bad family', { type: 'CONNECT', hostname: 'h', family: 'X', port: 25, address: 'a' }],
    ['macro stage of two letters', { type: 'MACRO', stage: 'CC', macros: [] }],
    ['negative version', { type: 'OPTNEG', version: -1, actions: 0, protocol: 0 }],
  ])('command: %s', (_name, command) => {
    expect(() => encodeMilterCommand(command as MilterCommand)).toThrow(RangeError);
  });
  test.each([
    ['macro name with a space', { type: 'OPTNEG', version: 6, actions: 0, protocol: 0, symbolLists: [{ stage: 1, macros: ['a b'] }] }],
    ['ESMTP arg with a space', { type: 'CHGFROM', from: '<a@b>', args: ['A=1 B=2'] }],
    ['index above u32', { type: 'INSHEADER', index: 2 ** 32, name: 'X', value: 'y' }],
    ['NUL in a quarantine reason', { type: 'QUARANTINE', reason: 'a\0' }],
  ])('reply: %s', (_name, reply) => {
    expect(() => encodeMilterReply(reply as MilterReply)).toThrow(RangeError);
  });
});

describe('constants for logs', () => {
  test('flag and code names', () => {
    expect(describeMilterFlags(SMFIF_ADDHDRS | SMFIF_QUARANTINE, SMFIF_NAMES)).toBe('SMFIF_ADDHDRS|SMFIF_QUARANTINE');
    expect(describeMilterFlags(SMFIP_NR_BODY | SMFIP_MDS_1M | 0x80000000, SMFIP_NAMES)).toBe('SMFIP_NR_BODY|SMFIP_MDS_1M|0x80000000');
    expect(describeMilterFlags(0, SMFIF_NAMES)).toBe('0');
    expect(milterCodeName(0x52, SMFIC_NAMES)).toBe('SMFIC_RCPT');
    expect(milterCodeName(0x7a, SMFIC_NAMES)).toBe('0x7a');
  });
});

// --- properties ----------------------------------------------------------------------------

const text = fc.string({ unit: 'grapheme', maxLength: 30 }).filter((s) => !s.includes('\0'));
const word = fc.stringMatching(/^[!-+\--~]{1,12}$/); // printable, no space, no comma
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = fc.uint8Array({ maxLength: 300 });

const commandArb: fc.Arbitrary<MilterCommand> = fc.oneof(
  fc.record({ type: fc.constant('OPTNEG' as const), version: u32, actions: u32, protocol: u32 }),
  fc.record({
    type: fc.constant('MACRO' as const),
    stage: fc.constantFrom('C', 'H', 'M', 'R', 'T', 'L', 'N', 'B', 'E', 'U'),
    macros: fc.array(fc.tuple(text, text), { maxLength: 8 }),
  }),
  fc.record({ type: fc.constant('CONNECT' as const), hostname: text, family: fc.constant('U' as const) }),
  fc.record({ type: fc.constant('CONNECT' as const), hostname: text, family: fc.constant('4' as const), port: fc.nat(0xffff), address: fc.ipV4() }),
  fc.record({ type: fc.constant('CONNECT' as const), hostname: text, family: fc.constant('6' as const), port: fc.nat(0xffff), address: fc.ipV6() }),
  fc.record({ type: fc.constant('CONNECT' as const), hostname: text, family: fc.constant('L' as const), port: fc.nat(0xffff), address: text }),
  fc.record({ type: fc.constant('HELO' as const), helo: text }),
  fc.record({ type: fc.constantFrom('MAIL' as const, 'RCPT' as const), args: fc.array(text, { minLength: 1, maxLength: 5 }) }),
  fc.record({ type: fc.constant('HEADER' as const), name: text, value: text }),
  fc.record({ type: fc.constant('BODY' as const), chunk: bytes }),
  fc.record({ type: fc.constant('UNKNOWN' as const), command: text }),
  fc.record({ type: fc.constantFrom('DATA' as const, 'EOH' as const, 'BODYEOB' as const, 'ABORT' as const, 'QUIT' as const, 'QUIT_NC' as const) }),
);

const replyArb: fc.Arbitrary<MilterReply> = fc.oneof(
  fc.record({
    type: fc.constantFrom(
      'CONTINUE' as const,
      'ACCEPT' as const,
      'REJECT' as const,
      'TEMPFAIL' as const,
      'DISCARD' as const,
      'PROGRESS' as const,
      'SKIP' as const,
      'SHUTDOWN' as const,
      'CONN_FAIL' as const,
    ),
  }),
  fc.record({
    type: fc.constant('OPTNEG' as const),
    version: u32,
    actions: u32,
    protocol: u32,
    symbolLists: fc.array(fc.record({ stage: u32, macros: fc.array(word, { maxLength: 6 }) }), { maxLength: 7 }),
  }),
  fc
    .tuple(fc.constantFrom('4', '5'), fc.integer({ min: 0, max: 99 }), fc.constantFrom(' ', '-'), text)
    .map(([c, n, sep, t]) => ({ type: 'REPLYCODE' as const, text: `${c}${String(n).padStart(2, '0')}${sep}${t}` })),
  fc.record({ type: fc.constant('ADDHEADER' as const), name: text, value: text }),
  fc.record({ type: fc.constantFrom('INSHEADER' as const, 'CHGHEADER' as const), index: u32, name: text, value: text }),
  fc.record({ type: fc.constantFrom('ADDRCPT' as const, 'DELRCPT' as const), rcpt: text }),
  fc.record({ type: fc.constant('ADDRCPT_PAR' as const), rcpt: text, args: fc.array(word, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('CHGFROM' as const), from: text, args: fc.array(word, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('REPLBODY' as const), chunk: bytes }),
  fc.record({ type: fc.constant('QUARANTINE' as const), reason: text }),
);

/** Sorted distinct cut points inside a buffer of `length` bytes. */
const cutsFor = (raw: number[], length: number): number[] => (length < 2 ? [] : [...new Set(raw.map((c) => 1 + (c % (length - 1))))].sort((a, b) => a - b));

describe('milter codec properties', () => {
  test('round trip: decode(encode(command)) is the command, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(commandArb, (command) => {
        const wire = encodeMilterCommand(command);
        const results = decodeIn('command', wire);
        expect(summarise(results)).toEqual({ values: [plain(command)] });
        const first = results[0];
        if (first?.kind !== 'command') throw new Error('expected a command');
        expect(encodeMilterCommand(first.command).equals(wire)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  test('round trip: decode(encode(reply)) is the reply, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(replyArb, (reply) => {
        const wire = encodeMilterReply(reply);
        const results = decodeIn('reply', wire);
        expect(summarise(results)).toEqual({ values: [plain(reply)] });
        const first = results[0];
        if (first?.kind !== 'reply') throw new Error('expected a reply');
        expect(encodeMilterReply(first.reply).equals(wire)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  test('arbitrary chunking gives identical results', () => {
    fc.assert(
      fc.property(fc.array(commandArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (commands, rawCuts) => {
        const wire = Buffer.concat(commands.map(encodeMilterCommand));
        const whole = summarise(decodeIn('command', wire));
        expect(whole).toEqual({ values: commands.map(plain) });
        expect(summarise(decodeIn('command', wire, cutsFor(rawCuts, wire.length)))).toEqual(whole);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.array(replyArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (replies, rawCuts) => {
        const wire = Buffer.concat(replies.map(encodeMilterReply));
        const whole = summarise(decodeIn('reply', wire));
        expect(whole).toEqual({ values: replies.map(plain) });
        expect(summarise(decodeIn('reply', wire, cutsFor(rawCuts, wire.length)))).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });

  test('the decoders never throw on random bytes, report at most one error, and then emit nothing', () => {
    const limits = { ...DEFAULT_MILTER_LIMITS, maxFrameBytes: 512, maxMacrosPerPacket: 4 };
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), fc.boolean(), (chunks, replies) => {
        const decoder = replies ? createMilterReplyDecoder(limits) : createMilterCommandDecoder(limits);
        let errors = 0;
        for (const chunk of chunks) {
          for (const r of decoder.push(chunk)) {
            if (errors > 0) throw new Error('result after an error');
            if (r.kind === 'error') errors++;
          }
          expect(decoder.pendingBytes).toBeLessThanOrEqual(4 + limits.maxFrameBytes);
        }
        expect(errors).toBeLessThanOrEqual(1);
        expect(decoder.failed).toBe(errors === 1);
      }),
      { numRuns: 1000 },
    );
  });

  test('random bytes inside well-framed packets never throw either', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 60 })), { maxLength: 10 }), (frames) => {
        const wire = Buffer.concat(frames.map(([code, payload]) => encodeMilterFrame(code, payload)));
        for (const results of [decodeIn('command', wire), decodeIn('reply', wire)]) {
          const errorAt = results.findIndex((r) => r.kind === 'error');
          expect(errorAt === -1 || errorAt === results.length - 1).toBe(true);
          expect(results.length).toBeLessThanOrEqual(frames.length);
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('a frame is never emitted past its length: the next packet stays pending, byte for byte', () => {
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 6 }), commandArb, fc.nat(), (commands, next, rawCut) => {
        const nextWire = encodeMilterCommand(next);
        const partial = nextWire.subarray(0, rawCut % nextWire.length); // never the whole next packet
        const decoder = createMilterCommandDecoder();
        const results = decoder.push(Buffer.concat([...commands.map(encodeMilterCommand), partial]));
        expect(summarise(results)).toEqual({ values: commands.map(plain) });
        expect(decoder.pendingBytes).toBe(partial.length);
        // The rest of the next packet completes it exactly.
        expect(summarise(decoder.push(nextWire.subarray(partial.length)))).toEqual({ values: [plain(next)] });
        expect(decoder.pendingBytes).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  test('frames carry exactly len-1 payload bytes whatever follows them', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 100 }), { minLength: 1, maxLength: 8 }), fc.uint8Array({ maxLength: 3 }), (payloads, tail) => {
        const decoder = createMilterFrameDecoder();
        const wire = Buffer.concat([...payloads.map((p) => encodeMilterFrame(0x42, p)), tail]);
        const results = decoder.push(wire);
        expect(results.map((r) => (r.kind === 'frame' ? Buffer.from(r.frame.payload).toString('hex') : r.code))).toEqual(
          payloads.map((p) => Buffer.from(p).toString('hex')),
        );
        expect(decoder.pendingBytes).toBe(tail.length);
      }),
      { numRuns: 300 },
    );
  });
});
