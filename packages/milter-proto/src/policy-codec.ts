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
import {
  attributeLineAt,
  attributeNameLength,
  knownAttributeIndexAt,
  POLICY_ATTRIBUTE_NAMES,
  type PolicyAttributeName,
  type PolicyRequest,
} from './policy-attributes.js';

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
  // The current request's known values by index in POLICY_ATTRIBUTE_NAMES:
  // stored by a constant-shape array write, turned into the request object in
  // one literal when its blank line arrives (a store by computed name was
  // megamorphic, ~300 instructions per attribute, profiled).
  const values: (string | undefined)[] = new Array<string | undefined>(POLICY_ATTRIBUTE_NAMES.length).fill(undefined);
  let unknown = newUnknownBag();
  // The index of the attribute Postfix writes next, if it keeps its order.
  let expected = 0;
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
    const input = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
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
      // The known attribute of this line and its "=", when the line starts
      // with the name expected next; otherwise found once the line is whole.
      let index = attributeLineAt(buf, lineStart, expected) ? expected : -1;
      let eq = index < 0 ? -1 : lineStart + attributeNameLength(index);
      const nl = lineEnd(buf, eq < 0 ? lineStart : eq + 1);
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
        out.push({ kind: 'request', request: takeRequest() });
        attributeCount = 0;
        requestBytes = 0;
      } else {
        if (++attributeCount > limits.maxAttributes) {
          return fail(out, 'too-many-attributes', `more than ${limits.maxAttributes} attributes`);
        }
        if (eq < 0) {
          eq = buf.indexOf(EQUALS, lineStart);
          if (eq < 0 || eq > nl) {
            return fail(out, 'missing-equals', `line without "=": ${preview(buf, lineStart, nl)}`);
          }
          if (eq === lineStart) return fail(out, 'empty-name', `line with an empty name: ${preview(buf, lineStart, nl)}`);
          index = knownAttributeIndexAt(buf, lineStart, eq);
        }
        if (nul !== Infinity && nul < lineStart) {
          nul = buf.indexOf(NUL, lineStart);
          if (nul < 0) nul = Infinity;
        }
        if (nul < nl) return fail(out, 'nul-byte', `NUL byte in line: ${preview(buf, lineStart, nl)}`);
        const value = eq + 1 === nl ? '' : text === undefined ? buf.toString('utf8', eq + 1, nl) : text.slice(eq + 1, nl);
        if (index >= 0) {
          values[index] = value;
          expected = index + 1;
        } else {
          unknown[text === undefined ? buf.toString('latin1', lineStart, eq) : text.slice(lineStart, eq)] = value;
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

  /** The request whose blank line just arrived; the decoder starts the next one afresh. */
  function takeRequest(): PolicyRequest {
    const request = requestFrom(values, unknown);
    values.fill(undefined);
    unknown = newUnknownBag();
    expected = 0;
    return request;
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
 * The index of the first LF at or after `from`, or -1. A plain loop over the
 * first bytes: most values Postfix sends are a few bytes, shorter than the
 * cost of calling out to memchr (Buffer.indexOf), which takes over for long ones.
 */
function lineEnd(buf: Buffer, from: number): number {
  const end = Math.min(buf.length, from + 64);
  for (let i = from; i < end; i++) if (buf[i] === LF) return i;
  return end === buf.length ? -1 : buf.indexOf(LF, end);
}

/** A null-prototype bag: `__proto__=x` from a peer is just an unknown attribute. */
function newUnknownBag(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/**
 * A request with every known attribute present (undefined unless its line
 * arrived), in one literal: a fixed shape, ~0.3 KiB, where adding ~30
 * properties one by one through computed names made a dictionary-mode object
 * of ~3 KiB (profiled). `values` is indexed as POLICY_ATTRIBUTE_NAMES, which
 * a test checks this literal against. An absent attribute reads as undefined
 * either way; only Object.keys sees the difference.
 */
function requestFrom(values: readonly (string | undefined)[], unknown: Record<string, string>): PolicyRequest {
  return {
    request: values[0],
    protocol_state: values[1],
    protocol_name: values[2],
    client_address: values[3],
    client_name: values[4],
    client_port: values[5],
    reverse_client_name: values[6],
    server_address: values[7],
    server_port: values[8],
    helo_name: values[9],
    sender: values[10],
    recipient: values[11],
    recipient_count: values[12],
    queue_id: values[13],
    instance: values[14],
    size: values[15],
    etrn_domain: values[16],
    stress: values[17],
    sasl_method: values[18],
    sasl_username: values[19],
    sasl_sender: values[20],
    ccert_subject: values[21],
    ccert_issuer: values[22],
    ccert_fingerprint: values[23],
    ccert_pubkey_fingerprint: values[24],
    encryption_protocol: values[25],
    encryption_cipher: values[26],
    encryption_keysize: values[27],
    tls_sni: values[28],
    policy_context: values[29],
    compatibility_level: values[30],
    mail_version: values[31],
    unknown,
  } satisfies Required<{ [K in PolicyAttributeName]: string | undefined }> & { unknown: Record<string, string> };
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
