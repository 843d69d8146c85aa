/**
 * facts - the protocol-neutral record of one decision point.
 *
 * Both the Postfix policy path and the milter path turn what the MTA told us
 * into one `Facts` value; rules only ever see this, so a wire change never
 * ripples into rule code. Absent information is `undefined`, never "".
 */

import { parseIp, type IpAddress } from './ip.js';

/** Stage - where in the SMTP dialogue the MTA asks. */
export type Stage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'eom' | 'vrfy' | 'etrn';

export const STAGES: readonly Stage[] = ['connect', 'helo', 'mail', 'rcpt', 'data', 'eom', 'vrfy', 'etrn'];

/** Protocol - which listener produced the facts (a bounded metric label). */
export type Protocol = 'policy' | 'milter';

export interface Facts {
  readonly protocol: Protocol;
  readonly stage: Stage;
  /** Client IP as the MTA reports it, normalised: no `IPv6:` prefix, no brackets. */
  readonly clientAddress?: string;
  /**
   * The client address parsed, when whoever built the Facts parsed it
   * already (the policy and milter listeners do), so rules do not parse it
   * again. When present, `clientAddress` is its canonical text (formatIp).
   */
  readonly clientIp?: IpAddress;
  readonly clientPort?: number;
  /** Verified reverse name, or undefined when the MTA says `unknown`. */
  readonly clientName?: string;
  readonly reverseClientName?: string;
  readonly serverAddress?: string;
  readonly serverPort?: number;
  readonly heloName?: string;
  /** Envelope sender; "" is the null sender `<>`; undefined before MAIL. */
  readonly sender?: string;
  readonly recipient?: string;
  readonly recipientCount?: number;
  /** The transaction's accepted recipients so far, where the MTA's protocol tells them all (milter, from DATA on; bounded). */
  readonly recipients?: readonly string[];
  readonly queueId?: string;
  /** Transaction id (Postfix `instance`). */
  readonly instance?: string;
  /** Message size in bytes: SIZE= at MAIL, actual size at end of message. */
  readonly size?: number;
  readonly saslMethod?: string;
  readonly saslUsername?: string;
  readonly saslSender?: string;
  readonly encryptionProtocol?: string;
  readonly encryptionCipher?: string;
  /** Postfix `stress=yes`: the MTA itself is overloaded. */
  readonly stress?: boolean;
  readonly policyContext?: string;
  /** Open connections from this client address, this one included (milter: it sees connect and close). */
  readonly clientConcurrency?: number;
  /** Open connections from all clients, this one included (milter). */
  readonly totalConcurrency?: number;
  /** The outbreak tier at the time of the decision (load-tier.ts). */
  readonly tier?: 'normal' | 'delay' | 'shed' | 'refuse';
  /** BATV check of `recipient` when it is in batv.domains (only when BATV is configured). */
  readonly batv?: 'valid' | 'expired' | 'bad-signature' | 'unknown-key' | 'unsigned';
  /** What the recipient directory says of `recipient` (only when one is configured). */
  readonly recipientStatus?: 'known' | 'unknown' | 'foreign';
  /** What the content of the message showed (milter, from end of headers on). */
  readonly message?: MessageFacts;
}

/** A header as the MTA passed it: name as sent, value unfolded of nothing (may hold "\n\t"). */
export interface HeaderFact {
  readonly name: string;
  readonly value: string;
}

/** One MIME leaf part that is an attachment or carries a file name. */
export interface AttachmentFact {
  /** Decoded file name (Content-Disposition filename or Content-Type name), if any. */
  readonly filename?: string;
  /** Lowercased MIME type, e.g. "application/zip". */
  readonly contentType: string;
  /** For a file found inside an archive attachment: the archive's file name. */
  readonly archive?: string;
}

export interface MessageFacts {
  /** Top-level headers in order (bounded by the milter header limits). */
  readonly headers: readonly HeaderFact[];
  /** Parts with a file name or `Content-Disposition: attachment`, at any depth (bounded). */
  readonly attachments: readonly AttachmentFact[];
  /** MIME leaf parts seen. */
  readonly parts: number;
  /** report-type of a top-level multipart/report (e.g. "delivery-status" for a DSN bounce). */
  readonly report?: string;
  /**
   * The Received lines of the message a bounce returns (its message/rfc822 or
   * text/rfc822-headers part); undefined when the message returns no headers.
   */
  readonly returnedReceived?: readonly string[];
  /** Body bytes as received. */
  readonly bodyBytes: number;
}

/**
 * Facts while a listener fills them in, field by field: assignment, not
 * one-field object spreads, which cost more per request than the rest of the
 * conversion (profiled on both listeners).
 */
export type FactsDraft = { -readonly [K in keyof Facts]: Facts[K] };

/** The client address parsed: `clientIp` when whoever built the Facts parsed it (the listeners do), else parsed here. */
export function clientIpOf(facts: Facts): IpAddress | undefined {
  return facts.clientIp ?? (facts.clientAddress === undefined ? undefined : parseIp(facts.clientAddress));
}
