/**
 * key-template - counter key templates such as `{client_network/24,64}` or
 * `{sasl_username}:{recipient_domain}`: parsing (with the offset of an error,
 * for file:line:col) and rendering against a request.
 *
 * Placeholders:
 *   {client_address}                    canonical IP text (RFC 5952 for IPv6)
 *   {client_network}                    same as {client_network/24,64}
 *   {client_network/V4}                 IPv4 /V4 (0..32); IPv6 /64
 *   {client_network/V4,V6}              IPv4 /V4, IPv6 /V6 (0..128)
 *                                       rendered as `192.0.2.0/24`, `2001:db8:1:2::/64`
 *   {sender} {sender_domain} {recipient} {recipient_domain}
 *   {sasl_username} {helo_name} {client_name}
 * Text between placeholders is literal; `{` and `}` may appear only as
 * placeholder delimiters.
 *
 * One placeholder carries both prefix lengths because a rule counts clients of
 * both families, and a /24 means nothing for IPv6: an IPv6 customer usually
 * holds a /64 (or /48), so the IPv6 length must be chosen separately.
 *
 * Rendering is lowercase. When a placeholder's fact is absent (no SASL user,
 * null sender's domain, a client address that is not an IP for
 * {client_network}) rendering gives undefined and the rule does not apply.
 * The null sender renders as `<>` in {sender}. Each value is cut to
 * MAX_KEY_VALUE characters, which bounds key memory; values longer than any
 * legal address then share a counter.
 */

import { networkKey } from './ip.js';
import type { RequestView, ViewNeeds } from './request-view.js';

export type FieldPlaceholder =
  | 'client_address'
  | 'sender'
  | 'sender_domain'
  | 'recipient'
  | 'recipient_domain'
  | 'sasl_username'
  | 'helo_name'
  | 'client_name';

export const FIELD_PLACEHOLDERS: readonly FieldPlaceholder[] = [
  'client_address',
  'sender',
  'sender_domain',
  'recipient',
  'recipient_domain',
  'sasl_username',
  'helo_name',
  'client_name',
];

export type TemplatePart =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'field'; readonly name: FieldPlaceholder }
  | { readonly kind: 'network'; readonly v4: number; readonly v6: number };

export interface KeyTemplate {
  readonly source: string;
  readonly parts: readonly TemplatePart[];
}

export type TemplateParseResult =
  | { readonly ok: true; readonly template: KeyTemplate }
  | { readonly ok: false; readonly message: string; /** offset of the problem in the source */ readonly offset: number };

export const DEFAULT_NETWORK_V4 = 24;
export const DEFAULT_NETWORK_V6 = 64;
export const MAX_KEY_VALUE = 320;
const MAX_TEMPLATE_LENGTH = 256;

const NETWORK_RE = /^client_network(?:\/(\d{1,3})(?:,(\d{1,3}))?)?$/;

function parsePlaceholder(body: string): TemplatePart | string {
  if ((FIELD_PLACEHOLDERS as readonly string[]).includes(body)) return { kind: 'field', name: body as FieldPlaceholder };
  if (body.startsWith('client_network')) {
    const m = NETWORK_RE.exec(body);
    if (m === null) return `bad placeholder {${body}}: write {client_network}, {client_network/V4} or {client_network/V4,V6}`;
    const v4 = m[1] === undefined ? DEFAULT_NETWORK_V4 : Number(m[1]);
    const v6 = m[2] === undefined ? DEFAULT_NETWORK_V6 : Number(m[2]);
    if (v4 > 32) return `IPv4 prefix length ${v4} in {${body}} is not in 0..32 (for IPv6 write {client_network/${DEFAULT_NETWORK_V4},${v4}})`;
    if (v6 > 128) return `IPv6 prefix length ${v6} in {${body}} is not in 0..128`;
    return { kind: 'network', v4, v6 };
  }
  return `unknown placeholder {${body}}; known: ${[...FIELD_PLACEHOLDERS, 'client_network/V4,V6'].map((p) => `{${p}}`).join(' ')}`;
}

export function parseKeyTemplate(source: string): TemplateParseResult {
  if (source.length === 0) return { ok: false, message: 'empty key template', offset: 0 };
  if (source.length > MAX_TEMPLATE_LENGTH) {
    return { ok: false, message: `key template longer than ${MAX_TEMPLATE_LENGTH} characters`, offset: 0 };
  }
  const parts: TemplatePart[] = [];
  let literal = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    if (c === '}') return { ok: false, message: 'unmatched "}" in key template', offset: i };
    if (c !== '{') {
      literal += c;
      i++;
      continue;
    }
    const close = source.indexOf('}', i + 1);
    const nextOpen = source.indexOf('{', i + 1);
    if (close < 0 || (nextOpen >= 0 && nextOpen < close)) return { ok: false, message: 'unclosed "{" in key template', offset: i };
    const part = parsePlaceholder(source.slice(i + 1, close));
    if (typeof part === 'string') return { ok: false, message: part, offset: i };
    if (literal.length > 0) parts.push({ kind: 'literal', text: literal.toLowerCase() });
    literal = '';
    parts.push(part);
    i = close + 1;
  }
  if (literal.length > 0) parts.push({ kind: 'literal', text: literal.toLowerCase() });
  // A template without placeholders is legal: one counter for every request
  // (a global rate, e.g. all bounces from all clients).
  return { ok: true, template: { source, parts } };
}

/** Record in `needs` the request values this template reads. */
export function templateNeeds(t: KeyTemplate, needs: ViewNeeds): void {
  for (const p of t.parts) {
    if (p.kind === 'network') needs.ip = true;
    else if (p.kind === 'field') {
      switch (p.name) {
        case 'client_address':
          needs.ip = true;
          needs.clientAddressText = true;
          break;
        case 'sender':
        case 'sender_domain':
          needs.sender = true;
          break;
        case 'recipient':
        case 'recipient_domain':
          needs.recipient = true;
          break;
        case 'sasl_username':
          needs.saslUsername = true;
          break;
        case 'helo_name':
          needs.heloName = true;
          break;
        case 'client_name':
          needs.clientName = true;
          break;
      }
    }
  }
}

function cut(s: string): string {
  return s.length > MAX_KEY_VALUE ? s.slice(0, MAX_KEY_VALUE) : s;
}

function fieldValue(name: FieldPlaceholder, v: RequestView): string | undefined {
  switch (name) {
    case 'client_address':
      return v.clientAddressText;
    case 'sender':
      return v.senderLower === '' ? '<>' : v.senderLower;
    case 'sender_domain':
      return v.senderDomain;
    case 'recipient':
      return v.recipientLower === '' ? undefined : v.recipientLower;
    case 'recipient_domain':
      return v.recipientDomain;
    case 'sasl_username':
      return v.saslLower;
    case 'helo_name':
      return v.heloLower;
    case 'client_name':
      return v.clientNameLower;
  }
}

/** The rendered key (lowercase), or undefined when a placeholder's fact is absent. */
export function renderKeyTemplate(t: KeyTemplate, v: RequestView, prefix: string): string | undefined {
  let out = prefix;
  for (const p of t.parts) {
    let value: string | undefined;
    if (p.kind === 'literal') {
      out += p.text;
      continue;
    }
    if (p.kind === 'field') {
      value = fieldValue(p.name, v);
    } else if (v.ip !== undefined) {
      const len = v.ip.family === 4 ? p.v4 : p.v6;
      if (v.netMemoLen !== len) {
        v.netMemoKey = networkKey(v.ip, len);
        v.netMemoLen = len;
      }
      value = v.netMemoKey;
    }
    if (value === undefined) return undefined;
    out += cut(value);
  }
  return out;
}

/** The first placeholder in `t` whose fact is absent from `v`, for the trail. */
export function missingPlaceholder(t: KeyTemplate, v: RequestView): string | undefined {
  for (const p of t.parts) {
    if (p.kind === 'field' && fieldValue(p.name, v) === undefined) return `{${p.name}}`;
    if (p.kind === 'network' && v.ip === undefined) return '{client_network}';
  }
  return undefined;
}
