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

/**
 * Every known name followed by its "=", as bytes, one after another: name i
 * is NAMES_AND_EQUALS[NAME_STARTS[i], NAME_STARTS[i + 1]). Decoders compare
 * the bytes they received against these rather than a string's characters:
 * a typed array load is a few instructions, where charCodeAt or an inlined
 * startsWith re-checks the string's representation for every character
 * (profiled: ~40 instructions a character, most of the decoder's time).
 */
const NAMES_AND_EQUALS: Uint8Array = Buffer.from(POLICY_ATTRIBUTE_NAMES.map((name) => `${name}=`).join(''), 'latin1');
const NAME_STARTS: readonly number[] = POLICY_ATTRIBUTE_NAMES.reduce((starts, name) => [...starts, (starts.at(-1) as number) + name.length + 1], [0]);

/** The known names' indexes by length, for knownAttributeIndexAt. */
const INDEXES_BY_LENGTH: readonly (readonly number[])[] = (() => {
  const byLength: number[][] = [];
  POLICY_ATTRIBUTE_NAMES.forEach((name, index) => (byLength[name.length] ??= []).push(index));
  return byLength;
})();

/** Whether `bytes` holds the known name of `index` and its "=" at `start`. */
function nameAndEqualsAt(bytes: Uint8Array, start: number, index: number): boolean {
  const from = NAME_STARTS[index] as number;
  const length = (NAME_STARTS[index + 1] as number) - from;
  if (start + length > bytes.length) return false;
  for (let i = 0; i < length; i++) if (bytes[start + i] !== NAMES_AND_EQUALS[from + i]) return false;
  return true;
}

/**
 * attributeLineAt - whether the line at `start` of `bytes` begins with the
 * known name of `index` and its "=". Postfix writes its attributes in one
 * fixed order, so a decoder that tries the name after the previous line's
 * first recognises nearly every line with this one comparison, and needs no
 * search for the "=".
 */
export function attributeLineAt(bytes: Uint8Array, start: number, index: number): boolean {
  return index < POLICY_ATTRIBUTE_NAMES.length && nameAndEqualsAt(bytes, start, index);
}

/** The length of the known name of `index`. */
export function attributeNameLength(index: number): number {
  return (NAME_STARTS[index + 1] as number) - (NAME_STARTS[index] as number) - 1;
}

/**
 * knownAttributeIndexAt - the index in POLICY_ATTRIBUTE_NAMES of the known
 * name that is exactly `bytes[start, eq)`, where `bytes[eq]` is the line's
 * first "=", or -1. Lets a decoder recognise a name in place, without cutting
 * it out of the line first.
 */
export function knownAttributeIndexAt(bytes: Uint8Array, start: number, eq: number): number {
  const candidates = INDEXES_BY_LENGTH[eq - start];
  if (candidates === undefined) return -1;
  for (let i = 0; i < candidates.length; i++) {
    const index = candidates[i] as number;
    if (nameAndEqualsAt(bytes, start, index)) return index;
  }
  return -1;
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
