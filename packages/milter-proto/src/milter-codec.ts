/**
 * milter-codec - Sendmail milter packets <-> typed values (protocols.md B.1-B.4,
 * libmilter engine.c / comm.c, Postfix milter8.c).
 *
 * Framing: `u32 len` (big-endian, counts the command byte) + `char cmd` +
 * `data[len-1]`. Strings are NUL-terminated; argv payloads are NUL-terminated
 * strings running to the end of the packet; BODY and REPLBODY are raw bytes.
 *
 * Decoding is incremental and pure: `push(chunk)` returns every result the
 * bytes complete, in order. It never throws on peer input; the first error is
 * returned as a result with a stable code and a log-safe detail, after which
 * the decoder stays failed (the caller closes the connection; the MTA then
 * applies its default action). Two decoders exist, one per direction:
 * commands (MTA -> filter, what our milter reads) and replies (filter -> MTA,
 * what our test/load client reads). Encoders exist for every command and reply
 * so both sides can be built and tested; they throw RangeError on values that
 * cannot be framed (a bug on our side, never peer input).
 *
 * Limits: a packet's `len` must be >= 1 (Postfix, rspamd; pitfall C.2) and <=
 * `maxFrameBytes` (default 1 MiB: Postfix sends a whole header, up to
 * header_size_limit = 100 KiB, in one packet, so libmilter's 64 KiB cap would
 * break real traffic; pitfall C.3). Nothing is allocated from a length before
 * it has passed that check. A MACRO packet may carry at most
 * `maxMacrosPerPacket` pairs.
 *
 * Strictness: every string must end with a NUL inside its packet, fixed fields
 * must be complete and nothing may follow the last field ('trailing-bytes');
 * commands without payload (DATA, EOH, BODYEOB, ABORT, QUIT, QUIT_NC) must be
 * empty, as Postfix demands of payload-free replies.
 *
 * LIMITATIONS: strings are decoded as UTF-8; bytes that are not valid UTF-8
 * become U+FFFD, so header values and addresses are not byte-exact (BODY
 * chunks are). libmilter accepts body bytes inside BODYEOB; no MTA sends them
 * and we reject them as 'trailing-bytes'. CHGFROM / ADDRCPT_PAR carry their
 * ESMTP arguments as one space-separated string (as libmilter sends and
 * Postfix reads them); we split and join on spaces, so runs of spaces do not
 * survive a round trip. CONNECT addresses are normalised (sendmail's `IPv6:`
 * tag and `[...]` brackets removed), so a sendmail-form packet re-encodes in
 * the Postfix form.
 */

import {
  MILTER_LEN_BYTES,
  MILTER_OPTLEN,
  SMFIA_INET,
  SMFIA_INET6,
  SMFIA_UNIX,
  SMFIA_UNKNOWN,
  SMFIC_ABORT,
  SMFIC_BODY,
  SMFIC_BODYEOB,
  SMFIC_CONNECT,
  SMFIC_DATA,
  SMFIC_EOH,
  SMFIC_HEADER,
  SMFIC_HELO,
  SMFIC_MACRO,
  SMFIC_MAIL,
  SMFIC_NAMES,
  SMFIC_OPTNEG,
  SMFIC_QUIT,
  SMFIC_QUIT_NC,
  SMFIC_RCPT,
  SMFIC_UNKNOWN,
  SMFIR_ACCEPT,
  SMFIR_ADDHEADER,
  SMFIR_ADDRCPT,
  SMFIR_ADDRCPT_PAR,
  SMFIR_CHGFROM,
  SMFIR_CHGHEADER,
  SMFIR_CONN_FAIL,
  SMFIR_CONTINUE,
  SMFIR_DELRCPT,
  SMFIR_DISCARD,
  SMFIR_INSHEADER,
  SMFIR_NAMES,
  SMFIR_OPTNEG,
  SMFIR_PROGRESS,
  SMFIR_QUARANTINE,
  SMFIR_REJECT,
  SMFIR_REPLBODY,
  SMFIR_REPLYCODE,
  SMFIR_SETSYMLIST,
  SMFIR_SHUTDOWN,
  SMFIR_SKIP,
  SMFIR_TEMPFAIL,
  milterCodeName,
} from './milter-constants.js';

// --- limits -----------------------------------------------------------------------

/** Named, configurable caps; the codec enforces the first two, the session the rest. */
export interface MilterLimits {
  /** Largest packet `len` (command byte + data) accepted. */
  readonly maxFrameBytes: number;
  /** Most name/value pairs in one SMFIC_MACRO packet. */
  readonly maxMacrosPerPacket: number;
  /** Most RCPT commands in one message (Postfix smtpd_recipient_limit is 1000; RCPT_REJ adds rejected ones). */
  readonly maxRecipientsPerMessage: number;
  /** Most HEADER commands in one message. */
  readonly maxHeadersPerMessage: number;
  /** Most header bytes (names + values) the session keeps for one message. */
  readonly maxHeaderBytesPerMessage: number;
}

export const DEFAULT_MILTER_LIMITS: MilterLimits = {
  maxFrameBytes: 1024 * 1024,
  maxMacrosPerPacket: 256,
  maxRecipientsPerMessage: 4096,
  maxHeadersPerMessage: 2048,
  maxHeaderBytesPerMessage: 4 * 1024 * 1024,
};

/** The limits the codec itself needs. */
export type MilterCodecLimits = Pick<MilterLimits, 'maxFrameBytes' | 'maxMacrosPerPacket'>;

// --- errors -------------------------------------------------------------------------

/** Stable error codes of the codec; never reused for another meaning. */
export type MilterCodecErrorCode =
  /** `len` is 0: there is no command byte. */
  | 'frame-empty'
  /** `len` exceeds maxFrameBytes. */
  | 'frame-too-large'
  /** A command byte that is not an SMFIC_* we know. */
  | 'bad-command-byte'
  /** A reply byte that is not an SMFIR_* we know (or SMFIR_SETSYMLIST outside OPTNEG). */
  | 'bad-reply-byte'
  /** The packet ends before a required field (family, port, OPTNEG words, a string). */
  | 'truncated'
  /** A string field runs to the end of the packet without its NUL. */
  | 'missing-nul'
  /** Bytes follow the last field of the packet. */
  | 'trailing-bytes'
  /** SMFIC_CONNECT family byte is not 4, 6, L or U. */
  | 'bad-family'
  /** More than maxMacrosPerPacket pairs in one SMFIC_MACRO. */
  | 'too-many-macros'
  /** SMFIR_REPLYCODE text does not start with `[45]dd` and a space or hyphen. */
  | 'bad-replycode';

export interface MilterCodecError {
  readonly kind: 'error';
  readonly code: MilterCodecErrorCode;
  /** Log-safe: short, control bytes escaped. */
  readonly detail: string;
}

// --- frames -------------------------------------------------------------------------

/** One packet: the command (or reply) byte and its data. */
export interface MilterFrame {
  readonly code: number;
  /** May share memory with the chunk that was pushed; copy what you keep. */
  readonly payload: Buffer;
}

export type MilterFrameResult = { readonly kind: 'frame'; readonly frame: MilterFrame } | MilterCodecError;

export interface MilterDecoder<R> {
  /** Feed bytes; returns every result they complete, the last one possibly an error. */
  push(chunk: Uint8Array): R[];
  /** Bytes held that do not yet form a whole packet. */
  readonly pendingBytes: number;
  readonly failed: boolean;
}

/** First allocation for a packet split over reads; it doubles from there as bytes arrive. */
const MIN_PARTIAL_PACKET_BYTES = 4096;

/** createMilterFrameDecoder - split a byte stream into packets, checking `len` first. */
export function createMilterFrameDecoder(limits: Pick<MilterLimits, 'maxFrameBytes'> = DEFAULT_MILTER_LIMITS): MilterDecoder<MilterFrameResult> {
  const header = Buffer.alloc(MILTER_LEN_BYTES);
  let headerFill = 0;
  // A packet split over reads is copied into `body`, which grows (doubling, from 4 KiB) as
  // bytes arrive: memory follows what a peer sent, not the length it announced (up to
  // maxFrameBytes), so a peer that sends a length and then dribbles or stops holds at most
  // twice what it sent.
  let expected = 0; // the packet's length, 0 between packets
  let body: Buffer | undefined;
  let bodyFill = 0;
  let failed = false;

  /** Room for `n` more bytes in `body`, keeping what it holds. */
  function reserve(n: number): Buffer {
    if (body !== undefined && body.length - bodyFill >= n) return body;
    const capacity = Math.min(expected, Math.max(MIN_PARTIAL_PACKET_BYTES, bodyFill + n, (body?.length ?? 0) * 2));
    const grown = Buffer.allocUnsafe(capacity);
    body?.copy(grown, 0, 0, bodyFill);
    body = grown;
    return grown;
  }

  function push(chunk: Uint8Array): MilterFrameResult[] {
    const out: MilterFrameResult[] = [];
    if (failed) return out;
    const input = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let pos = 0;
    while (pos < input.length) {
      if (expected === 0) {
        let len: number;
        if (headerFill === 0 && input.length - pos >= MILTER_LEN_BYTES) {
          len = input.readUInt32BE(pos);
          pos += MILTER_LEN_BYTES;
        } else {
          const n = Math.min(MILTER_LEN_BYTES - headerFill, input.length - pos);
          input.copy(header, headerFill, pos, pos + n);
          headerFill += n;
          pos += n;
          if (headerFill < MILTER_LEN_BYTES) break;
          headerFill = 0;
          len = header.readUInt32BE(0);
        }
        if (len === 0) {
          failed = true;
          out.push(codecError('frame-empty', 'packet length 0 (no command byte)'));
          return out;
        }
        if (len > limits.maxFrameBytes) {
          failed = true;
          out.push(codecError('frame-too-large', `packet length ${len} exceeds ${limits.maxFrameBytes}`));
          return out;
        }
        if (input.length - pos >= len) {
          // Whole packet in this chunk: no copy.
          out.push({ kind: 'frame', frame: { code: input[pos] as number, payload: input.subarray(pos + 1, pos + len) } });
          pos += len;
          continue;
        }
        expected = len;
      }
      const n = Math.min(expected - bodyFill, input.length - pos);
      input.copy(reserve(n), bodyFill, pos, pos + n);
      bodyFill += n;
      pos += n;
      if (bodyFill === expected) {
        const packet = (body as Buffer).subarray(0, expected);
        out.push({ kind: 'frame', frame: { code: packet[0] as number, payload: packet.subarray(1) } });
        expected = 0;
        body = undefined;
        bodyFill = 0;
      }
    }
    return out;
  }

  return {
    push,
    get pendingBytes() {
      return expected === 0 ? headerFill : MILTER_LEN_BYTES + bodyFill;
    },
    get failed() {
      return failed;
    },
  };
}

// --- MTA -> filter commands ------------------------------------------------------------

/** SMFIC_CONNECT family: SMFIA_INET '4', SMFIA_INET6 '6', SMFIA_UNIX 'L', SMFIA_UNKNOWN 'U'. */
export type MilterFamily = '4' | '6' | 'L' | 'U';

/** What SMFIC_CONNECT says about the SMTP client. */
export interface MilterConnectInfo {
  /** `{client_name}`-like: the verified name, or `[address]`. */
  readonly hostname: string;
  readonly family: MilterFamily;
  /** TCP port (0 for 'L'); absent for 'U'. */
  readonly port?: number;
  /** Plain IP address (no `IPv6:` tag, no brackets) or socket path; absent for 'U'. */
  readonly address?: string;
}

/** One macro as sent: name as configured (`j`, `{daemon_name}`), value possibly empty. */
export type MilterMacroPair = readonly [name: string, value: string];

/** Commands with an empty payload. */
export type MilterBareCommandType = 'DATA' | 'EOH' | 'BODYEOB' | 'ABORT' | 'QUIT' | 'QUIT_NC';

/** An MTA -> filter packet, `type` being the SMFIC_ name without its prefix. */
export type MilterCommand =
  | { readonly type: 'OPTNEG'; readonly version: number; readonly actions: number; readonly protocol: number }
  /** `stage` is the SMFIC_* letter of the command the macros belong to, e.g. 'C'. */
  | { readonly type: 'MACRO'; readonly stage: string; readonly macros: readonly MilterMacroPair[] }
  | ({ readonly type: 'CONNECT' } & MilterConnectInfo)
  | { readonly type: 'HELO'; readonly helo: string }
  /** args[0] is the sender as typed (`<a@b>`, `<>`, or '' from Postfix non-SMTP), then ESMTP args. */
  | { readonly type: 'MAIL'; readonly args: readonly string[] }
  | { readonly type: 'RCPT'; readonly args: readonly string[] }
  /** value may be empty; folded values contain bare `\n` + whitespace. */
  | { readonly type: 'HEADER'; readonly name: string; readonly value: string }
  | { readonly type: 'BODY'; readonly chunk: Uint8Array }
  | { readonly type: 'UNKNOWN'; readonly command: string }
  | { readonly type: MilterBareCommandType };

export type MilterCommandType = MilterCommand['type'];

export type MilterCommandResult = { readonly kind: 'command'; readonly command: MilterCommand } | MilterCodecError;

/** SMFIC byte for each command type. */
export const MILTER_COMMAND_CODES: Readonly<Record<MilterCommandType, number>> = {
  OPTNEG: SMFIC_OPTNEG,
  MACRO: SMFIC_MACRO,
  CONNECT: SMFIC_CONNECT,
  HELO: SMFIC_HELO,
  MAIL: SMFIC_MAIL,
  RCPT: SMFIC_RCPT,
  DATA: SMFIC_DATA,
  HEADER: SMFIC_HEADER,
  EOH: SMFIC_EOH,
  BODY: SMFIC_BODY,
  BODYEOB: SMFIC_BODYEOB,
  ABORT: SMFIC_ABORT,
  QUIT: SMFIC_QUIT,
  QUIT_NC: SMFIC_QUIT_NC,
  UNKNOWN: SMFIC_UNKNOWN,
};

const BARE_COMMANDS: Readonly<Record<number, MilterBareCommandType>> = {
  [SMFIC_DATA]: 'DATA',
  [SMFIC_EOH]: 'EOH',
  [SMFIC_BODYEOB]: 'BODYEOB',
  [SMFIC_ABORT]: 'ABORT',
  [SMFIC_QUIT]: 'QUIT',
  [SMFIC_QUIT_NC]: 'QUIT_NC',
};

/** parseMilterCommand - one packet from the MTA as a typed command, or why not. */
export function parseMilterCommand(frame: MilterFrame, limits: Pick<MilterLimits, 'maxMacrosPerPacket'> = DEFAULT_MILTER_LIMITS): MilterCommandResult {
  const p = frame.payload;
  const name = milterCodeName(frame.code, SMFIC_NAMES);
  const bare = BARE_COMMANDS[frame.code];
  if (bare !== undefined) {
    if (p.length !== 0) return codecError('trailing-bytes', `${name} with ${p.length} payload bytes`);
    return command({ type: bare });
  }
  switch (frame.code) {
    case SMFIC_OPTNEG: {
      if (p.length < MILTER_OPTLEN) return codecError('truncated', `${name} payload of ${p.length} bytes, need ${MILTER_OPTLEN}`);
      if (p.length > MILTER_OPTLEN) return codecError('trailing-bytes', `${name} payload of ${p.length} bytes, expected ${MILTER_OPTLEN}`);
      return command({ type: 'OPTNEG', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8) });
    }
    case SMFIC_MACRO: {
      if (p.length < 1) return codecError('truncated', `${name} without a command byte`);
      const strings = splitStrings(p, 1, name, limits.maxMacrosPerPacket * 2, 'too-many-macros');
      if (!Array.isArray(strings)) return strings;
      if (strings.length % 2 !== 0) return codecError('truncated', `${name} macro ${preview(strings[strings.length - 1] ?? '')} has no value`);
      const macros: MilterMacroPair[] = [];
      for (let i = 0; i < strings.length; i += 2) macros.push([strings[i] as string, strings[i + 1] as string]);
      return command({ type: 'MACRO', stage: String.fromCharCode(p[0] as number), macros });
    }
    case SMFIC_CONNECT:
      return parseConnect(p, name);
    case SMFIC_HELO: {
      const s = exactStrings(p, 0, 1, name);
      return Array.isArray(s) ? command({ type: 'HELO', helo: s[0] as string }) : s;
    }
    case SMFIC_MAIL:
    case SMFIC_RCPT: {
      const args = splitStrings(p, 0, name);
      if (!Array.isArray(args)) return args;
      if (args.length === 0) return codecError('truncated', `${name} without an address`);
      return command({ type: frame.code === SMFIC_MAIL ? 'MAIL' : 'RCPT', args });
    }
    case SMFIC_HEADER: {
      const s = exactStrings(p, 0, 2, name);
      return Array.isArray(s) ? command({ type: 'HEADER', name: s[0] as string, value: s[1] as string }) : s;
    }
    case SMFIC_BODY:
      return command({ type: 'BODY', chunk: Buffer.from(p) });
    case SMFIC_UNKNOWN: {
      const s = exactStrings(p, 0, 1, name);
      return Array.isArray(s) ? command({ type: 'UNKNOWN', command: s[0] as string }) : s;
    }
    default:
      return codecError('bad-command-byte', `unknown command byte ${name}`);
  }
}

function parseConnect(p: Buffer, name: string): MilterCommandResult {
  const nul = p.indexOf(0);
  if (nul < 0) return codecError(p.length === 0 ? 'truncated' : 'missing-nul', `${name} hostname without NUL`);
  const hostname = p.toString('utf8', 0, nul);
  let pos = nul + 1;
  if (pos >= p.length) return codecError('truncated', `${name} without a family byte`);
  const familyByte = p[pos] as number;
  pos += 1;
  if (familyByte === SMFIA_UNKNOWN) {
    // Family U: the packet ends after the family byte (pitfall C.14).
    if (pos !== p.length) return codecError('trailing-bytes', `${name} family U followed by ${p.length - pos} bytes`);
    return command({ type: 'CONNECT', hostname, family: 'U' });
  }
  if (familyByte !== SMFIA_INET && familyByte !== SMFIA_INET6 && familyByte !== SMFIA_UNIX) {
    return codecError('bad-family', `${name} family byte 0x${familyByte.toString(16).padStart(2, '0')}`);
  }
  if (p.length - pos < 2) return codecError('truncated', `${name} without a port`);
  const port = p.readUInt16BE(pos);
  pos += 2;
  const s = exactStrings(p, pos, 1, name);
  if (!Array.isArray(s)) return s;
  const family = String.fromCharCode(familyByte) as MilterFamily;
  const raw = s[0] as string;
  return command({ type: 'CONNECT', hostname, family, port, address: family === 'L' ? raw : normaliseAddress(raw) });
}

/** Remove `[...]` and sendmail's case-insensitive `IPv6:` tag (pitfall C.13). */
function normaliseAddress(raw: string): string {
  let a = raw;
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  if (a.length > 5 && a.slice(0, 5).toLowerCase() === 'ipv6:') a = a.slice(5);
  return a;
}

/** createMilterCommandDecoder - incremental decoder for what an MTA sends a milter. */
export function createMilterCommandDecoder(limits: MilterCodecLimits = DEFAULT_MILTER_LIMITS): MilterDecoder<MilterCommandResult> {
  return layer(createMilterFrameDecoder(limits), (frame) => parseMilterCommand(frame, limits));
}

// --- filter -> MTA replies --------------------------------------------------------------

/** Replies without payload. */
export type MilterBareReplyType = 'CONTINUE' | 'ACCEPT' | 'REJECT' | 'TEMPFAIL' | 'DISCARD' | 'PROGRESS' | 'SKIP' | 'SHUTDOWN' | 'CONN_FAIL';

/** A macro list for one SMFIM_* stage, sent in the OPTNEG reply (SETSYMLIST). */
export interface MilterSymbolList {
  readonly stage: number;
  readonly macros: readonly string[];
}

/** A filter -> MTA packet, `type` being the SMFIR_ name without its prefix. */
export type MilterReply =
  | { readonly type: MilterBareReplyType }
  | {
      readonly type: 'OPTNEG';
      readonly version: number;
      readonly actions: number;
      readonly protocol: number;
      readonly symbolLists: readonly MilterSymbolList[];
    }
  /** `NNN SP [x.y.z SP] text`, `%` doubled; multi-line joined with CRLF. */
  | { readonly type: 'REPLYCODE'; readonly text: string }
  | { readonly type: 'ADDHEADER'; readonly name: string; readonly value: string }
  | { readonly type: 'INSHEADER' | 'CHGHEADER'; readonly index: number; readonly name: string; readonly value: string }
  | { readonly type: 'ADDRCPT' | 'DELRCPT'; readonly rcpt: string }
  | { readonly type: 'ADDRCPT_PAR'; readonly rcpt: string; readonly args: readonly string[] }
  | { readonly type: 'CHGFROM'; readonly from: string; readonly args: readonly string[] }
  | { readonly type: 'REPLBODY'; readonly chunk: Uint8Array }
  | { readonly type: 'QUARANTINE'; readonly reason: string };

export type MilterReplyType = MilterReply['type'];

export type MilterReplyResult = { readonly kind: 'reply'; readonly reply: MilterReply } | MilterCodecError;

/** SMFIR byte for each reply type. */
export const MILTER_REPLY_CODES: Readonly<Record<MilterReplyType, number>> = {
  CONTINUE: SMFIR_CONTINUE,
  ACCEPT: SMFIR_ACCEPT,
  REJECT: SMFIR_REJECT,
  TEMPFAIL: SMFIR_TEMPFAIL,
  DISCARD: SMFIR_DISCARD,
  PROGRESS: SMFIR_PROGRESS,
  SKIP: SMFIR_SKIP,
  SHUTDOWN: SMFIR_SHUTDOWN,
  CONN_FAIL: SMFIR_CONN_FAIL,
  OPTNEG: SMFIR_OPTNEG,
  REPLYCODE: SMFIR_REPLYCODE,
  ADDHEADER: SMFIR_ADDHEADER,
  INSHEADER: SMFIR_INSHEADER,
  CHGHEADER: SMFIR_CHGHEADER,
  ADDRCPT: SMFIR_ADDRCPT,
  DELRCPT: SMFIR_DELRCPT,
  ADDRCPT_PAR: SMFIR_ADDRCPT_PAR,
  CHGFROM: SMFIR_CHGFROM,
  REPLBODY: SMFIR_REPLBODY,
  QUARANTINE: SMFIR_QUARANTINE,
};

const BARE_REPLIES: Readonly<Record<number, MilterBareReplyType>> = {
  [SMFIR_CONTINUE]: 'CONTINUE',
  [SMFIR_ACCEPT]: 'ACCEPT',
  [SMFIR_REJECT]: 'REJECT',
  [SMFIR_TEMPFAIL]: 'TEMPFAIL',
  [SMFIR_DISCARD]: 'DISCARD',
  [SMFIR_PROGRESS]: 'PROGRESS',
  [SMFIR_SKIP]: 'SKIP',
  [SMFIR_SHUTDOWN]: 'SHUTDOWN',
  [SMFIR_CONN_FAIL]: 'CONN_FAIL',
};

const REPLYCODE_START = /^[45]\d\d[ -]/;

/** parseMilterReply - one packet from a filter as a typed reply, or why not. */
export function parseMilterReply(frame: MilterFrame): MilterReplyResult {
  const p = frame.payload;
  const name = milterCodeName(frame.code, SMFIR_NAMES);
  const bare = BARE_REPLIES[frame.code];
  if (bare !== undefined) {
    if (p.length !== 0) return codecError('trailing-bytes', `${name} with ${p.length} payload bytes`);
    return reply({ type: bare });
  }
  switch (frame.code) {
    case SMFIR_OPTNEG: {
      if (p.length < MILTER_OPTLEN) return codecError('truncated', `${name} payload of ${p.length} bytes, need ${MILTER_OPTLEN}`);
      const symbolLists: MilterSymbolList[] = [];
      let pos = MILTER_OPTLEN;
      while (pos < p.length) {
        if (p.length - pos < 4) return codecError('truncated', `${name} symbol list without a complete stage number`);
        const stage = p.readUInt32BE(pos);
        const nul = p.indexOf(0, pos + 4);
        if (nul < 0) return codecError(pos + 4 === p.length ? 'truncated' : 'missing-nul', `${name} symbol list for stage ${stage} without NUL`);
        const macros = p.toString('utf8', pos + 4, nul).split(/[ ,]+/).filter((m) => m.length > 0);
        symbolLists.push({ stage, macros });
        pos = nul + 1;
      }
      return reply({ type: 'OPTNEG', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8), symbolLists });
    }
    case SMFIR_REPLYCODE: {
      const s = exactStrings(p, 0, 1, name);
      if (!Array.isArray(s)) return s;
      const text = s[0] as string;
      if (!REPLYCODE_START.test(text)) return codecError('bad-replycode', `${name} text ${preview(text)} is not "4xx/5xx ..."`);
      return reply({ type: 'REPLYCODE', text });
    }
    case SMFIR_ADDHEADER: {
      const s = exactStrings(p, 0, 2, name);
      return Array.isArray(s) ? reply({ type: 'ADDHEADER', name: s[0] as string, value: s[1] as string }) : s;
    }
    case SMFIR_INSHEADER:
    case SMFIR_CHGHEADER: {
      if (p.length < 4) return codecError('truncated', `${name} without a complete index`);
      const s = exactStrings(p, 4, 2, name);
      if (!Array.isArray(s)) return s;
      const type = frame.code === SMFIR_INSHEADER ? 'INSHEADER' : 'CHGHEADER';
      return reply({ type, index: p.readUInt32BE(0), name: s[0] as string, value: s[1] as string });
    }
    case SMFIR_ADDRCPT:
    case SMFIR_DELRCPT: {
      const s = exactStrings(p, 0, 1, name);
      return Array.isArray(s) ? reply({ type: frame.code === SMFIR_ADDRCPT ? 'ADDRCPT' : 'DELRCPT', rcpt: s[0] as string }) : s;
    }
    case SMFIR_ADDRCPT_PAR:
    case SMFIR_CHGFROM: {
      // address\0 [args\0]: the ESMTP args travel as one string (milter8.c reads at most two).
      const s = splitStrings(p, 0, name, 2);
      if (!Array.isArray(s)) return s;
      if (s.length === 0) return codecError('truncated', `${name} without an address`);
      const args = (s[1] ?? '').split(' ').filter((a) => a.length > 0);
      const address = s[0] as string;
      return reply(frame.code === SMFIR_CHGFROM ? { type: 'CHGFROM', from: address, args } : { type: 'ADDRCPT_PAR', rcpt: address, args });
    }
    case SMFIR_REPLBODY:
      return reply({ type: 'REPLBODY', chunk: Buffer.from(p) });
    case SMFIR_QUARANTINE: {
      const s = exactStrings(p, 0, 1, name);
      return Array.isArray(s) ? reply({ type: 'QUARANTINE', reason: s[0] as string }) : s;
    }
    case SMFIR_SETSYMLIST:
      return codecError('bad-reply-byte', `${name} outside the OPTNEG reply`);
    default:
      return codecError('bad-reply-byte', `unknown reply byte ${name}`);
  }
}

/** createMilterReplyDecoder - incremental decoder for what a milter sends an MTA. */
export function createMilterReplyDecoder(limits: Pick<MilterLimits, 'maxFrameBytes'> = DEFAULT_MILTER_LIMITS): MilterDecoder<MilterReplyResult> {
  return layer(createMilterFrameDecoder(limits), parseMilterReply);
}

// --- encoders --------------------------------------------------------------------------

/** encodeMilterFrame - `len` + code + payload. */
export function encodeMilterFrame(code: number, payload: Uint8Array = EMPTY): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 0xff) throw new RangeError(`invalid milter code ${code}`);
  const out = Buffer.allocUnsafe(MILTER_LEN_BYTES + 1 + payload.length);
  out.writeUInt32BE(payload.length + 1, 0);
  out[MILTER_LEN_BYTES] = code;
  out.set(payload, MILTER_LEN_BYTES + 1);
  return out;
}

/** encodeMilterCommand - one MTA -> filter packet; throws RangeError on unframeable values. */
export function encodeMilterCommand(cmd: MilterCommand): Buffer {
  const code = MILTER_COMMAND_CODES[cmd.type];
  switch (cmd.type) {
    case 'OPTNEG':
      return encodeMilterFrame(code, words(cmd.version, cmd.actions, cmd.protocol));
    case 'MACRO': {
      const stage = cmd.stage.charCodeAt(0);
      if (cmd.stage.length !== 1 || stage > 0xff) throw new RangeError(`invalid macro stage ${JSON.stringify(cmd.stage)}`);
      return encodeMilterFrame(code, Buffer.concat([Buffer.of(stage), ...cmd.macros.flatMap(([n, v]) => [cstring(n, 'macro name'), cstring(v, 'macro value')])]));
    }
    case 'CONNECT': {
      const parts = [cstring(cmd.hostname, 'hostname'), Buffer.of(cmd.family.charCodeAt(0))];
      if (!['4', '6', 'L', 'U'].includes(cmd.family)) throw new RangeError(`invalid family ${JSON.stringify(cmd.family)}`);
      if (cmd.family !== 'U') {
        const port = cmd.port ?? 0;
        if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`invalid port ${port}`);
        if (cmd.address === undefined) throw new RangeError(`CONNECT family ${cmd.family} needs an address`);
        const portBytes = Buffer.alloc(2);
        portBytes.writeUInt16BE(port);
        parts.push(portBytes, cstring(cmd.address, 'address'));
      }
      return encodeMilterFrame(code, Buffer.concat(parts));
    }
    case 'HELO':
      return encodeMilterFrame(code, cstring(cmd.helo, 'helo'));
    case 'MAIL':
    case 'RCPT':
      if (cmd.args.length === 0) throw new RangeError(`${cmd.type} needs at least the address`);
      return encodeMilterFrame(code, Buffer.concat(cmd.args.map((a) => cstring(a, 'argument'))));
    case 'HEADER':
      return encodeMilterFrame(code, Buffer.concat([cstring(cmd.name, 'header name'), cstring(cmd.value, 'header value')]));
    case 'BODY':
      return encodeMilterFrame(code, cmd.chunk);
    case 'UNKNOWN':
      return encodeMilterFrame(code, cstring(cmd.command, 'command'));
    case 'DATA':
    case 'EOH':
    case 'BODYEOB':
    case 'ABORT':
    case 'QUIT':
    case 'QUIT_NC':
      return encodeMilterFrame(code);
  }
}

/** encodeMilterReply - one filter -> MTA packet; throws RangeError on unframeable values. */
export function encodeMilterReply(r: MilterReply): Buffer {
  const code = MILTER_REPLY_CODES[r.type];
  switch (r.type) {
    case 'OPTNEG': {
      const lists = r.symbolLists.flatMap((l) => {
        for (const m of l.macros) if (m.length === 0 || /[ ,\0]/.test(m)) throw new RangeError(`invalid macro name ${JSON.stringify(m)}`);
        return [words(l.stage), cstring(l.macros.join(' '), 'symbol list')];
      });
      return encodeMilterFrame(code, Buffer.concat([words(r.version, r.actions, r.protocol), ...lists]));
    }
    case 'REPLYCODE':
      return encodeMilterFrame(code, cstring(r.text, 'reply text'));
    case 'ADDHEADER':
      return encodeMilterFrame(code, Buffer.concat([cstring(r.name, 'header name'), cstring(r.value, 'header value')]));
    case 'INSHEADER':
    case 'CHGHEADER':
      return encodeMilterFrame(code, Buffer.concat([words(r.index), cstring(r.name, 'header name'), cstring(r.value, 'header value')]));
    case 'ADDRCPT':
    case 'DELRCPT':
      return encodeMilterFrame(code, cstring(r.rcpt, 'recipient'));
    case 'ADDRCPT_PAR':
      return encodeMilterFrame(code, addressWithArgs(r.rcpt, r.args));
    case 'CHGFROM':
      return encodeMilterFrame(code, addressWithArgs(r.from, r.args));
    case 'REPLBODY':
      return encodeMilterFrame(code, r.chunk);
    case 'QUARANTINE':
      return encodeMilterFrame(code, cstring(r.reason, 'quarantine reason'));
    case 'CONTINUE':
    case 'ACCEPT':
    case 'REJECT':
    case 'TEMPFAIL':
    case 'DISCARD':
    case 'PROGRESS':
    case 'SKIP':
    case 'SHUTDOWN':
    case 'CONN_FAIL':
      return encodeMilterFrame(code);
  }
}

// --- helpers ---------------------------------------------------------------------------

const EMPTY = new Uint8Array(0);

function codecError(code: MilterCodecErrorCode, detail: string): MilterCodecError {
  return { kind: 'error', code, detail };
}

function command(c: MilterCommand): MilterCommandResult {
  return { kind: 'command', command: c };
}

function reply(r: MilterReply): MilterReplyResult {
  return { kind: 'reply', reply: r };
}

function layer<R>(frames: MilterDecoder<MilterFrameResult>, parse: (frame: MilterFrame) => R | MilterCodecError): MilterDecoder<R | MilterCodecError> {
  let failed = false;
  return {
    push(chunk) {
      const out: (R | MilterCodecError)[] = [];
      if (failed) return out;
      for (const result of frames.push(chunk)) {
        const parsed = result.kind === 'frame' ? parse(result.frame) : result;
        out.push(parsed);
        if ((parsed as { kind: string }).kind === 'error') {
          // Later packets of the same chunk are dropped: the stream is unusable.
          failed = true;
          break;
        }
      }
      return out;
    },
    get pendingBytes() {
      return failed ? 0 : frames.pendingBytes;
    },
    get failed() {
      return failed;
    },
  };
}

/**
 * NUL-terminated strings from `start` to the end of the packet. With `max`,
 * more than `max` strings is the `overflow` error,
 * checked while splitting so a hostile packet costs no more than `max` strings.
 */
function splitStrings(
  p: Buffer,
  start: number,
  name: string,
  max?: number,
  overflow: MilterCodecErrorCode = 'trailing-bytes',
): string[] | MilterCodecError {
  const out: string[] = [];
  let pos = start;
  while (pos < p.length) {
    if (max !== undefined && out.length === max) {
      return codecError(overflow, `${name} with more than ${max} strings`);
    }
    const nul = p.indexOf(0, pos);
    if (nul < 0) return codecError('missing-nul', `${name} string ${preview(p.toString('utf8', pos, Math.min(p.length, pos + 100)))} without NUL`);
    out.push(p.toString('utf8', pos, nul));
    pos = nul + 1;
  }
  return out;
}

/** Exactly `count` strings from `start` to the end of the packet. */
function exactStrings(p: Buffer, start: number, count: number, name: string): string[] | MilterCodecError {
  const s = splitStrings(p, start, name, count);
  if (!Array.isArray(s)) return s;
  if (s.length < count) return codecError('truncated', `${name} with ${s.length} of ${count} strings`);
  return s;
}

function words(...values: number[]): Buffer {
  const out = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`invalid u32 ${v}`);
    out.writeUInt32BE(v, 4 * i);
  });
  return out;
}

function cstring(s: string, what: string): Buffer {
  if (s.includes('\0')) throw new RangeError(`${what} contains NUL`);
  return Buffer.from(`${s}\0`, 'utf8');
}

function addressWithArgs(address: string, args: readonly string[]): Buffer {
  for (const a of args) if (a.length === 0 || a.includes(' ')) throw new RangeError(`invalid ESMTP argument ${JSON.stringify(a)}`);
  return args.length === 0 ? cstring(address, 'address') : Buffer.concat([cstring(address, 'address'), cstring(args.join(' '), 'ESMTP arguments')]);
}

/** Log-safe excerpt: at most 100 characters, control characters escaped, quoted. */
function preview(text: string): string {
  const cut = text.length > 100 ? `${text.slice(0, 100)}...` : text;
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(cut.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}
