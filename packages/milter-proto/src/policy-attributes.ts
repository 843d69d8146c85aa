/**
 * policy-attributes - the attribute names of the Postfix policy delegation
 * protocol (SMTPD_POLICY_README, mail_proto.h), kept exactly as Postfix spells them.
 */

/** Every request attribute Postfix 3.12 sends, in the order it writes them. */
export const POLICY_ATTRIBUTE_NAMES = [
  'request',
  'protocol_state',
  'protocol_name',
  'client_address',
  'client_name',
  'client_port',
  'reverse_client_name',
  'server_address',
  'server_port',
  'helo_name',
  'sender',
  'recipient',
  'recipient_count',
  'queue_id',
  'instance',
  'size',
  'etrn_domain',
  'stress',
  'sasl_method',
  'sasl_username',
  'sasl_sender',
  'ccert_subject',
  'ccert_issuer',
  'ccert_fingerprint',
  'ccert_pubkey_fingerprint',
  'encryption_protocol',
  'encryption_cipher',
  'encryption_keysize',
  'tls_sni',
  'policy_context',
  'compatibility_level',
  'mail_version',
] as const;

export type PolicyAttributeName = (typeof POLICY_ATTRIBUTE_NAMES)[number];

/**
 * PolicyRequest - one decoded request. Known attributes are typed; anything
 * else lands in `unknown` (bounded by the decoder's attribute limit), never on
 * the typed record, so a peer cannot shadow a field we rely on. A decoded
 * request has every known name as a property, undefined when the peer did not
 * send it (a fixed shape: see the decoder).
 */
export type PolicyRequest = { [K in PolicyAttributeName]?: string | undefined } & {
  readonly unknown: Record<string, string>;
};

const KNOWN: ReadonlySet<string> = new Set(POLICY_ATTRIBUTE_NAMES);

/** The known names by length, for knownAttributeAt. */
const KNOWN_BY_LENGTH: readonly (readonly PolicyAttributeName[])[] = (() => {
  const byLength: PolicyAttributeName[][] = [];
  for (const name of POLICY_ATTRIBUTE_NAMES) (byLength[name.length] ??= []).push(name);
  return byLength;
})();

/**
 * knownAttributeAt - the known name that is exactly `text[start, end)`, or undefined.
 * Lets a decoder recognise a name in place, without cutting it out of the line
 * first (the decoder's main allocation, profiled): the names it returns are the
 * constants above.
 */
export function knownAttributeAt(text: string, start: number, end: number): PolicyAttributeName | undefined {
  const candidates = KNOWN_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  for (let i = 0; i < candidates.length; i++) {
    const name = candidates[i] as PolicyAttributeName;
    if (text.startsWith(name, start)) return name;
  }
  return undefined;
}

/** isKnownPolicyAttribute - true for the names Postfix documents. */
export function isKnownPolicyAttribute(name: string): name is PolicyAttributeName {
  return KNOWN.has(name);
}

/** The value of `request=` that Postfix sends for access policy queries. */
export const SMTPD_ACCESS_POLICY = 'smtpd_access_policy';

/** decodeXtext - undo the `+XX` escaping Postfix applies to ccert_subject and ccert_issuer. */
export function decodeXtext(value: string): string {
  return value.replace(/\+([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}
