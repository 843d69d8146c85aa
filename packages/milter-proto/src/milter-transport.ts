/**
 * milter-transport - serve the milter protocol on one byte stream (the filter
 * side; protocols.md B.3, B.6; pitfalls C.6, C.7, C.16, C.17, C.18).
 *
 * A thin adapter: bytes -> milter-codec -> milter-session -> handler callbacks
 * -> encoded replies. Commands are handled strictly one after another, and
 * exactly one reply sequence is written per command the MTA waits for: none
 * for MACRO, ABORT, QUIT, QUIT_NC or commands covered by negotiated NR_*
 * flags (an extra reply would be read as the answer to the next command).
 * Callbacks may be sync or async; a missing callback answers `continue`.
 *
 * Responses are validated before anything is written: REPLYCODE through
 * smtpReplyProblem (and `%` doubled, as sendmail requires); `discard` not at
 * CONNECT/HELO; `skip` only for BODY (sent as CONTINUE when the MTA did not
 * offer SMFIP_SKIP); modifications only at end of message, only when their
 * SMFIF_* action was negotiated, REPLBODY in chunks <= MILTER_CHUNK_SIZE, at
 * most one body replacement. A handler that throws, rejects or answers
 * something invalid is reported through onHandlerError and the stream is
 * destroyed: the MTA then applies its configured default action, which is
 * better than a reply we cannot stand behind.
 *
 * On malformed input or a session error (see MilterProtocolErrorCode) the
 * handler's onProtocolError is called and the stream destroyed. End of
 * stream without QUIT is normal (Postfix, pitfall C.20): the open message is
 * aborted and the connection closed through onAbort / onClose, never an
 * error. After QUIT our side of the stream is ended.
 *
 * Backpressure as in policy-transport: reading pauses while too many commands
 * wait (MTAs stream MACRO, ABORT and NR_* commands without waiting) or while
 * our writes are not drained.
 *
 * LIMITATIONS: a response to a command negotiated as no-reply (NR_*) is
 * computed but dropped, as libmilter does. No SMFIR_PROGRESS is sent for slow
 * handlers; keep decisions within the MTA's timeouts (Postfix 30 s command,
 * 300 s content). The stream's 'error' events are absorbed here ('close'
 * follows and ends the session); attach your own listener to log them.
 */

import type { Duplex } from 'node:stream';
import { MILTER_CHUNK_SIZE, SMFIF_ADDHDRS, SMFIF_ADDRCPT, SMFIF_ADDRCPT_PAR, SMFIF_CHGBODY, SMFIF_CHGFROM, SMFIF_CHGHDRS, SMFIF_DELRCPT, SMFIF_QUARANTINE, SMFIF_NAMES, SMFIP_SKIP } from './milter-constants.js';
import {
  createMilterCommandDecoder,
  DEFAULT_MILTER_LIMITS,
  encodeMilterReply,
  type MilterCodecErrorCode,
  type MilterCommand,
  type MilterConnectInfo,
  type MilterLimits,
  type MilterReply,
} from './milter-codec.js';
import { DEFAULT_MILTER_WANTED, milterWantedProblem, type MilterAgreement, type MilterOffer, type MilterWanted } from './milter-negotiate.js';
import {
  createMilterSession,
  endMilterSession,
  lookupMilterMacro,
  milterMacroValues,
  stepMilterSession,
  type MilterAddress,
  type MilterConnectionState,
  type MilterEvent,
  type MilterMessageState,
  type MilterSessionErrorCode,
  type MilterSessionState,
  type MilterStep,
} from './milter-session.js';
import { BARE_REPLIES, milterReplyBytes } from './milter-reply-bytes.js';
import { smtpReplyProblem } from './smtp-reply.js';

/** A decision for one command. */
export type MilterResponse =
  | { readonly action: 'continue' | 'accept' | 'reject' | 'tempfail' | 'discard' | 'skip' }
  | { readonly action: 'replycode'; readonly code: number; readonly enhancedCode: string; readonly text: string };

/** An edit of the message; only legal in the answer to end of message. */
export type MilterModification =
  | { readonly type: 'addHeader'; readonly name: string; readonly value: string }
  /** index 0 = top of the headers. */
  | { readonly type: 'insertHeader'; readonly index: number; readonly name: string; readonly value: string }
  /** index = 1-based occurrence of `name`; an empty value deletes it. */
  | { readonly type: 'changeHeader'; readonly index: number; readonly name: string; readonly value: string }
  /** With args: SMFIR_ADDRCPT_PAR (needs SMFIF_ADDRCPT_PAR). */
  | { readonly type: 'addRcpt'; readonly rcpt: string; readonly args?: readonly string[] }
  | { readonly type: 'delRcpt'; readonly rcpt: string }
  | { readonly type: 'changeFrom'; readonly from: string; readonly args?: readonly string[] }
  /** The whole new body, CRLF line endings; sent in chunks. */
  | { readonly type: 'replaceBody'; readonly body: Uint8Array }
  | { readonly type: 'quarantine'; readonly reason: string };

/** The answer to end of message: modifications, then one final response. */
export interface MilterEomResponse {
  readonly modifications: readonly MilterModification[];
  readonly response: MilterResponse;
}

export type MilterProtocolErrorCode = MilterCodecErrorCode | MilterSessionErrorCode;

/** What callbacks see of the session. */
export interface MilterContext {
  readonly agreed: MilterAgreement;
  readonly connection: MilterConnectionState;
  readonly message: MilterMessageState | undefined;
  /** A macro's latest value; `x` and `{x}` are the same name. */
  macro(name: string): string | undefined;
  /** Every current macro, names without braces. */
  macros(): Readonly<Record<string, string>>;
}

type Answer<T> = T | Promise<T>;

export interface MilterHandler {
  /** Negotiation is done (the reply is fixed by options.wanted). */
  onNegotiate?(offer: MilterOffer, agreed: MilterAgreement): void;
  onConnect?(info: MilterConnectInfo, ctx: MilterContext): Answer<MilterResponse>;
  onHelo?(helo: string, ctx: MilterContext): Answer<MilterResponse>;
  onMail?(sender: MilterAddress, ctx: MilterContext): Answer<MilterResponse>;
  onRcpt?(recipient: MilterAddress, ctx: MilterContext): Answer<MilterResponse>;
  onData?(ctx: MilterContext): Answer<MilterResponse>;
  onHeader?(name: string, value: string, ctx: MilterContext): Answer<MilterResponse>;
  onEoh?(ctx: MilterContext): Answer<MilterResponse>;
  onBody?(chunk: Uint8Array, ctx: MilterContext): Answer<MilterResponse>;
  onEom?(ctx: MilterContext): Answer<MilterResponse | MilterEomResponse>;
  /** An unfinished message was abandoned; ctx still holds it. */
  onAbort?(ctx: MilterContext): Answer<void>;
  /** The SMTP connection ended (QUIT, QUIT_NC or end of stream); ctx still holds it. Once per connection. */
  onClose?(reason: 'quit' | 'quit-nc' | 'eof', ctx: MilterContext): Answer<void>;
  onUnknown?(command: string, ctx: MilterContext): Answer<MilterResponse>;
  /** The MTA sent something malformed or out of order; the stream is destroyed right after. */
  onProtocolError(code: MilterProtocolErrorCode, detail: string): void;
  /** A callback threw, rejected or answered something invalid; the stream is destroyed. */
  onHandlerError(error: unknown): void;
}

export interface MilterTransportOptions {
  /** What to negotiate (default DEFAULT_MILTER_WANTED). */
  readonly wanted?: MilterWanted;
  readonly limits?: Partial<MilterLimits>;
  /** Commands decoded but not yet handled before reading pauses. */
  readonly maxQueuedCommands?: number;
}

export interface MilterConnection {
  /** Commands received and not yet handled. */
  readonly inFlight: number;
  /** The session as of the last handled command. */
  readonly state: MilterSessionState;
}

const CONTINUE: MilterResponse = { action: 'continue' };

/** serveMilterConnection - read milter commands from `stream`, answer through `handler`. */
export function serveMilterConnection(stream: Duplex, handler: MilterHandler, options: MilterTransportOptions = {}): MilterConnection {
  const wanted = options.wanted ?? DEFAULT_MILTER_WANTED;
  const problem = milterWantedProblem(wanted);
  if (problem !== undefined) throw new RangeError(`invalid milter negotiation settings: ${problem}`);
  const limits: MilterLimits = { ...DEFAULT_MILTER_LIMITS, ...options.limits };
  const maxQueued = options.maxQueuedCommands ?? 64;
  const decoder = createMilterCommandDecoder(limits);
  let state = createMilterSession({ wanted, limits });
  const queue: MilterCommand[] = [];
  let busy = false; // an async callback is outstanding
  let destroyed = false;
  let eof = false; // the stream ended or closed
  let finished = false; // end-of-stream events were run
  let writeBlocked = false;

  const destroy = (): void => {
    destroyed = true;
    eof = true;
    queue.length = 0;
    stream.destroy();
  };

  const protocolError = (code: MilterProtocolErrorCode, detail: string): void => {
    if (destroyed) return;
    handler.onProtocolError(code, detail);
    destroy();
  };

  const handlerError = (error: unknown): void => {
    handler.onHandlerError(error);
    if (!destroyed) destroy();
  };

  const send = (bytes: Uint8Array): void => {
    if (destroyed) return;
    if (!stream.write(bytes) && !destroyed && !writeBlocked) {
      writeBlocked = true;
      stream.pause();
      stream.once('drain', () => {
        writeBlocked = false;
        pump();
      });
    }
  };

  /** Turn a callback's answer into the bytes to write; throws on an invalid answer. */
  const replyBytes = (event: MilterEvent, answer: unknown, agreed: MilterAgreement): Buffer => {
    switch (event.type) {
      case 'negotiate':
        return encodeMilterReply(event.reply);
      case 'eom':
        return eomBytes(answer, agreed);
      default:
        return responseBytes(event.type, answer, agreed);
    }
  };

  /** Finish one event once its answer is known; false stops the step. */
  const complete = (event: MilterEvent, answer: unknown, replyWanted: boolean, agreed: MilterAgreement | undefined): boolean => {
    if (!replyWanted) return true;
    if (destroyed) return false;
    let bytes: Buffer;
    try {
      bytes = replyBytes(event, answer, agreed as MilterAgreement);
    } catch (error) {
      handlerError(error);
      return false;
    }
    send(bytes);
    return true;
  };

  /** Run a step's events in order; a Promise while a callback is pending. */
  const runStep = (before: MilterSessionState, step: MilterStep): Promise<void> | undefined => {
    const { events } = step;
    const run = (from: number): Promise<void> | undefined => {
      for (let i = from; i < events.length; i++) {
        const event = events[i] as MilterEvent;
        if (event.type === 'error') {
          protocolError(event.code, event.detail);
          return undefined;
        }
        // abort/close describe what is being dropped: show the state before the step.
        const ctx = contextOf(event.type === 'abort' || event.type === 'close' ? before : step.state);
        const replyWanted = step.expectsReply && i === events.length - 1;
        let answer: unknown;
        try {
          answer = dispatch(handler, event, ctx);
        } catch (error) {
          handlerError(error);
          return undefined;
        }
        if (isThenable(answer)) {
          return Promise.resolve(answer).then(
            (value) => (complete(event, value, replyWanted, step.state.agreed) ? run(i + 1) : undefined),
            (error: unknown) => handlerError(error),
          );
        }
        if (!complete(event, answer, replyWanted, step.state.agreed)) return undefined;
      }
      return undefined;
    };
    return run(0);
  };

  const pump = (): void => {
    while (!busy) {
      let pending: Promise<void> | undefined;
      if (queue.length > 0 && !destroyed) {
        const command = queue.shift() as MilterCommand;
        const before = state;
        const step = stepMilterSession(state, command);
        state = step.state;
        pending = runStep(before, step);
        if (command.type === 'QUIT' && state.phase === 'closed' && !destroyed) stream.end();
      } else if (eof && !finished && (queue.length === 0 || destroyed)) {
        finished = true;
        const before = state;
        const step = endMilterSession(state);
        state = step.state;
        pending = runStep(before, step);
      } else {
        break;
      }
      if (pending !== undefined) {
        busy = true;
        void pending.then(() => {
          busy = false;
          pump();
        });
        return;
      }
    }
    if (!destroyed && !writeBlocked && queue.length < maxQueued && stream.isPaused()) stream.resume();
  };

  stream.on('data', (chunk: Buffer) => {
    if (destroyed) return;
    for (const result of decoder.push(chunk)) {
      if (result.kind === 'error') {
        protocolError(result.code, result.detail);
        return;
      }
      queue.push(result.command);
    }
    if (queue.length >= maxQueued) stream.pause();
    pump();
  });
  stream.on('end', () => {
    eof = true;
    pump();
  });
  stream.on('close', () => {
    destroyed = true;
    eof = true;
    queue.length = 0;
    pump();
  });
  stream.on('error', () => {
    // 'close' follows and ends the session; the owner of the stream logs the error.
  });

  return {
    get inFlight() {
      return queue.length + (busy ? 1 : 0);
    },
    get state() {
      return state;
    },
  };
}

// --- callbacks -----------------------------------------------------------------------

function dispatch(handler: MilterHandler, event: MilterEvent, ctx: MilterContext): unknown {
  switch (event.type) {
    case 'negotiate':
      handler.onNegotiate?.(event.offer, event.agreed);
      return undefined;
    case 'connect':
      return handler.onConnect ? handler.onConnect(event.info, ctx) : CONTINUE;
    case 'helo':
      return handler.onHelo ? handler.onHelo(event.helo, ctx) : CONTINUE;
    case 'mail':
      return handler.onMail ? handler.onMail(event.sender, ctx) : CONTINUE;
    case 'rcpt':
      return handler.onRcpt ? handler.onRcpt(event.recipient, ctx) : CONTINUE;
    case 'data':
      return handler.onData ? handler.onData(ctx) : CONTINUE;
    case 'header':
      return handler.onHeader ? handler.onHeader(event.name, event.value, ctx) : CONTINUE;
    case 'eoh':
      return handler.onEoh ? handler.onEoh(ctx) : CONTINUE;
    case 'body':
      return handler.onBody ? handler.onBody(event.chunk, ctx) : CONTINUE;
    case 'eom':
      return handler.onEom ? handler.onEom(ctx) : CONTINUE;
    case 'abort':
      return handler.onAbort?.(ctx);
    case 'close':
      return handler.onClose?.(event.reason, ctx);
    case 'unknown':
      return handler.onUnknown ? handler.onUnknown(event.command, ctx) : CONTINUE;
    case 'error':
      return undefined;
  }
}

function contextOf(state: MilterSessionState): MilterContext {
  return {
    agreed: state.agreed as MilterAgreement,
    connection: state.connection,
    message: state.message,
    macro: (name) => lookupMilterMacro(state, name),
    macros: () => milterMacroValues(state),
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

// --- response validation and encoding ----------------------------------------------------

function asResponse(answer: unknown, stage: string): MilterResponse {
  if (typeof answer !== 'object' || answer === null || typeof (answer as { action?: unknown }).action !== 'string') {
    throw new TypeError(`milter handler for ${stage} returned ${answer === null ? 'null' : typeof answer}, not a response`);
  }
  if ('modifications' in answer || 'response' in answer) throw new RangeError(`modifications are only allowed at end of message, not at ${stage}`);
  return answer as MilterResponse;
}

/** The bytes of the reply for a response at `stage`; throws on a response that stage may not give. */
function responseBytes(stage: MilterEvent['type'], answer: unknown, agreed: MilterAgreement): Buffer {
  return milterReplyBytes(responseReply(stage, answer, agreed));
}

/** The SMFIR reply for a response at `stage`; throws on a response that stage may not give. */
function responseReply(stage: MilterEvent['type'], answer: unknown, agreed: MilterAgreement): MilterReply {
  const response = asResponse(answer, stage);
  switch (response.action) {
    case 'continue':
      return BARE_REPLIES.CONTINUE;
    case 'accept':
      return BARE_REPLIES.ACCEPT;
    case 'reject':
      return BARE_REPLIES.REJECT;
    case 'tempfail':
      return BARE_REPLIES.TEMPFAIL;
    case 'discard':
      // Postfix ignores DISCARD at CONNECT/HELO with a warning; don't send it.
      if (stage === 'connect' || stage === 'helo') throw new RangeError(`discard is not valid at ${stage}`);
      return BARE_REPLIES.DISCARD;
    case 'skip':
      if (stage !== 'body') throw new RangeError(`skip is only valid for body chunks, not at ${stage}`);
      return (agreed.protocol & SMFIP_SKIP) !== 0 ? BARE_REPLIES.SKIP : BARE_REPLIES.CONTINUE;
    case 'replycode': {
      const problem = smtpReplyProblem(response);
      if (problem !== undefined) throw new RangeError(`invalid reply at ${stage}: ${problem}`);
      // sendmail refuses a single `%`; Postfix turns `%%` back into `%`.
      const text = `${response.code} ${response.enhancedCode} ${response.text}`.replaceAll('%', '%%');
      return { type: 'REPLYCODE', text };
    }
    default:
      throw new RangeError(`unknown milter action ${JSON.stringify((response as { action: unknown }).action)} at ${stage}`);
  }
}

function eomBytes(answer: unknown, agreed: MilterAgreement): Buffer {
  const isEom = typeof answer === 'object' && answer !== null && 'response' in answer;
  const { modifications, response } = isEom ? (answer as MilterEomResponse) : { modifications: [], response: answer };
  if (!Array.isArray(modifications)) throw new TypeError('end-of-message modifications must be an array');
  // The common end of message, no modifications: the reply alone, without a copy by Buffer.concat.
  if (modifications.length === 0) return responseBytes('eom', response, agreed);
  const parts: Buffer[] = [];
  let bodyReplaced = false;
  for (const m of modifications as readonly MilterModification[]) {
    if (m.type === 'replaceBody') {
      // Postfix forbids interleaving REPLBODY with other edits; one replacement, sent contiguously.
      if (bodyReplaced) throw new RangeError('more than one replaceBody in one message');
      bodyReplaced = true;
    }
    for (const reply of modificationReplies(m, agreed)) parts.push(encodeMilterReply(reply));
  }
  parts.push(responseBytes('eom', response, agreed));
  return Buffer.concat(parts);
}

// eslint-disable-next-line no-control-regex
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
// eslint-disable-next-line no-control-regex
const LINE_BREAKING = /[\r\n\0]/;

function modificationReplies(m: MilterModification, agreed: MilterAgreement): MilterReply[] {
  switch (m.type) {
    case 'addHeader':
      need(agreed, SMFIF_ADDHDRS, m.type);
      checkHeader(m.name, m.value);
      return [{ type: 'ADDHEADER', name: m.name, value: m.value }];
    case 'insertHeader':
      need(agreed, SMFIF_ADDHDRS, m.type);
      checkHeader(m.name, m.value);
      checkIndex(m.index);
      return [{ type: 'INSHEADER', index: m.index, name: m.name, value: m.value }];
    case 'changeHeader':
      need(agreed, SMFIF_CHGHDRS, m.type);
      checkHeader(m.name, m.value);
      checkIndex(m.index);
      return [{ type: 'CHGHEADER', index: m.index, name: m.name, value: m.value }];
    case 'addRcpt': {
      checkAddress(m.rcpt, 'recipient');
      const args = checkArgs(m.args);
      if (args.length === 0) {
        need(agreed, SMFIF_ADDRCPT, m.type);
        return [{ type: 'ADDRCPT', rcpt: m.rcpt }];
      }
      need(agreed, SMFIF_ADDRCPT_PAR, 'addRcpt with ESMTP args');
      return [{ type: 'ADDRCPT_PAR', rcpt: m.rcpt, args }];
    }
    case 'delRcpt':
      need(agreed, SMFIF_DELRCPT, m.type);
      checkAddress(m.rcpt, 'recipient');
      return [{ type: 'DELRCPT', rcpt: m.rcpt }];
    case 'changeFrom':
      need(agreed, SMFIF_CHGFROM, m.type);
      checkAddress(m.from, 'sender');
      return [{ type: 'CHGFROM', from: m.from, args: checkArgs(m.args) }];
    case 'replaceBody': {
      need(agreed, SMFIF_CHGBODY, m.type);
      if (!(m.body instanceof Uint8Array)) throw new TypeError('replaceBody needs a Uint8Array body');
      const out: MilterReply[] = [];
      for (let at = 0; at < m.body.length; at += MILTER_CHUNK_SIZE) out.push({ type: 'REPLBODY', chunk: m.body.subarray(at, at + MILTER_CHUNK_SIZE) });
      // An empty replacement is still one (empty) REPLBODY packet.
      return out.length > 0 ? out : [{ type: 'REPLBODY', chunk: new Uint8Array(0) }];
    }
    case 'quarantine':
      need(agreed, SMFIF_QUARANTINE, m.type);
      if (m.reason.length === 0 || LINE_BREAKING.test(m.reason)) throw new RangeError('quarantine reason must be one non-empty line');
      return [{ type: 'QUARANTINE', reason: m.reason }];
    default:
      throw new RangeError(`unknown modification ${JSON.stringify((m as { type: unknown }).type)}`);
  }
}

function need(agreed: MilterAgreement, flag: number, what: string): void {
  if ((agreed.actions & flag) === 0) throw new RangeError(`${what} needs ${SMFIF_NAMES[flag] ?? flag}, which was not negotiated`);
}

function checkHeader(name: string, value: string): void {
  if (!HEADER_NAME.test(name)) throw new RangeError(`invalid header name ${JSON.stringify(name.slice(0, 100))}`);
  // Folding is a bare LF followed by whitespace (pitfall C.12); never CR or NUL.
  if (/[\r\0]/.test(value) || /\n(?![ \t])/.test(value)) throw new RangeError(`header ${name}: value has CR, NUL or a line break not followed by whitespace`);
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new RangeError(`invalid header index ${index}`);
}

function checkAddress(address: string, what: string): void {
  if (address.length === 0 || LINE_BREAKING.test(address)) throw new RangeError(`invalid ${what} ${JSON.stringify(address.slice(0, 100))}`);
}

function checkArgs(args: readonly string[] | undefined): readonly string[] {
  for (const a of args ?? []) if (a.length === 0 || /[\s\0]/.test(a)) throw new RangeError(`invalid ESMTP argument ${JSON.stringify(a.slice(0, 100))}`);
  return args ?? [];
}
