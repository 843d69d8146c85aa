/**
 * policy-codec - the Postfix policy delegation wire format (SMTPD_POLICY_README,
 * attr_scan_plain.c / attr_print_plain.c).
 *
 * A request or reply is `name=value\n` lines ended by an empty line. LF only:
 * Postfix has no CR handling, so a CR we send becomes part of a value (pitfall
 * C.23). A name is split at the first `=`; the value may contain `=`.
 *
 * The decoder is incremental: bytes may arrive split anywhere and several
 * requests may arrive in one read. It never throws on peer input; it returns
 * results, and after the first error it stays failed (the caller closes the
 * connection: Postfix retries and then applies its default action).
 *
 * LIMITATIONS: values are decoded as UTF-8; invalid sequences become U+FFFD,
 * which is fine for matching but means a value is not byte-exact. Repeated
 * attributes keep the last value (the protocol allows either).
 */

import { isAscii } from 'node:buffer';
import { isKnownPolicyAttribute, knownAttributeAt, type PolicyAttributeName, type PolicyRequest } from './policy-attributes.js';

export interface PolicyLimits {
  /** Longest line, `name=value` without its LF. 4 x Postfix's line_length_limit. */
  readonly maxLineBytes: number;
  /** Most attribute lines in one request (Postfix 3.12 sends 32). */
  readonly maxAttributes: number;
  /** Largest request, all lines included. */
  readonly maxRequestBytes: number;
}

export const DEFAULT_POLICY_LIMITS: PolicyLimits = {
  maxLineBytes: 8192,
  maxAttributes: 256,
  maxRequestBytes: 65536,
};

export type PolicyErrorCode =
  | 'line-too-long'
  | 'too-many-attributes'
  | 'request-too-large'
  | 'missing-equals'
  | 'empty-name'
  | 'nul-byte';

export type PolicyDecodeResult =
  | { readonly kind: 'request'; readonly request: PolicyRequest }
  | { readonly kind: 'error'; readonly code: PolicyErrorCode; readonly detail: string };

export interface PolicyDecoder {
  /** Feed bytes; returns every request completed by them, then at most one error. */
  push(chunk: Uint8Array): PolicyDecodeResult[];
  /** Bytes held that do not yet form a whole request. */
  readonly pendingBytes: number;
  readonly failed: boolean;
}

const LF = 0x0a;
const EQUALS = 0x3d;
const NUL = 0x00;

/** createPolicyDecoder - an incremental decoder for requests (or replies: same grammar). */
export function createPolicyDecoder(limits: PolicyLimits = DEFAULT_POLICY_LIMITS): PolicyDecoder {
  let pending: Buffer | undefined;
  let current = newRequest();
  let attributeCount = 0;
  let requestBytes = 0;
  let failed = false;

  function fail(out: PolicyDecodeResult[], code: PolicyErrorCode, detail: string): PolicyDecodeResult[] {
    failed = true;
    pending = undefined;
    out.push({ kind: 'error', code, detail });
    return out;
  }

  function push(chunk: Uint8Array): PolicyDecodeResult[] {
    const out: PolicyDecodeResult[] = [];
    if (failed) return out;
    const input = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const buf = pending === undefined ? input : Buffer.concat([pending, input]);
    // Fast path: all-ASCII input (what Postfix sends in practice) is read as
    // one latin1 string, where character positions are byte positions and
    // latin1 and UTF-8 decode alike, so each name and value is a string
    // slice instead of a Buffer decode (profiled: the decoder's main cost).
    const text = isAscii(buf) ? buf.toString('latin1') : undefined;
    // The first NUL at or after the current line, found once per pass
    // rather than once per line (a per-line search scans to the end).
    let nul = -1;
    let lineStart = 0;
    for (;;) {
      const nl = text === undefined ? buf.indexOf(LF, lineStart) : text.indexOf('\n', lineStart);
      if (nl < 0) break;
      const lineLength = nl - lineStart;
      requestBytes += lineLength + 1;
      if (lineLength > limits.maxLineBytes) {
        return fail(out, 'line-too-long', `line of ${lineLength} bytes exceeds ${limits.maxLineBytes}`);
      }
      if (requestBytes > limits.maxRequestBytes) {
        return fail(out, 'request-too-large', `request exceeds ${limits.maxRequestBytes} bytes`);
      }
      if (lineLength === 0) {
        out.push({ kind: 'request', request: current });
        current = newRequest();
        attributeCount = 0;
        requestBytes = 0;
      } else {
        if (++attributeCount > limits.maxAttributes) {
          return fail(out, 'too-many-attributes', `more than ${limits.maxAttributes} attributes`);
        }
        const eq = text === undefined ? buf.indexOf(EQUALS, lineStart) : text.indexOf('=', lineStart);
        if (eq < 0 || eq > nl) {
          return fail(out, 'missing-equals', `line without "=": ${preview(buf, lineStart, nl)}`);
        }
        if (eq === lineStart) return fail(out, 'empty-name', `line with an empty name: ${preview(buf, lineStart, nl)}`);
        if (nul !== Infinity && nul < lineStart) {
          nul = buf.indexOf(NUL, lineStart);
          if (nul < 0) nul = Infinity;
        }
        if (nul < nl) return fail(out, 'nul-byte', `NUL byte in line: ${preview(buf, lineStart, nl)}`);
        const value = text === undefined ? buf.toString('utf8', eq + 1, nl) : text.slice(eq + 1, nl);
        const known = text === undefined ? undefined : knownAttributeAt(text, lineStart, eq);
        if (known !== undefined) {
          current[known] = value;
        } else {
          const name = text === undefined ? buf.toString('latin1', lineStart, eq) : text.slice(lineStart, eq);
          if (isKnownPolicyAttribute(name)) current[name] = value;
          else current.unknown[name] = value;
        }
      }
      lineStart = nl + 1;
    }
    const restLength = buf.length - lineStart;
    if (restLength > limits.maxLineBytes) {
      return fail(out, 'line-too-long', `line of more than ${limits.maxLineBytes} bytes`);
    }
    if (requestBytes + restLength > limits.maxRequestBytes) {
      return fail(out, 'request-too-large', `request exceeds ${limits.maxRequestBytes} bytes`);
    }
    // Copy the tail so we never pin a large socket buffer for a few bytes.
    pending = restLength === 0 ? undefined : Buffer.from(buf.subarray(lineStart));
    return out;
  }

  return {
    push,
    get pendingBytes() {
      return (pending?.length ?? 0) + requestBytes;
    },
    get failed() {
      return failed;
    },
  };
}

/**
 * A request with every known attribute present (undefined until its line
 * arrives), in one literal. Adding ~30 properties one by one through computed
 * names turned each request into a dictionary-mode object, ~3 KiB apiece
 * (profiled: the daemon's largest allocation per request); this shape is
 * fixed, ~0.3 KiB, and its stores are in place. An absent attribute reads as
 * undefined either way; only Object.keys sees the difference.
 */
function newRequest(): PolicyRequest {
  return {
    request: undefined,
    protocol_state: undefined,
    protocol_name: undefined,
    client_address: undefined,
    client_name: undefined,
    client_port: undefined,
    reverse_client_name: undefined,
    server_address: undefined,
    server_port: undefined,
    helo_name: undefined,
    sender: undefined,
    recipient: undefined,
    recipient_count: undefined,
    queue_id: undefined,
    instance: undefined,
    size: undefined,
    etrn_domain: undefined,
    stress: undefined,
    sasl_method: undefined,
    sasl_username: undefined,
    sasl_sender: undefined,
    ccert_subject: undefined,
    ccert_issuer: undefined,
    ccert_fingerprint: undefined,
    ccert_pubkey_fingerprint: undefined,
    encryption_protocol: undefined,
    encryption_cipher: undefined,
    encryption_keysize: undefined,
    tls_sni: undefined,
    policy_context: undefined,
    compatibility_level: undefined,
    mail_version: undefined,
    // A null-prototype bag: `__proto__=x` from a peer is just an unknown attribute.
    unknown: Object.create(null) as Record<string, string>,
  } satisfies Required<{ [K in PolicyAttributeName]: undefined }> & { unknown: Record<string, string> };
}

/** Log-safe excerpt of a bad line: at most 100 characters, control bytes escaped. */
function preview(buf: Buffer, start: number, end: number): string {
  const text = buf.toString('latin1', start, Math.min(end, start + 100));
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(text.replace(/[\x00-\x1f\x7f-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/** encodePolicyAttributes - `name=value\n...\n\n`; throws on a name or value that cannot be encoded. */
export function encodePolicyAttributes(attributes: Readonly<Record<string, string | number | undefined>>): Buffer {
  let text = '';
  for (const [name, raw] of Object.entries(attributes)) {
    if (raw === undefined) continue;
    const value = String(raw);
    if (name.length === 0 || /[=\n\0]/.test(name)) throw new RangeError(`invalid policy attribute name ${JSON.stringify(name)}`);
    if (/[\n\0]/.test(value)) throw new RangeError(`policy attribute ${name} has a newline or NUL in its value`);
    text += `${name}=${value}\n`;
  }
  return Buffer.from(`${text}\n`, 'utf8');
}

/** encodePolicyRequest - a request in wire form, `request=smtpd_access_policy` first. */
export function encodePolicyRequest(request: PolicyRequest): Buffer {
  const { unknown, ...known } = request;
  return encodePolicyAttributes({ ...known, ...unknown });
}
