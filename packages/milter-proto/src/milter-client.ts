/**
 * milter-client - the MTA side of the milter protocol, for tests, tools and
 * load generators (protocols.md B.2-B.6).
 *
 * Over one Duplex: negotiate(offer) first, then one call per SMTP event, each
 * sending the event's MACRO packet (when macros are given) and the command,
 * and resolving with the filter's reply. Like a real MTA the client
 * - sends the MACRO packet even for an event the filter disabled, but not
 *   the event itself (NO* flags, and DATA / UNKNOWN below versions 4 / 3);
 * - does not wait for a reply covered by negotiated NR_* flags;
 * - collects modifications (and QUARANTINE) until the final reply to
 *   BODYEOB, and keeps waiting after SMFIR_PROGRESS (which restarts the
 *   deadline);
 * - treats as a protocol error what Postfix and sendmail refuse: a filter
 *   version above ours or outside 2/3/4/6, actions or protocol bits we did
 *   not offer, modifications outside BODYEOB or without their SMFIF_* action,
 *   SKIP other than for BODY, and any reply nobody waits for.
 * Replies are matched in FIFO order. Each request has a deadline; on a
 * timeout, a protocol error or a closed stream every outstanding request fails
 * and the stream is destroyed (a late reply would be matched to the wrong
 * request).
 *
 * LIMITATIONS: REPLYCODE text is only checked for its `[45]dd` start; BODY
 * chunks larger than MILTER_CHUNK_SIZE are refused rather than split (one
 * call, one packet, one reply).
 */

import type { Duplex } from 'node:stream';
import {
  MILTER_CHUNK_SIZE,
  SMFI_CURR_ACTS,
  SMFI_CURR_PROT,
  SMFIF_ADDHDRS,
  SMFIF_ADDRCPT,
  SMFIF_ADDRCPT_PAR,
  SMFIF_CHGBODY,
  SMFIF_CHGFROM,
  SMFIF_CHGHDRS,
  SMFIF_DELRCPT,
  SMFIF_NAMES,
  SMFIF_QUARANTINE,
} from './milter-constants.js';
import {
  createMilterReplyDecoder,
  DEFAULT_MILTER_LIMITS,
  encodeMilterCommand,
  MILTER_COMMAND_CODES,
  type MilterCommand,
  type MilterCommandType,
  type MilterConnectInfo,
  type MilterLimits,
  type MilterMacroPair,
  type MilterReply,
  type MilterReplyType,
} from './milter-codec.js';
import {
  MILTER_SUPPORTED_VERSIONS,
  milterExpectsReply,
  milterSendsEvent,
  type MilterAgreement,
  type MilterOffer,
  type MilterOptnegReply,
} from './milter-negotiate.js';

export interface MilterClientOptions {
  /** Per-request deadline in ms (restarted by SMFIR_PROGRESS); 0 disables it. */
  readonly timeoutMs?: number;
  readonly limits?: Pick<MilterLimits, 'maxFrameBytes'>;
}

/** The outcome of one event. */
export interface MilterClientResult {
  /** False when the event was negotiated away and not sent (its macros were). */
  readonly sent: boolean;
  /** The final reply; undefined when not sent or when NR_* means no reply comes. */
  readonly reply: MilterReply | undefined;
}

/** The outcome of end of message. */
export interface MilterEomResult {
  /** Modification replies (and QUARANTINE) in the order received. */
  readonly modifications: readonly MilterReply[];
  readonly reply: MilterReply;
}

/** Macros for the event: an object, or pairs when order or duplicates matter. */
export type MilterClientMacros = Readonly<Record<string, string>> | readonly MilterMacroPair[];

export interface MilterClient {
  /** Send SMFIC_OPTNEG (default: v6, every action, every protocol bit) and check the answer. */
  negotiate(offer?: Partial<MilterOffer>): Promise<MilterOptnegReply>;
  /** The negotiated terms, once negotiate() resolved. */
  readonly agreed: MilterAgreement | undefined;
  connect(info: MilterConnectInfo, macros?: MilterClientMacros): Promise<MilterClientResult>;
  helo(helo: string, macros?: MilterClientMacros): Promise<MilterClientResult>;
  mail(sender: string, args?: readonly string[], macros?: MilterClientMacros): Promise<MilterClientResult>;
  rcpt(recipient: string, args?: readonly string[], macros?: MilterClientMacros): Promise<MilterClientResult>;
  data(macros?: MilterClientMacros): Promise<MilterClientResult>;
  header(name: string, value: string, macros?: MilterClientMacros): Promise<MilterClientResult>;
  eoh(macros?: MilterClientMacros): Promise<MilterClientResult>;
  body(chunk: Uint8Array, macros?: MilterClientMacros): Promise<MilterClientResult>;
  eom(macros?: MilterClientMacros): Promise<MilterEomResult>;
  unknown(command: string, macros?: MilterClientMacros): Promise<MilterClientResult>;
  /** SMFIC_ABORT: no reply. */
  abort(): void;
  /** SMFIC_QUIT, then end our side of the stream. */
  quit(): void;
  /** SMFIC_QUIT_NC: the filter resets; a new connect() may follow. */
  quitNc(): void;
  /** Requests sent and not yet answered. */
  readonly outstanding: number;
  /** Fail everything outstanding and destroy the stream. */
  close(): void;
}

interface Pending {
  readonly kind: 'optneg' | 'event' | 'eom';
  readonly command: MilterCommandType;
  readonly modifications: MilterReply[];
  resolve(reply: MilterReply, modifications: readonly MilterReply[]): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_OFFER: MilterOffer = { version: 6, actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT };

/** The SMFIF_* action each modification reply needs. */
const MODIFICATION_ACTIONS: Partial<Record<MilterReplyType, number>> = {
  ADDHEADER: SMFIF_ADDHDRS,
  INSHEADER: SMFIF_ADDHDRS,
  CHGHEADER: SMFIF_CHGHDRS,
  ADDRCPT: SMFIF_ADDRCPT,
  ADDRCPT_PAR: SMFIF_ADDRCPT_PAR,
  DELRCPT: SMFIF_DELRCPT,
  CHGFROM: SMFIF_CHGFROM,
  REPLBODY: SMFIF_CHGBODY,
  QUARANTINE: SMFIF_QUARANTINE,
};

/** createMilterClient - speak the MTA side of the milter protocol on `stream`. */
export function createMilterClient(stream: Duplex, options: MilterClientOptions = {}): MilterClient {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const decoder = createMilterReplyDecoder(options.limits ?? DEFAULT_MILTER_LIMITS);
  const pending: Pending[] = [];
  let agreed: MilterAgreement | undefined;
  let offered: MilterOffer | undefined;
  let failure: Error | undefined;

  const failAll = (error: Error): void => {
    failure ??= error;
    for (const p of pending.splice(0)) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(error);
    }
    stream.destroy();
  };

  const arm = (p: Pending): void => {
    if (p.timer !== undefined) clearTimeout(p.timer);
    if (timeoutMs > 0) p.timer = setTimeout(() => failAll(new Error(`milter ${p.command} reply timed out after ${timeoutMs} ms`)), timeoutMs);
  };

  /** Handle one reply; an Error when it breaks the protocol. */
  const onReply = (reply: MilterReply): Error | undefined => {
    const p = pending[0];
    if (p === undefined) return new Error(`milter filter sent an unsolicited ${reply.type}`);
    if (reply.type === 'PROGRESS') {
      arm(p);
      return undefined;
    }
    if (p.kind === 'optneg') {
      if (reply.type !== 'OPTNEG') return new Error(`milter filter answered OPTNEG with ${reply.type}`);
      const problem = optnegProblem(offered ?? DEFAULT_OFFER, reply);
      if (problem !== undefined) return new Error(`milter negotiation failed: ${problem}`);
      agreed = { version: reply.version, actions: reply.actions, protocol: reply.protocol, symbolLists: reply.symbolLists, offer: offered ?? DEFAULT_OFFER };
    } else if (reply.type === 'OPTNEG') {
      return new Error(`milter filter sent OPTNEG in reply to ${p.command}`);
    }
    const action = MODIFICATION_ACTIONS[reply.type];
    if (action !== undefined) {
      if (p.kind !== 'eom') return new Error(`milter filter sent ${reply.type} in reply to ${p.command}`);
      if (((agreed?.actions ?? 0) & action) === 0) return new Error(`milter filter sent ${reply.type} without ${SMFIF_NAMES[action] ?? action}`);
      p.modifications.push(reply);
      return undefined;
    }
    if (reply.type === 'SKIP' && p.command !== 'BODY') return new Error(`milter filter sent SKIP in reply to ${p.command}`);
    pending.shift();
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.resolve(reply, p.modifications);
    return undefined;
  };

  stream.on('data', (chunk: Buffer) => {
    for (const result of decoder.push(chunk)) {
      if (result.kind === 'error') {
        failAll(new Error(`milter reply malformed: ${result.code}: ${result.detail}`));
        return;
      }
      const error = onReply(result.reply);
      if (error !== undefined) {
        failAll(error);
        return;
      }
    }
  });
  stream.on('error', (error: Error) => failAll(error));
  stream.on('close', () => failAll(new Error('milter connection closed')));

  const macroPacket = (type: MilterCommandType, macros: MilterClientMacros | undefined): Buffer[] => {
    if (macros === undefined) return [];
    const pairs: MilterMacroPair[] = Array.isArray(macros) ? [...(macros as readonly MilterMacroPair[])] : Object.entries(macros);
    return [encodeMilterCommand({ type: 'MACRO', stage: String.fromCharCode(MILTER_COMMAND_CODES[type]), macros: pairs })];
  };

  /** Write packets; when `wait` is set, queue a reply expectation first. */
  const request = <T>(kind: Pending['kind'], command: MilterCommandType, packets: Buffer[], wrap: (reply: MilterReply, mods: readonly MilterReply[]) => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const p: Pending = { kind, command, modifications: [], resolve: (r, m) => resolve(wrap(r, m)), reject, timer: undefined };
      arm(p);
      pending.push(p);
      stream.write(Buffer.concat(packets));
    });

  const event = (command: MilterCommand, macros: MilterClientMacros | undefined): Promise<MilterClientResult> => {
    if (failure !== undefined) return Promise.reject(failure);
    if (agreed === undefined) return Promise.reject(new Error(`milter ${command.type} before negotiate()`));
    const packets = macroPacket(command.type, macros);
    if (!milterSendsEvent(agreed, command.type)) {
      if (packets.length > 0) stream.write(Buffer.concat(packets));
      return Promise.resolve({ sent: false, reply: undefined });
    }
    packets.push(encodeMilterCommand(command));
    if (!milterExpectsReply(agreed, command.type)) {
      stream.write(Buffer.concat(packets));
      return Promise.resolve({ sent: true, reply: undefined });
    }
    return request('event', command.type, packets, (reply) => ({ sent: true, reply }));
  };

  const bare = (type: 'ABORT' | 'QUIT' | 'QUIT_NC'): void => {
    if (failure !== undefined || stream.destroyed) return;
    stream.write(encodeMilterCommand({ type }));
  };

  return {
    negotiate(offer = {}) {
      if (failure !== undefined) return Promise.reject(failure);
      if (offered !== undefined) return Promise.reject(new Error('milter negotiate() called twice'));
      offered = { ...DEFAULT_OFFER, ...offer };
      return request('optneg', 'OPTNEG', [encodeMilterCommand({ type: 'OPTNEG', ...offered })], (reply) => reply as MilterOptnegReply);
    },
    get agreed() {
      return agreed;
    },
    connect: (info, macros) => event({ type: 'CONNECT', ...info }, macros),
    helo: (helo, macros) => event({ type: 'HELO', helo }, macros),
    mail: (sender, args = [], macros = undefined) => event({ type: 'MAIL', args: [sender, ...args] }, macros),
    rcpt: (recipient, args = [], macros = undefined) => event({ type: 'RCPT', args: [recipient, ...args] }, macros),
    data: (macros) => event({ type: 'DATA' }, macros),
    header: (name, value, macros) => event({ type: 'HEADER', name, value }, macros),
    eoh: (macros) => event({ type: 'EOH' }, macros),
    body(chunk, macros) {
      if (chunk.length > MILTER_CHUNK_SIZE) return Promise.reject(new RangeError(`body chunk of ${chunk.length} bytes exceeds ${MILTER_CHUNK_SIZE}`));
      return event({ type: 'BODY', chunk }, macros);
    },
    eom(macros) {
      if (failure !== undefined) return Promise.reject(failure);
      if (agreed === undefined) return Promise.reject(new Error('milter BODYEOB before negotiate()'));
      const packets = [...macroPacket('BODYEOB', macros), encodeMilterCommand({ type: 'BODYEOB' })];
      return request('eom', 'BODYEOB', packets, (reply, modifications) => ({ reply, modifications }));
    },
    unknown: (command, macros) => event({ type: 'UNKNOWN', command }, macros),
    abort: () => bare('ABORT'),
    quit() {
      bare('QUIT');
      if (!stream.destroyed) stream.end();
    },
    quitNc: () => bare('QUIT_NC'),
    get outstanding() {
      return pending.length;
    },
    close() {
      failAll(new Error('milter client closed'));
    },
  };
}

/** Why a filter's OPTNEG reply is unacceptable to an MTA that offered `offer` (Postfix and sendmail rules). */
function optnegProblem(offer: MilterOffer, reply: MilterOptnegReply): string | undefined {
  if (!MILTER_SUPPORTED_VERSIONS.includes(reply.version) || reply.version > offer.version) {
    return `filter version ${reply.version} (we offered ${offer.version})`;
  }
  const extraActions = (reply.actions & ~offer.actions) >>> 0;
  if (extraActions !== 0) return `filter asks for actions 0x${extraActions.toString(16)} we did not offer`;
  const extraProtocol = (reply.protocol & ~offer.protocol) >>> 0;
  if (extraProtocol !== 0) return `filter asks for protocol bits 0x${extraProtocol.toString(16)} we did not offer`;
  return undefined;
}
