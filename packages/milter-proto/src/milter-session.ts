/**
 * milter-session - the filter-side milter state machine as a pure function
 * `(state, command) -> { state, expectsReply, events }` (protocols.md B.5,
 * B.6; pitfalls C.4-C.7, C.19, C.20).
 *
 * State is split the way libmilter and Postfix split it:
 * - per connection: CONNECT info, the latest HELO, connection macros; kept
 *   across messages, reset only by QUIT_NC (a new CONNECT follows);
 * - per message: sender, recipients, headers, body size; reset by ABORT, by
 *   the next MAIL, by HELO, and by QUIT. ABORT may come at any time, after
 *   BODYEOB and several times in a row (Postfix): it is a no-op then.
 *
 * Every message that starts ends in exactly one `eom` or `abort` event: a
 * message left open by a new MAIL, a HELO or QUIT gets an `abort` first. An
 * ABORT after BODYEOB emits nothing. Message commands arriving without MAIL
 * (SMFIP_NOMAIL negotiated) start a message implicitly.
 *
 * `expectsReply` is false for MACRO, ABORT, QUIT, QUIT_NC and for commands
 * covered by negotiated NR_* flags: sending anything then desynchronises the
 * MTA (pitfall C.6). It is true for OPTNEG (the reply is in the `negotiate`
 * event), BODYEOB, and DATA / UNKNOWN unless negotiated away (pitfall C.7).
 *
 * Macros (B.5): a MACRO packet replaces that stage's macros; a command clears
 * the macros of every later stage (libmilter's mi_clr_macros), so connection
 * macros (`j`, `{daemon_name}`) survive while message macros do not; ABORT
 * clears the message stages. Names `x` and `{x}` are the same macro. Lookups
 * search the latest stage first; macros of a stage letter no lookup reads
 * (anything but C H M R T L N B E U) are not kept.
 *
 * Limits (count-enforced, see MilterLimits): recipients per message, headers
 * per message and header bytes per message; exceeding one is an `error` event
 * and the session fails, like any protocol error.
 *
 * LIMITATIONS: ordering is not policed beyond OPTNEG-first, one CONNECT per
 * connection and nothing after QUIT: MTAs skip stages the filter disabled,
 * and libmilter itself tolerates odd orders. Headers are kept (bounded by the
 * limits); body bytes are only counted. Macros of stage 'U' (Postfix's
 * UNKNOWN) rank below every other stage in lookups.
 */

import { DEFAULT_MILTER_LIMITS, type MilterCommand, type MilterConnectInfo, type MilterLimits, type MilterMacroPair } from './milter-codec.js';
import {
  DEFAULT_MILTER_WANTED,
  milterExpectsReply,
  negotiateMilter,
  type MilterAgreement,
  type MilterOffer,
  type MilterOptnegReply,
  type MilterWanted,
} from './milter-negotiate.js';

export interface MilterSessionConfig {
  readonly wanted: MilterWanted;
  readonly limits: Pick<MilterLimits, 'maxRecipientsPerMessage' | 'maxHeadersPerMessage' | 'maxHeaderBytesPerMessage'>;
}

/** awaiting-optneg -> open -> closed (QUIT); failed after any error. */
export type MilterSessionPhase = 'awaiting-optneg' | 'open' | 'closed' | 'failed';

/** A MAIL or RCPT argv: the address as sent, then the ESMTP args. */
export interface MilterAddress {
  readonly address: string;
  readonly args: readonly string[];
}

export interface MilterHeader {
  readonly name: string;
  readonly value: string;
}

export interface MilterConnectionState {
  /** An SMTP connection is in progress (from OPTNEG or QUIT_NC up to QUIT). */
  readonly open: boolean;
  readonly connect: MilterConnectInfo | undefined;
  readonly helo: string | undefined;
  /** Messages that reached BODYEOB on this connection. */
  readonly messages: number;
}

export interface MilterMessageState {
  /** Absent when SMFIP_NOMAIL was negotiated. */
  readonly sender: MilterAddress | undefined;
  readonly recipients: readonly MilterAddress[];
  readonly headers: readonly MilterHeader[];
  readonly headerBytes: number;
  readonly bodyBytes: number;
  /** BODYEOB was seen: the next message command starts a new message. */
  readonly ended: boolean;
}

/**
 * The macros per stage: index i holds the name/value pairs of MACRO_STAGES[i]
 * as the MACRO packet gave them (names with or without braces; a later pair
 * of the same name wins), undefined when that stage sent none. A fixed,
 * short array: a command copies it only when it clears a stage that has
 * macros, and a lookup walks ten slots of a few pairs each. The packet's own
 * pairs are kept, so a MACRO costs no dictionary (the state is copied per
 * command, so a dictionary keyed by stage letter, and one per stage, cost
 * more than the rest of the step).
 */
export type MilterMacroTable = readonly (readonly MilterMacroPair[] | undefined)[];

export interface MilterSessionState {
  readonly phase: MilterSessionPhase;
  readonly config: MilterSessionConfig;
  readonly agreed: MilterAgreement | undefined;
  readonly connection: MilterConnectionState;
  readonly macros: MilterMacroTable;
  readonly message: MilterMessageState | undefined;
}

/** Stable error codes of the session; never reused for another meaning. */
export type MilterSessionErrorCode =
  /** A command other than OPTNEG before OPTNEG. */
  | 'not-negotiated'
  /** A second OPTNEG on one stream. */
  | 'repeated-optneg'
  /** The MTA offers a protocol version we do not speak. */
  | 'unsupported-version'
  /** A second CONNECT without QUIT_NC in between. */
  | 'out-of-order'
  /** Anything after QUIT. */
  | 'after-quit'
  /** Anything after an earlier error. */
  | 'after-error'
  | 'too-many-recipients'
  | 'too-many-headers'
  | 'headers-too-large';

export type MilterEvent =
  | { readonly type: 'negotiate'; readonly offer: MilterOffer; readonly agreed: MilterAgreement; readonly reply: MilterOptnegReply }
  | { readonly type: 'connect'; readonly info: MilterConnectInfo }
  | { readonly type: 'helo'; readonly helo: string }
  | { readonly type: 'mail'; readonly sender: MilterAddress }
  | { readonly type: 'rcpt'; readonly recipient: MilterAddress }
  | { readonly type: 'data' }
  | { readonly type: 'header'; readonly name: string; readonly value: string }
  | { readonly type: 'eoh' }
  | { readonly type: 'body'; readonly chunk: Uint8Array }
  | { readonly type: 'eom' }
  /** An unfinished message was abandoned (ABORT, or implied by MAIL, HELO, QUIT, end of stream). */
  | { readonly type: 'abort' }
  /** The SMTP connection ended: QUIT, QUIT_NC (socket reused) or end of stream. */
  | { readonly type: 'close'; readonly reason: 'quit' | 'quit-nc' | 'eof' }
  | { readonly type: 'unknown'; readonly command: string }
  | { readonly type: 'error'; readonly code: MilterSessionErrorCode; readonly detail: string };

export type MilterEventType = MilterEvent['type'];

export interface MilterStep {
  readonly state: MilterSessionState;
  /** The MTA waits for a reply to this command (to the last event, never to abort/close). */
  readonly expectsReply: boolean;
  readonly events: readonly MilterEvent[];
}

/**
 * Macro stages from earliest to latest (a command clears the stages after its
 * own), then Postfix's UNKNOWN stage 'U', which ranks below every other in
 * lookups. Macros of any other stage letter are never looked up and not kept.
 */
const MACRO_STAGES = ['C', 'H', 'M', 'R', 'T', 'L', 'N', 'B', 'E', 'U'] as const;
type MacroStage = (typeof MACRO_STAGES)[number];
const UNKNOWN_STAGE = MACRO_STAGES.indexOf('U');
const FIRST_MESSAGE_STAGE = MACRO_STAGES.indexOf('M');
const LAST_ORDERED_STAGE = MACRO_STAGES.indexOf('E');

/** The slot of a stage letter, or -1 for a letter no lookup reads. */
function macroSlot(stage: string): number {
  return MACRO_STAGES.indexOf(stage as MacroStage);
}

const COMMAND_STAGE: Partial<Record<MilterCommand['type'], number>> = {
  CONNECT: macroSlot('C'),
  HELO: macroSlot('H'),
  MAIL: macroSlot('M'),
  RCPT: macroSlot('R'),
  DATA: macroSlot('T'),
  HEADER: macroSlot('L'),
  EOH: macroSlot('N'),
  BODY: macroSlot('B'),
  BODYEOB: macroSlot('E'),
};

const CLOSED_CONNECTION: MilterConnectionState = { open: false, connect: undefined, helo: undefined, messages: 0 };
const NO_MACROS: MilterMacroTable = Object.freeze(new Array<undefined>(MACRO_STAGES.length).fill(undefined));

/** createMilterSession - the state before OPTNEG. */
export function createMilterSession(config: Partial<MilterSessionConfig> = {}): MilterSessionState {
  return {
    phase: 'awaiting-optneg',
    config: { wanted: config.wanted ?? DEFAULT_MILTER_WANTED, limits: config.limits ?? DEFAULT_MILTER_LIMITS },
    agreed: undefined,
    connection: CLOSED_CONNECTION,
    macros: NO_MACROS,
    message: undefined,
  };
}

/** Steps without events (MACRO, and ABORT/QUIT_NC with nothing open) share this array. */
const NO_EVENTS: readonly MilterEvent[] = Object.freeze([]);

/** stepMilterSession - apply one command from the MTA. */
export function stepMilterSession(state: MilterSessionState, command: MilterCommand): MilterStep {
  if (state.phase === 'failed') return fail(state, 'after-error', `${command.type} after an earlier error`);
  if (state.phase === 'closed') return fail(state, 'after-quit', `${command.type} after QUIT`);
  if (state.phase === 'awaiting-optneg') {
    if (command.type !== 'OPTNEG') return fail(state, 'not-negotiated', `${command.type} before OPTNEG`);
    const offer: MilterOffer = { version: command.version, actions: command.actions, protocol: command.protocol };
    const result = negotiateMilter(offer, state.config.wanted);
    if (result.kind === 'refused') return fail(state, result.code, result.detail);
    return {
      state: { ...state, phase: 'open', agreed: result.agreed },
      expectsReply: true,
      events: [{ type: 'negotiate', offer, agreed: result.agreed, reply: result.reply }],
    };
  }
  const agreed = state.agreed as MilterAgreement;
  const expectsReply = milterExpectsReply(agreed, command.type);
  // The parts of the next state, put together once at the end (one object literal
  // instead of a spread per change: this runs for every command of every message).
  let phase: MilterSessionPhase = state.phase;
  let connection = state.connection;
  let macros = state.macros;
  let message = state.message;
  let events: MilterEvent[] | undefined;
  const opens = !connection.open && command.type !== 'QUIT' && command.type !== 'QUIT_NC';
  const stage = COMMAND_STAGE[command.type];
  if (stage !== undefined) macros = clearStages(macros, stage + 1, LAST_ORDERED_STAGE);

  switch (command.type) {
    case 'OPTNEG':
      return fail(state, 'repeated-optneg', 'second OPTNEG on one stream');
    case 'MACRO':
      macros = setStageMacros(macros, command.stage, command.macros);
      break;
    case 'CONNECT': {
      if (connection.connect !== undefined) return fail(state, 'out-of-order', 'CONNECT twice without QUIT_NC');
      const info = connectInfo(command);
      connection = { open: true, connect: info, helo: connection.helo, messages: connection.messages };
      events = [{ type: 'connect', info }];
      break;
    }
    case 'HELO':
      events = [];
      if (message !== undefined) {
        if (!message.ended) events.push({ type: 'abort' });
        message = undefined;
      }
      connection = { open: true, connect: connection.connect, helo: command.helo, messages: connection.messages };
      events.push({ type: 'helo', helo: command.helo });
      break;
    case 'MAIL': {
      events = [];
      if (message !== undefined && !message.ended) events.push({ type: 'abort' });
      const sender = toAddress(command.args);
      message = messageState(sender, [], [], 0, 0, false);
      events.push({ type: 'mail', sender });
      break;
    }
    case 'RCPT': {
      const current = currentMessage(message);
      if (current.recipients.length >= state.config.limits.maxRecipientsPerMessage) {
        return fail(state, 'too-many-recipients', `more than ${state.config.limits.maxRecipientsPerMessage} recipients in one message`);
      }
      const recipient = toAddress(command.args);
      const recipients = current.recipients.slice();
      recipients.push(recipient);
      message = messageState(current.sender, recipients, current.headers, current.headerBytes, current.bodyBytes, false);
      events = [{ type: 'rcpt', recipient }];
      break;
    }
    case 'DATA':
      message = currentMessage(message);
      events = [{ type: 'data' }];
      break;
    case 'HEADER': {
      const current = currentMessage(message);
      const { maxHeadersPerMessage, maxHeaderBytesPerMessage } = state.config.limits;
      if (current.headers.length >= maxHeadersPerMessage) {
        return fail(state, 'too-many-headers', `more than ${maxHeadersPerMessage} headers in one message`);
      }
      const headerBytes = current.headerBytes + Buffer.byteLength(command.name) + Buffer.byteLength(command.value);
      if (headerBytes > maxHeaderBytesPerMessage) {
        return fail(state, 'headers-too-large', `more than ${maxHeaderBytesPerMessage} header bytes in one message`);
      }
      const headers = current.headers.slice();
      headers.push({ name: command.name, value: command.value });
      message = messageState(current.sender, current.recipients, headers, headerBytes, current.bodyBytes, false);
      events = [{ type: 'header', name: command.name, value: command.value }];
      break;
    }
    case 'EOH':
      message = currentMessage(message);
      events = [{ type: 'eoh' }];
      break;
    case 'BODY': {
      const current = currentMessage(message);
      message = messageState(current.sender, current.recipients, current.headers, current.headerBytes, current.bodyBytes + command.chunk.length, false);
      events = [{ type: 'body', chunk: command.chunk }];
      break;
    }
    case 'BODYEOB': {
      const current = currentMessage(message);
      message = messageState(current.sender, current.recipients, current.headers, current.headerBytes, current.bodyBytes, true);
      connection = { open: true, connect: connection.connect, helo: connection.helo, messages: connection.messages + 1 };
      events = [{ type: 'eom' }];
      break;
    }
    case 'ABORT':
      // Repeated ABORTs (Postfix) and ABORT after BODYEOB only reset.
      if (message !== undefined) {
        if (!message.ended) events = [{ type: 'abort' }];
        message = undefined;
      }
      macros = clearStages(macros, FIRST_MESSAGE_STAGE, LAST_ORDERED_STAGE);
      break;
    case 'UNKNOWN':
      events = [{ type: 'unknown', command: command.command }];
      break;
    case 'QUIT':
    case 'QUIT_NC': {
      const reason = command.type === 'QUIT' ? 'quit' : 'quit-nc';
      if (message !== undefined) {
        if (!message.ended) (events ??= []).push({ type: 'abort' });
        message = undefined;
      }
      if (connection.open) {
        (events ??= []).push({ type: 'close', reason });
        connection = { open: false, connect: connection.connect, helo: connection.helo, messages: connection.messages };
      }
      if (command.type === 'QUIT') phase = 'closed';
      else {
        // Same socket, a new SMTP connection follows: forget everything but the negotiation.
        connection = CLOSED_CONNECTION;
        macros = NO_MACROS;
      }
      break;
    }
  }
  // Any other command opens the SMTP connection (as CONNECT, HELO and BODYEOB above do).
  if (opens && !connection.open) connection = { open: true, connect: connection.connect, helo: connection.helo, messages: connection.messages };
  const next =
    phase === state.phase && connection === state.connection && macros === state.macros && message === state.message
      ? state
      : { phase, config: state.config, agreed: state.agreed, connection, macros, message };
  return { state: next, expectsReply, events: events ?? NO_EVENTS };
}

/** endMilterSession - the stream ended (EOF or error) without QUIT: abort and close what is open. */
export function endMilterSession(state: MilterSessionState): MilterStep {
  if (state.phase === 'awaiting-optneg' || state.phase === 'closed') return { state: { ...state, phase: 'closed' }, expectsReply: false, events: [] };
  // Also after an error: the handler still learns that the message and connection are gone.
  const events: MilterEvent[] = [];
  const s = closeConnection(state, events, 'eof');
  return { state: { ...s, phase: state.phase === 'failed' ? 'failed' : 'closed' }, expectsReply: false, events };
}

/** lookupMilterMacro - a macro's latest value; `x` and `{x}` are the same name. */
export function lookupMilterMacro(state: Pick<MilterSessionState, 'macros'>, name: string): string | undefined {
  const key = bareMacroName(name);
  const { macros } = state;
  // Latest stage first, UNKNOWN last.
  for (let i = LAST_ORDERED_STAGE; i >= 0; i--) {
    const pairs = macros[i];
    if (pairs !== undefined) {
      const found = lastPairOf(pairs, key);
      if (found !== undefined) return found[1];
    }
  }
  const unknown = macros[UNKNOWN_STAGE];
  return unknown === undefined ? undefined : lastPairOf(unknown, key)?.[1];
}

/** milterMacroValues - every current macro (names without braces), later stages winning. */
export function milterMacroValues(state: Pick<MilterSessionState, 'macros'>): Readonly<Record<string, string>> {
  const out = Object.create(null) as Record<string, string>;
  const put = (pairs: readonly MilterMacroPair[] | undefined): void => {
    if (pairs !== undefined) for (const [name, value] of pairs) out[bareMacroName(name)] = value;
  };
  put(state.macros[UNKNOWN_STAGE]);
  for (let i = 0; i <= LAST_ORDERED_STAGE; i++) put(state.macros[i]);
  return out;
}

// --- helpers -----------------------------------------------------------------------------

function fail(state: MilterSessionState, code: MilterSessionErrorCode, detail: string): MilterStep {
  return { state: { ...state, phase: 'failed' }, expectsReply: false, events: [{ type: 'error', code, detail }] };
}

function messageState(
  sender: MilterAddress | undefined,
  recipients: readonly MilterAddress[],
  headers: readonly MilterHeader[],
  headerBytes: number,
  bodyBytes: number,
  ended: boolean,
): MilterMessageState {
  return { sender, recipients, headers, headerBytes, bodyBytes, ended };
}

const NO_ADDRESSES: readonly MilterAddress[] = Object.freeze([]);
const NO_HEADERS: readonly MilterHeader[] = Object.freeze([]);

/** The open message, or a new one (NOMAIL, or a message command after BODYEOB). */
function currentMessage(message: MilterMessageState | undefined): MilterMessageState {
  return message === undefined || message.ended ? messageState(undefined, NO_ADDRESSES, NO_HEADERS, 0, 0, false) : message;
}

/** Drop the message; an unfinished one gets an `abort` event. */
function abandonMessage(s: MilterSessionState, events: MilterEvent[]): MilterSessionState {
  if (s.message === undefined) return s;
  if (!s.message.ended) events.push({ type: 'abort' });
  return { ...s, message: undefined };
}

function closeConnection(s: MilterSessionState, events: MilterEvent[], reason: 'quit' | 'quit-nc' | 'eof'): MilterSessionState {
  const next = abandonMessage(s, events);
  if (!next.connection.open) return next;
  events.push({ type: 'close', reason });
  return { ...next, connection: { ...next.connection, open: false } };
}

function toAddress(args: readonly string[]): MilterAddress {
  return { address: args[0] ?? '', args: args.slice(1) };
}

function connectInfo(c: Extract<MilterCommand, { type: 'CONNECT' }>): MilterConnectInfo {
  const { type: _type, ...info } = c;
  return info;
}

function bareMacroName(name: string): string {
  return name.length > 2 && name.startsWith('{') && name.endsWith('}') ? name.slice(1, -1) : name;
}

function setStageMacros(table: MilterMacroTable, stage: string, pairs: readonly MilterMacroPair[]): MilterMacroTable {
  const slot = macroSlot(stage);
  if (slot < 0) return table;
  const next = table.slice();
  next[slot] = pairs;
  return next;
}

/** The last pair named `key` or `{key}` (key without braces), without building the bare names. */
function lastPairOf(pairs: readonly MilterMacroPair[], key: string): MilterMacroPair | undefined {
  for (let i = pairs.length - 1; i >= 0; i--) {
    const pair = pairs[i] as MilterMacroPair;
    const name = pair[0];
    if (name === key) {
      if (name.length <= 2 || name.charCodeAt(0) !== 0x7b || name.charCodeAt(name.length - 1) !== 0x7d) return pair;
    } else if (name.length === key.length + 2 && name.length > 2 && name.charCodeAt(0) === 0x7b && name.charCodeAt(name.length - 1) === 0x7d && name.startsWith(key, 1)) {
      return pair;
    }
  }
  return undefined;
}

/** The table without the macros of slots from..to (inclusive); the same table when they hold none. */
function clearStages(table: MilterMacroTable, from: number, to: number): MilterMacroTable {
  let next: (readonly MilterMacroPair[] | undefined)[] | undefined;
  for (let i = from; i <= to; i++) {
    if (table[i] === undefined) continue;
    next ??= table.slice();
    next[i] = undefined;
  }
  return next ?? table;
}
