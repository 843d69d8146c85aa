/**
 * policy-facts - turn a Postfix policy request into Facts.
 *
 * Postfix sends every attribute it knows, empty when it has no value, so ""
 * becomes undefined here; the one exception is `sender`, where "" after MAIL
 * FROM is the null sender `<>` (bounces), a fact rules care about.
 */

import type { PolicyRequest } from '@levee/milter-proto';
import { parseCanonicalIp, type Facts, type FactsDraft, type IpAddress, type Stage } from '@levee/rules';

/**
 * The stage of a protocol_state. Postfix writes the states in upper case, so
 * a switch on the exact text decides nearly every request without uppercasing
 * a copy and looking it up by a computed name (profiled: ~1,000 instructions
 * a request); other spellings are uppercased and tried once more.
 */
function stageOfState(state: string): Stage | undefined {
  switch (state) {
    case 'RCPT':
      return 'rcpt';
    case 'CONNECT':
      return 'connect';
    case 'EHLO':
    case 'HELO':
      return 'helo';
    case 'MAIL':
      return 'mail';
    case 'DATA':
      return 'data';
    case 'END-OF-MESSAGE':
      return 'eom';
    case 'VRFY':
      return 'vrfy';
    case 'ETRN':
      return 'etrn';
  }
  const upper = state.toUpperCase();
  return upper === state ? undefined : stageOfState(upper);
}

/** Stages at which MAIL FROM has been given, so an empty sender means `<>`. */
const HAS_SENDER: ReadonlySet<Stage> = new Set<Stage>(['mail', 'rcpt', 'data', 'eom', 'vrfy']);

export type PolicyFactsResult = { readonly ok: true; readonly facts: Facts } | { readonly ok: false; readonly problem: string };

/** policyRequestToFacts - Facts for one request, or why the request cannot be decided. */
export function policyRequestToFacts(request: PolicyRequest): PolicyFactsResult {
  if (request.request !== 'smtpd_access_policy') {
    return { ok: false, problem: `request=${JSON.stringify(request.request ?? '')} is not smtpd_access_policy` };
  }
  const state = request.protocol_state ?? '';
  const stage = stageOfState(state);
  if (stage === undefined) return { ok: false, problem: `unknown protocol_state=${JSON.stringify(state)}` };
  // Assigned field by field, in the order of the Facts type: object spreads
  // of one-field objects here cost more than the rest of the conversion.
  const facts: FactsDraft = { protocol: 'policy', stage };
  let v: string | number | undefined;
  const client = clientAddress(request.client_address);
  if (client !== undefined) {
    facts.clientAddress = client.text;
    // Parsed once, here: the rules and the block list read it.
    if (client.ip !== undefined) facts.clientIp = client.ip;
  }
  if ((v = number(request.client_port)) !== undefined) facts.clientPort = v;
  if ((v = hostname(request.client_name)) !== undefined) facts.clientName = v;
  if ((v = hostname(request.reverse_client_name)) !== undefined) facts.reverseClientName = v;
  if ((v = normaliseAddress(request.server_address)) !== undefined) facts.serverAddress = v;
  if ((v = number(request.server_port)) !== undefined) facts.serverPort = v;
  if ((v = text(request.helo_name)) !== undefined) facts.heloName = v;
  if ((v = HAS_SENDER.has(stage) ? (request.sender ?? '') : text(request.sender)) !== undefined) facts.sender = v;
  if ((v = text(request.recipient)) !== undefined) facts.recipient = v;
  if ((v = number(request.recipient_count)) !== undefined) facts.recipientCount = v;
  if ((v = text(request.queue_id)) !== undefined) facts.queueId = v;
  if ((v = text(request.instance)) !== undefined) facts.instance = v;
  if ((v = number(request.size)) !== undefined) facts.size = v;
  if ((v = text(request.sasl_method)) !== undefined) facts.saslMethod = v;
  if ((v = text(request.sasl_username)) !== undefined) facts.saslUsername = v;
  if ((v = text(request.sasl_sender)) !== undefined) facts.saslSender = v;
  if ((v = text(request.encryption_protocol)) !== undefined) facts.encryptionProtocol = v;
  if ((v = text(request.encryption_cipher)) !== undefined) facts.encryptionCipher = v;
  if ((v = text(request.policy_context)) !== undefined) facts.policyContext = v;
  if (request.stress === 'yes') facts.stress = true;
  return { ok: true, facts };
}

function text(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function hostname(value: string | undefined): string | undefined {
  return value === undefined || value === '' || value === 'unknown' ? undefined : value.toLowerCase();
}

/** A decimal number of 1 to 15 digits (below 2^53, so exact), read digit by digit: a regular expression and Number() cost ~4x as much. */
function number(value: string | undefined): number | undefined {
  if (value === undefined || value.length === 0 || value.length > 15) return undefined;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const digit = value.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    n = n * 10 + digit;
  }
  return n;
}

/** Postfix sends bare addresses; accept the `IPv6:` and bracketed forms too. */
function bareAddress(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  const address = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
  return hasIpv6Tag(address) ? address.slice(5) : address;
}

/** Whether `address` starts with `IPv6:` in any case; the first letter rules out nearly every address before any copy. */
function hasIpv6Tag(address: string): boolean {
  const first = address.charCodeAt(0);
  return (first === 0x49 || first === 0x69) /* I i */ && address.slice(0, 5).toLowerCase() === 'ipv6:';
}

/** The canonical text of an address and the parsed address; text that is not an address is kept, lowercased. */
function clientAddress(value: string | undefined): { readonly text: string; readonly ip: IpAddress | undefined } | undefined {
  const address = bareAddress(value);
  if (address === undefined) return undefined;
  return parseCanonicalIp(address) ?? { text: address.toLowerCase(), ip: undefined };
}

function normaliseAddress(value: string | undefined): string | undefined {
  return clientAddress(value)?.text;
}
