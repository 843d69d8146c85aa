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
 * The macros per stage: index i holds the macros (names without braces ->
 * value) of MACRO_STAGES[i], undefined when that stage sent none. A fixed,
 * short array: a command copies it only when it clears a stage that has
 * macros, and a lookup walks ten slots (the state is copied per command, so
 * a dictionary keyed by stage letter cost more than the rest of the step).
 */
export type MilterMacroTable = readonly (Readonly<Record<string, string>> | undefined)[];

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
  const events: MilterEvent[] = [];
  let s: MilterSessionState = state;
  if (!s.connection.open && command.type !== 'QUIT' && command.type !== 'QUIT_NC') {
    s = { ...s, connection: { ...s.connection, open: true } };
  }
  const stage = COMMAND_STAGE[command.type];
  if (stage !== undefined) {
    const macros = clearStages(s.macros, stage + 1, LAST_ORDERED_STAGE);
    if (macros !== s.macros) s = { ...s, macros };
  }

  switch (command.type) {
    case 'OPTNEG':
      return fail(state, 'repeated-optneg', 'second OPTNEG on one stream');
    case 'MACRO':
      return { state: { ...s, macros: setStageMacros(s.macros, command.stage, command.macros) }, expectsReply, events };
    case 'CONNECT': {
      if (s.connection.connect !== undefined) return fail(state, 'out-of-order', 'CONNECT twice without QUIT_NC');
      const info = connectInfo(command);
      s = { ...s, connection: { ...s.connection, connect: info } };
      events.push({ type: 'connect', info });
      break;
    }
    case 'HELO':
      s = abandonMessage(s, events);
      s = { ...s, connection: { ...s.connection, helo: command.helo } };
      events.push({ type: 'helo', helo: command.helo });
      break;
    case 'MAIL': {
      s = abandonMessage(s, events);
      const sender = toAddress(command.args);
      s = { ...s, message: { ...freshMessage(), sender } };
      events.push({ type: 'mail', sender });
      break;
    }
    case 'RCPT': {
      const message = currentMessage(s);
      if (message.recipients.length >= s.config.limits.maxRecipientsPerMessage) {
        return fail(state, 'too-many-recipients', `more than ${s.config.limits.maxRecipientsPerMessage} recipients in one message`);
      }
      const recipient = toAddress(command.args);
      s = { ...s, message: { ...message, recipients: [...message.recipients, recipient] } };
      events.push({ type: 'rcpt', recipient });
      break;
    }
    case 'DATA':
      s = { ...s, message: currentMessage(s) };
      events.push({ type: 'data' });
      break;
    case 'HEADER': {
      const message = currentMessage(s);
      const { maxHeadersPerMessage, maxHeaderBytesPerMessage } = s.config.limits;
      if (message.headers.length >= maxHeadersPerMessage) {
        return fail(state, 'too-many-headers', `more than ${maxHeadersPerMessage} headers in one message`);
      }
      const headerBytes = message.headerBytes + Buffer.byteLength(command.name) + Buffer.byteLength(command.value);
      if (headerBytes > maxHeaderBytesPerMessage) {
        return fail(state, 'headers-too-large', `more than ${maxHeaderBytesPerMessage} header bytes in one message`);
      }
      s = { ...s, message: { ...message, headerBytes, headers: [...message.headers, { name: command.name, value: command.value }] } };
      events.push({ type: 'header', name: command.name, value: command.value });
      break;
    }
    case 'EOH':
      s = { ...s, message: currentMessage(s) };
      events.push({ type: 'eoh' });
      break;
    case 'BODY': {
      const message = currentMessage(s);
      s = { ...s, message: { ...message, bodyBytes: message.bodyBytes + command.chunk.length } };
      events.push({ type: 'body', chunk: command.chunk });
      break;
    }
    case 'BODYEOB':
      s = {
        ...s,
        message: { ...currentMessage(s), ended: true },
        connection: { ...s.connection, messages: s.connection.messages + 1 },
      };
      events.push({ type: 'eom' });
      break;
    case 'ABORT':
      // Repeated ABORTs (Postfix) and ABORT after BODYEOB only reset.
      s = abandonMessage(s, events);
      s = { ...s, macros: clearStages(s.macros, FIRST_MESSAGE_STAGE, LAST_ORDERED_STAGE) };
      break;
    case 'UNKNOWN':
      events.push({ type: 'unknown', command: command.command });
      break;
    case 'QUIT':
      s = closeConnection(s, events, 'quit');
      s = { ...s, phase: 'closed' };
      break;
    case 'QUIT_NC':
      // Same socket, a new SMTP connection follows: forget everything but the negotiation.
      s = closeConnection(s, events, 'quit-nc');
      s = { ...s, connection: CLOSED_CONNECTION, macros: NO_MACROS };
      break;
  }
  return { state: s, expectsReply, events };
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
    const table = macros[i];
    if (table !== undefined && Object.hasOwn(table, key)) return table[key];
  }
  const unknown = macros[UNKNOWN_STAGE];
  return unknown !== undefined && Object.hasOwn(unknown, key) ? unknown[key] : undefined;
}

/** milterMacroValues - every current macro (names without braces), later stages winning. */
export function milterMacroValues(state: Pick<MilterSessionState, 'macros'>): Readonly<Record<string, string>> {
  const out = Object.create(null) as Record<string, string>;
  Object.assign(out, state.macros[UNKNOWN_STAGE]);
  for (let i = 0; i <= LAST_ORDERED_STAGE; i++) Object.assign(out, state.macros[i]);
  return out;
}

// --- helpers -----------------------------------------------------------------------------

function fail(state: MilterSessionState, code: MilterSessionErrorCode, detail: string): MilterStep {
  return { state: { ...state, phase: 'failed' }, expectsReply: false, events: [{ type: 'error', code, detail }] };
}

function freshMessage(): MilterMessageState {
  return { sender: undefined, recipients: [], headers: [], headerBytes: 0, bodyBytes: 0, ended: false };
}

/** The open message, or a new one (NOMAIL, or a message command after BODYEOB). */
function currentMessage(s: MilterSessionState): MilterMessageState {
  return s.message === undefined || s.message.ended ? freshMessage() : s.message;
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
  const values = Object.create(null) as Record<string, string>;
  for (const [name, value] of pairs) values[bareMacroName(name)] = value;
  const next = table.slice();
  next[slot] = values;
  return next;
}

/** The table without the macros of slots from..to (inclusive); the same table when they hold none. */
function clearStages(table: MilterMacroTable, from: number, to: number): MilterMacroTable {
  let next: (Readonly<Record<string, string>> | undefined)[] | undefined;
  for (let i = from; i <= to; i++) {
    if (table[i] === undefined) continue;
    next ??= table.slice();
    next[i] = undefined;
  }
  return next ?? table;
}
