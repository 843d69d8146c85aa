/**
 * milter-service - answer milter connections (sendmail INPUT_MAIL_FILTER,
 * Postfix smtpd_milters) with the same rules as the policy path.
 *
 * Every milter event becomes Facts and goes through the same decider; the
 * verdict becomes a milter response (milter-verdict.ts). Per recipient at
 * RCPT, per message at end of message, where the MIME structure streamed
 * through message-scanner.ts is known. What the milter protocol cannot do
 * at the stage a rule fires is carried forward within the message:
 * quarantine and headers to add are end-of-message modifications; a discard
 * decided at CONNECT or HELO (where the protocol forbids it) discards every
 * message of that connection at MAIL.
 *
 * Only a milter sees connections open and close, so the service counts open
 * connections per client address and in total and hands both to the rules
 * (client_concurrency, total_concurrency): concurrency caps work here.
 *
 * In load tier shed and above no MIME scanning is done (content rules then
 * see headers but no attachments), and tarpit delays of verdicts and tiers
 * hold the answer back, as on the policy path.
 *
 * LIMITATIONS: connections over a unix socket (family L) or of unknown
 * family have no client address: they count towards the total only.
 */

import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import {
  DEFAULT_MILTER_WANTED,
  serveMilterConnection,
  SMFIF_CHGFROM,
  SMFIP_NR_BODY,
  SMFIP_NR_EOH,
  SMFIP_NR_HDR,
  type MilterContext,
  type MilterEomResponse,
  type MilterModification,
  type MilterResponse,
  type MilterWanted,
} from '@levee/milter-proto';
import { canonicalIp, parseCanonicalIp, type FailAction, type IpAddress, type Facts, type FactsDraft, type HeaderToAdd, type MessageFacts, type Stage, type Verdict } from '@levee/rules';
import { decideFacts, failVerdict, type DeciderDeps, type DecisionOutcome } from './decider.js';
import { recordDecision } from './decision-record.js';
import type { Redactor } from './log-redaction.js';
import type { Logger } from './logger.js';
import { createMessageScanner, type MessageScanner } from './message-scanner.js';
import type { Metrics } from './metrics.js';
import { verdictToMilterResponse } from './milter-verdict.js';

/**
 * Macros the rules use, asked for per stage where the MTA lets us (SETSYMLIST).
 * No reply to HEADER, EOH and BODY (SMFIP_NR_*, where offered): the rules
 * judge content only at end of message, so those answers are always
 * "continue", and without them the MTA streams the content without waiting
 * for 12 round trips per message (the benchmark's largest cost: one write(2)
 * per reply; see docs/benchmarks.md).
 */
export const LEVEE_MILTER_WANTED: MilterWanted = {
  ...DEFAULT_MILTER_WANTED,
  // CHGFROM: BATV signs outbound envelope senders (only used when the MTA agreed).
  actions: (DEFAULT_MILTER_WANTED.actions | SMFIF_CHGFROM) >>> 0,
  protocol: (DEFAULT_MILTER_WANTED.protocol | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY) >>> 0,
  macros: {
    connect: ['j', '{daemon_name}'],
    envfrom: ['i', '{auth_type}', '{auth_authen}'],
    envrcpt: ['i'],
    eom: ['i'],
  },
};

export interface MilterServiceOptions {
  readonly decider: DeciderDeps;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly settings: () => { readonly failAction: FailAction; readonly idleTimeoutMs: number };
  /** What log lines may show (log.redact); read per decision. */
  readonly redactor?: () => Redactor;
  /** True in load tiers where expensive content checks are skipped (shed): no MIME scanning. */
  readonly shedContent?: () => boolean;
  /** BATV: the signed envelope sender for this outbound message, or undefined (milter CHGFROM). */
  readonly signSender?: (facts: Facts) => string | undefined;
}

/** Answer after `delayMs` (a tarpit, or the delay of a load tier), or at once. */
function after<T>(value: T, delayMs: number | undefined): T | Promise<T> {
  if (delayMs === undefined || delayMs <= 0) return value;
  return new Promise<T>((resolve) => setTimeout(() => resolve(value), delayMs));
}

export interface MilterService {
  accept(socket: Socket): void;
  readonly connections: ReadonlySet<Socket>;
  /** Open connections per client address (what client_concurrency reads). */
  concurrency(address: string): number;
  /**
   * Refuse new connections. Open ones are left to finish their SMTP session
   * (a milter connection lives as long as it; cutting it mid-transaction
   * would make the MTA apply its default action); the daemon's grace period
   * bounds the wait.
   */
  drain(): void;
}

/** Per-message state the service keeps beyond the session's own. */
interface MessageWork {
  scanner: MessageScanner | undefined;
  /** Content scanning was skipped for this message (load tier shed or above). */
  shed: boolean;
  acceptedRecipients: number;
  /** The accepted recipients (the first MAX_KEPT_RECIPIENTS), for what Levee records of a held message. */
  recipients: string[];
  quarantine: string | undefined;
  headers: HeaderToAdd[];
  /** This message's id among the service's (Facts.instance, as Postfix's policy `instance`). */
  transaction: string;
}

const newMessage = (transaction: string): MessageWork => ({ scanner: undefined, shed: false, acceptedRecipients: 0, recipients: [], quarantine: undefined, headers: [], transaction });

const MAX_KEPT_RECIPIENTS = 50;

/** `<a@b>` -> `a@b`, `<>` and "" -> "" (the null sender). */
export function unbracket(address: string): string {
  const trimmed = address.trim();
  return trimmed.startsWith('<') && trimmed.endsWith('>') ? trimmed.slice(1, -1) : trimmed;
}

/** createMilterService - the per-connection logic of the milter listener. */
export function createMilterService(options: MilterServiceOptions): MilterService {
  const { decider, metrics, log } = options;
  const connections = new Set<Socket>();
  const perClient = new Map<string, number>();
  let total = 0;
  let draining = false;
  let nextConnectionId = 1;
  const connectionGauge = metrics.connections.labels('milter');

  function accept(socket: Socket): void {
    if (draining) {
      socket.destroy();
      return;
    }
    const cid = nextConnectionId++;
    const connLog = log.child({ proto: 'milter', cid });
    connectionGauge.inc();
    let clientKey: string | undefined;
    let counted = false;
    let discardAll = false;
    let quarantineAll: string | undefined;
    let messages = 0;
    const nextMessage = (): MessageWork => newMessage(`milter.${cid}.${++messages}`);
    let message = nextMessage();

    const release = (): void => {
      if (!counted) return;
      counted = false;
      total--;
      if (clientKey !== undefined) {
        const n = (perClient.get(clientKey) ?? 1) - 1;
        if (n <= 0) perClient.delete(clientKey);
        else perClient.set(clientKey, n);
      }
    };
    // An MTA that sends nothing for milter.idle_timeout has gone away (or is
    // not an MTA): the connection is closed so it cannot be held open forever.
    socket.setTimeout(options.settings().idleTimeoutMs, () => {
      connLog.info('idle timeout, closing the milter connection');
      socket.destroy();
    });
    socket.on('error', (error) => connLog.debug({ err: error.message }, 'connection error'));
    socket.once('close', () => {
      release();
      message.scanner?.abort();
      connections.delete(socket);
      connectionGauge.dec();
    });

    // The client address of a connection, parsed once (a connection makes ~10 decisions).
    const clients = new WeakMap<object, { readonly clientAddress: string; readonly clientIp?: IpAddress }>();
    const clientFacts = (connect: { readonly address: string }): { readonly clientAddress: string; readonly clientIp?: IpAddress } => {
      let known = clients.get(connect);
      if (known === undefined) {
        const parsed = parseCanonicalIp(connect.address);
        known = parsed === undefined ? { clientAddress: connect.address.toLowerCase() } : { clientAddress: parsed.text, clientIp: parsed.ip };
        clients.set(connect, known);
      }
      return known;
    };
    const facts = (ctx: MilterContext, stage: Stage, extra?: Partial<Facts>): Facts => {
      const connect = ctx.connection.connect;
      const sender = ctx.message?.sender;
      const sasl = ctx.macro('{auth_authen}');
      const queueId = ctx.macro('i');
      const name = connect?.hostname;
      const helo = ctx.connection.helo;
      // Assigned field by field, in the order the spreads had them: one-field object
      // spreads cost more than the rest of this function (as in policy-facts.ts), and
      // this runs for each of the ~10 decisions of a message.
      const f: FactsDraft = { protocol: 'milter', stage };
      if (connect?.address !== undefined && (connect.family === '4' || connect.family === '6')) {
        const client = clientFacts(connect as { readonly address: string });
        f.clientAddress = client.clientAddress;
        if (client.clientIp !== undefined) f.clientIp = client.clientIp;
      }
      if (connect?.port !== undefined && connect.port > 0) f.clientPort = connect.port;
      if (name !== undefined && name !== '' && !name.startsWith('[')) f.clientName = name.toLowerCase();
      if (helo !== undefined && helo !== '') f.heloName = helo;
      if (sender !== undefined) f.sender = unbracket(sender.address);
      if (sasl !== undefined && sasl !== '') {
        f.saslUsername = sasl;
        f.saslMethod = ctx.macro('{auth_type}') ?? '';
      }
      if (queueId !== undefined && queueId !== '') f.queueId = queueId;
      f.instance = message.transaction;
      if (counted) f.totalConcurrency = total;
      if (counted && clientKey !== undefined) f.clientConcurrency = perClient.get(clientKey) ?? 0;
      return extra === undefined ? f : Object.assign(f, extra);
    };

    /** Decide, record, and hand back the verdict (the fail action if deciding failed). */
    const decideStage = (f: Facts): Verdict | Promise<Verdict> => {
      const started = performance.now();
      const finish = (outcome: DecisionOutcome): Verdict => {
        let verdict: Verdict;
        if (outcome.ok) verdict = outcome.decision.verdict;
        else {
          metrics.internalErrors.labels('milter').inc();
          connLog.error({ err: String(outcome.error) }, 'decision failed, answering the fail action');
          verdict = failVerdict(options.settings().failAction);
        }
        recordDecision(metrics, connLog, 'milter', f, verdict, (performance.now() - started) / 1000, options.redactor?.());
        return verdict;
      };
      const outcome = decideFacts(f, decider);
      return outcome instanceof Promise ? outcome.then(finish) : finish(outcome);
    };

    /** Carry forward what cannot be answered now; the immediate response. */
    const respond = (verdict: Verdict, stage: Stage): MilterResponse => {
      for (const h of verdict.addHeaders ?? []) {
        if (!message.headers.some((x) => x.name === h.name && x.value === h.value)) message.headers.push(h);
      }
      if (verdict.action === 'quarantine') {
        const reason = verdict.text ?? 'held by levee';
        if (stage === 'connect' || stage === 'helo') quarantineAll = reason;
        else message.quarantine = reason;
      }
      if (verdict.action === 'discard' && (stage === 'connect' || stage === 'helo')) {
        discardAll = true;
        return { action: 'continue' };
      }
      return verdictToMilterResponse(verdict);
    };

    const at = (stage: Stage, extra?: (ctx: MilterContext) => Partial<Facts>) => {
      return (ctx: MilterContext): MilterResponse | Promise<MilterResponse> => {
        const verdict = decideStage(facts(ctx, stage, extra?.(ctx)));
        return verdict instanceof Promise ? verdict.then((v) => after(respond(v, stage), v.delayMs)) : after(respond(verdict, stage), verdict.delayMs);
      };
    };

    const onConnect = at('connect');
    const onHelo = at('helo');
    const onMailDecision = at('mail');
    const onData = at('data', () => ({ recipientCount: message.acceptedRecipients, recipients: message.recipients }));

    const endOfMessage = (verdict: Verdict, f: Facts, ctx: MilterContext): MilterEomResponse => {
      const response = respond(verdict, 'eom');
      const modifications: MilterModification[] = message.headers.map((h) => ({ type: 'addHeader', name: h.name, value: h.value }));
      if ((ctx.agreed.actions & SMFIF_CHGFROM) !== 0 && (response.action === 'continue' || response.action === 'accept')) {
        const signed = options.signSender?.(f);
        if (signed !== undefined) modifications.push({ type: 'changeFrom', from: `<${signed}>` });
      }
      const quarantine = message.quarantine ?? quarantineAll;
      if (quarantine !== undefined && (response.action === 'continue' || response.action === 'accept')) {
        modifications.push({ type: 'quarantine', reason: quarantine });
      }
      message = nextMessage();
      return { modifications, response };
    };

    /** The message's scanner, created at its first header; none when content checks are shed. */
    const scanner = (): MessageScanner | undefined => {
      if (message.scanner === undefined && !message.shed) {
        if (options.shedContent?.() === true) message.shed = true;
        else message.scanner = createMessageScanner();
      }
      return message.scanner;
    };

    serveMilterConnection(
      socket,
      {
        onConnect(info, ctx) {
          if (!counted) {
            counted = true;
            total++;
            if (info.address !== undefined && (info.family === '4' || info.family === '6')) {
              clientKey = clientFacts(info as { readonly address: string }).clientAddress;
              perClient.set(clientKey, (perClient.get(clientKey) ?? 0) + 1);
            }
          }
          return onConnect(ctx);
        },
        onHelo: (_helo, ctx) => onHelo(ctx),
        onMail(_sender, ctx) {
          message.scanner?.abort();
          message = nextMessage();
          if (discardAll) return { action: 'discard' };
          return onMailDecision(ctx);
        },
        onRcpt(recipient, ctx) {
          const address = unbracket(recipient.address);
          const verdict = decideStage(facts(ctx, 'rcpt', { recipient: address }));
          const answer = (v: Verdict): MilterResponse => {
            const response = respond(v, 'rcpt');
            if (response.action === 'continue' || response.action === 'accept') {
              message.acceptedRecipients++;
              if (message.recipients.length < MAX_KEPT_RECIPIENTS) message.recipients.push(address);
            }
            return response;
          };
          return verdict instanceof Promise ? verdict.then((v) => after(answer(v), v.delayMs)) : after(answer(verdict), verdict.delayMs);
        },
        onData: (ctx) => onData(ctx),
        onHeader(name, value) {
          scanner()?.header(name, value);
          return { action: 'continue' };
        },
        onEoh() {
          scanner()?.endOfHeaders();
          return { action: 'continue' };
        },
        onBody(chunk) {
          scanner()?.body(chunk);
          return { action: 'continue' };
        },
        async onEom(ctx) {
          const headers = ctx.message?.headers ?? [];
          const scanned: MessageFacts | undefined = message.scanner === undefined ? undefined : await message.scanner.finish(headers);
          const content: MessageFacts = scanned ?? { headers, attachments: [], parts: 0, bodyBytes: ctx.message?.bodyBytes ?? 0 };
          const f = facts(ctx, 'eom', {
            recipientCount: message.acceptedRecipients,
            recipients: message.recipients,
            size: ctx.message?.bodyBytes ?? content.bodyBytes,
            message: content,
          });
          const verdict = decideStage(f);
          return verdict instanceof Promise
            ? verdict.then((v) => after(endOfMessage(v, f, ctx), v.delayMs))
            : after(endOfMessage(verdict, f, ctx), verdict.delayMs);
        },
        onAbort() {
          message.scanner?.abort();
          message = nextMessage();
        },
        onClose() {
          release();
        },
        onProtocolError(code, detail) {
          metrics.protocolErrors.labels('milter', code).inc();
          const shown = (options.redactor?.().fields.size ?? 0) > 0 ? {} : { detail };
          connLog.warn({ code, ...shown, peer: socket.remoteAddress }, 'malformed milter packet, closing the connection');
        },
        onHandlerError(error) {
          metrics.internalErrors.labels('milter').inc();
          connLog.error({ err: String(error) }, 'milter handler failed, closing the connection');
        },
      },
      { wanted: LEVEE_MILTER_WANTED },
    );
    connections.add(socket);
  }

  return {
    accept,
    get connections() {
      return new Set(connections);
    },
    concurrency: (address) => perClient.get(canonicalIp(address) ?? address.toLowerCase()) ?? 0,
    drain() {
      draining = true;
    },
  };
}
