// The lean milter client of bench/milter-load.mjs (`--client lean`): the MTA
// side of one milter connection with as little CPU of its own as it can, so
// that the generator, which shares the machine's cores with the daemon, does
// not hide the daemon's figure.
//
// It writes what the project's createMilterClient writes, write for write: one
// write(2) per event, holding the event's MACRO packet and the command; the
// commands the filter negotiated no reply for (SMFIP_NR_*) written one after
// another without waiting, as Postfix and sendmail do; a reply awaited for
// every other one. What it leaves out is the per-packet encoder, the full reply
// decoder and a timer per request: packets are latin1 strings turned into one
// Buffer each, replies are read for their command byte only (modifications
// counted, SMFIR_PROGRESS skipped), and one watchdog a second checks the
// deadline. checkLeanPackets() proves at start that its bytes equal the
// project's encoder's.
import { encodeMilterCommand, MILTER_COMMAND_CODES, MILTER_REPLY_CODES, milterExpectsReply, milterSendsEvent } from '../../packages/milter-proto/dist/index.js';

/** Modification replies, only valid before the final reply to end of message. */
const MODIFICATION_TYPES = ['ADDRCPT', 'DELRCPT', 'ADDRCPT_PAR', 'REPLBODY', 'CHGFROM', 'ADDHEADER', 'INSHEADER', 'CHGHEADER', 'QUARANTINE'];
/** Final replies: SMFIR_* command byte (as a character) -> reply type, from the codec's table. */
const FINAL_TYPES = ['CONTINUE', 'ACCEPT', 'REJECT', 'TEMPFAIL', 'DISCARD', 'REPLYCODE', 'SKIP', 'OPTNEG'];
const REPLY_TYPE = Object.fromEntries(FINAL_TYPES.map((type) => [String.fromCharCode(MILTER_REPLY_CODES[type]), type]));
const MODIFICATIONS = new Set(MODIFICATION_TYPES.map((type) => String.fromCharCode(MILTER_REPLY_CODES[type])));
const PROGRESS = String.fromCharCode(MILTER_REPLY_CODES.PROGRESS);
const REPLY_CODE_OPTNEG = String.fromCharCode(MILTER_REPLY_CODES.OPTNEG);

/** SMFIC_* command bytes as characters, from the codec's table. */
const CODE = Object.fromEntries(Object.entries(MILTER_COMMAND_CODES).map(([type, code]) => [type, String.fromCharCode(code)]));

const u32 = (n) => String.fromCharCode((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);

/** The body of one packet (command byte and payload) as a latin1 string; the length is added by toBytes. */
export const leanPacket = {
  optneg: (version, actions, protocol) => `${CODE.OPTNEG}${u32(version)}${u32(actions)}${u32(protocol)}`,
  /** macros: [name, value] pairs, for the event with command byte `stage`. */
  macro: (stage, macros) => `${CODE.MACRO}${stage}${macros.map(([n, v]) => `${n}\0${v}\0`).join('')}`,
  connect: (hostname, port, address) => `${CODE.CONNECT}${hostname}\x004${String.fromCharCode(port >> 8, port & 0xff)}${address}\0`,
  helo: (helo) => `${CODE.HELO}${helo}\0`,
  mail: (args) => `${CODE.MAIL}${args.join('\0')}\0`,
  rcpt: (args) => `${CODE.RCPT}${args.join('\0')}\0`,
  header: (name, value) => `${CODE.HEADER}${name}\0${value}\0`,
  bare: (type) => CODE[type],
};

/** One write's bytes: every packet framed with its 4-byte length, in one Buffer. */
export function toBytes(...packets) {
  let size = 0;
  for (const p of packets) size += 4 + p.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of packets) {
    out.writeUInt32BE(p.length, at);
    out.latin1Write(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** Throws unless the lean packets equal encodeMilterCommand's bytes for the same values. */
export function checkLeanPackets() {
  const body = Buffer.alloc(300, 0x61).toString('latin1');
  const cases = [
    [leanPacket.optneg(6, 0x1ff, 0x1fffff), { type: 'OPTNEG', version: 6, actions: 0x1ff, protocol: 0x1fffff }],
    [leanPacket.macro('C', [['j', 'mx.example.com'], ['_', 'h [10.0.0.1]']]), { type: 'MACRO', stage: 'C', macros: [['j', 'mx.example.com'], ['_', 'h [10.0.0.1]']] }],
    [leanPacket.connect('mail.example.org', 41007, '10.1.2.3'), { type: 'CONNECT', hostname: 'mail.example.org', family: '4', port: 41007, address: '10.1.2.3' }],
    [leanPacket.helo('mail.example.org'), { type: 'HELO', helo: 'mail.example.org' }],
    [leanPacket.mail(['<a@b.example>', 'SIZE=5']), { type: 'MAIL', args: ['<a@b.example>', 'SIZE=5'] }],
    [leanPacket.rcpt(['<c@d.example>']), { type: 'RCPT', args: ['<c@d.example>'] }],
    [leanPacket.header('Subject', 'hello\n\tthere'), { type: 'HEADER', name: 'Subject', value: 'hello\n\tthere' }],
    [`${CODE.BODY}${body}`, { type: 'BODY', chunk: Buffer.from(body, 'latin1') }],
    ...['DATA', 'EOH', 'BODYEOB', 'ABORT', 'QUIT', 'QUIT_NC'].map((type) => [leanPacket.bare(type), { type }]),
  ];
  for (const [lean, command] of cases) {
    if (!toBytes(lean).equals(encodeMilterCommand(command))) throw new Error(`lean milter packet for ${command.type} differs from encodeMilterCommand`);
  }
}

/**
 * createLeanMilterConnection - the MTA side over one connected socket.
 * request(bytes) writes and resolves with the final reply's command byte
 * (after any modifications, counted in `modifications`); send(bytes) writes
 * without waiting. One request at a time, as an MTA's milter client does.
 * Rejects on a reply nobody waits for, a modification outside end of message,
 * a closed socket or the deadline.
 */
export function createLeanMilterConnection(socket, { timeoutMs }) {
  let buffered = Buffer.alloc(0);
  let waiter;
  let failure;
  let since = 0;
  const fail = (error) => {
    failure ??= error;
    clearInterval(watchdog);
    socket.destroy();
    const w = waiter;
    waiter = undefined;
    w?.reject(error);
  };
  const watchdog = setInterval(() => {
    if (waiter !== undefined && performance.now() - since > timeoutMs) fail(new Error(`milter ${waiter.what} reply timed out after ${timeoutMs} ms`));
  }, 1000);
  socket.on('data', (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    let at = 0;
    while (buffered.length - at >= 5) {
      const length = buffered.readUInt32BE(at);
      if (buffered.length - at < 4 + length) break;
      const code = String.fromCharCode(buffered[at + 4]);
      const payload = code === REPLY_CODE_OPTNEG ? buffered.subarray(at + 5, at + 4 + length) : undefined;
      at += 4 + length;
      if (code === PROGRESS) {
        since = performance.now();
        continue;
      }
      if (waiter === undefined) return fail(new Error(`milter filter sent an unsolicited ${code}`));
      if (MODIFICATIONS.has(code)) {
        if (waiter.what !== 'BODYEOB') return fail(new Error(`milter filter sent modification ${code} in reply to ${waiter.what}`));
        waiter.modifications++;
        continue;
      }
      const name = REPLY_TYPE[code];
      if (name === undefined) return fail(new Error(`milter filter sent unknown reply ${JSON.stringify(code)}`));
      const w = waiter;
      waiter = undefined;
      w.resolve({ reply: name, modifications: w.modifications, payload });
    }
    buffered = at === buffered.length ? Buffer.alloc(0) : buffered.subarray(at);
  });
  socket.on('error', (error) => fail(error));
  socket.on('close', () => fail(new Error('milter connection closed')));
  return {
    request(bytes, what) {
      if (failure !== undefined) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiter = { what, resolve, reject, modifications: 0 };
        since = performance.now();
        socket.write(bytes);
      });
    },
    send(bytes) {
      if (failure === undefined) socket.write(bytes);
    },
    close() {
      clearInterval(watchdog);
      failure ??= new Error('milter client closed');
      socket.end();
    },
    get failed() {
      return failure !== undefined;
    },
  };
}

/** What an MTA bound by the filter's OPTNEG reply does per event: send it at all, wait for a reply. */
export function leanEventPlan(optnegPayload) {
  const agreed = { version: optnegPayload.readUInt32BE(0), actions: optnegPayload.readUInt32BE(4), protocol: optnegPayload.readUInt32BE(8) };
  const plan = {};
  for (const type of ['CONNECT', 'HELO', 'MAIL', 'RCPT', 'DATA', 'HEADER', 'EOH', 'BODY']) {
    plan[type] = { sends: milterSendsEvent(agreed, type), waits: milterExpectsReply(agreed, type) };
  }
  return { agreed, plan };
}
