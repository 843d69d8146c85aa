/**
 * policy-facts - turn a Postfix policy request into Facts.
 *
 * Postfix sends every attribute it knows, empty when it has no value, so ""
 * becomes undefined here; the one exception is `sender`, where "" after MAIL
 * FROM is the null sender `<>` (bounces), a fact rules care about.
 */

import type { PolicyRequest } from '@levee/milter-proto';
import { canonicalIp, type Facts, type Stage } from '@levee/rules';

const STAGE_OF_STATE: Readonly<Record<string, Stage>> = {
  CONNECT: 'connect',
  EHLO: 'helo',
  HELO: 'helo',
  MAIL: 'mail',
  RCPT: 'rcpt',
  DATA: 'data',
  'END-OF-MESSAGE': 'eom',
  VRFY: 'vrfy',
  ETRN: 'etrn',
};

/** Stages at which MAIL FROM has been given, so an empty sender means `<>`. */
const HAS_SENDER: ReadonlySet<Stage> = new Set<Stage>(['mail', 'rcpt', 'data', 'eom', 'vrfy']);

export type PolicyFactsResult = { readonly ok: true; readonly facts: Facts } | { readonly ok: false; readonly problem: string };

/** policyRequestToFacts - Facts for one request, or why the request cannot be decided. */
export function policyRequestToFacts(request: PolicyRequest): PolicyFactsResult {
  if (request.request !== 'smtpd_access_policy') {
    return { ok: false, problem: `request=${JSON.stringify(request.request ?? '')} is not smtpd_access_policy` };
  }
  const state = request.protocol_state ?? '';
  const stage = STAGE_OF_STATE[state.toUpperCase()];
  if (stage === undefined) return { ok: false, problem: `unknown protocol_state=${JSON.stringify(state)}` };
  const facts: Facts = {
    protocol: 'policy',
    stage,
    ...present('clientAddress', normaliseAddress(request.client_address)),
    ...present('clientPort', number(request.client_port)),
    ...present('clientName', hostname(request.client_name)),
    ...present('reverseClientName', hostname(request.reverse_client_name)),
    ...present('serverAddress', normaliseAddress(request.server_address)),
    ...present('serverPort', number(request.server_port)),
    ...present('heloName', text(request.helo_name)),
    ...present('sender', HAS_SENDER.has(stage) ? (request.sender ?? '') : text(request.sender)),
    ...present('recipient', text(request.recipient)),
    ...present('recipientCount', number(request.recipient_count)),
    ...present('queueId', text(request.queue_id)),
    ...present('instance', text(request.instance)),
    ...present('size', number(request.size)),
    ...present('saslMethod', text(request.sasl_method)),
    ...present('saslUsername', text(request.sasl_username)),
    ...present('saslSender', text(request.sasl_sender)),
    ...present('encryptionProtocol', text(request.encryption_protocol)),
    ...present('encryptionCipher', text(request.encryption_cipher)),
    ...present('policyContext', text(request.policy_context)),
    ...(request.stress === 'yes' ? { stress: true } : {}),
  };
  return { ok: true, facts };
}

function present<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function text(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function hostname(value: string | undefined): string | undefined {
  return value === undefined || value === '' || value === 'unknown' ? undefined : value.toLowerCase();
}

function number(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}

/** Postfix sends bare addresses; accept the `IPv6:` and bracketed forms too. */
function normaliseAddress(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  let address = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
  if (address.slice(0, 5).toLowerCase() === 'ipv6:') address = address.slice(5);
  return canonicalIp(address) ?? address.toLowerCase();
}
