/**
 * ip - IPv4/IPv6 address and CIDR helpers, pure and allocation-light.
 *
 * Implements: parsing address text as MTAs report it (plain, `IPv6:`-prefixed,
 * `[bracketed]`), RFC 5952 canonical text, network keys for counters
 * (`192.0.2.0/24`, `2001:db8:1:2::/64`), CIDR parsing and a compiled matcher
 * for CIDR lists that answers with a binary search over merged ranges.
 *
 * Limits, on purpose:
 * - IPv6 zone ids (`fe80::1%eth0`) are rejected: an MTA never reports them
 *   for a peer, and a zone has no meaning in a counter key.
 * - IPv4 octets with leading zeros (`010.0.0.1`) are rejected, because some
 *   parsers read them as octal and we would disagree with them silently.
 * - IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is turned into plain IPv4, so a
 *   dual-stack listener cannot give one client two identities.
 * - Invalid input gives `undefined`; nothing here throws.
 */

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  readonly bytes: Uint8Array;
}

export interface Cidr {
  readonly family: IpFamily;
  /** The network address, host bits zeroed. */
  readonly bytes: Uint8Array;
  readonly prefixLen: number;
}

/** Longest address text we look at: a full IPv6 with embedded IPv4 plus `IPv6:` and brackets. */
const MAX_ADDRESS_TEXT = 64;

function parseDecimalOctet(text: string, start: number, end: number): number {
  const len = end - start;
  if (len < 1 || len > 3) return -1;
  // A leading zero would mean octal to inet_aton; refuse rather than guess.
  if (len > 1 && text.charCodeAt(start) === 0x30) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    value = value * 10 + c;
  }
  return value > 255 ? -1 : value;
}

/** Parse dotted-quad text[start..end) into out[offset..offset+4); false when invalid. */
function parseIpv4Into(text: string, start: number, end: number, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let partStart = start;
  for (let i = start; i <= end; i++) {
    if (i === end || text.charCodeAt(i) === 0x2e /* . */) {
      if (part > 3) return false;
      const v = parseDecimalOctet(text, partStart, i);
      if (v < 0) return false;
      out[offset + part] = v;
      part++;
      partStart = i + 1;
    }
  }
  return part === 4;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Parse IPv6 text[start..end) into 16 bytes; undefined when invalid. */
function parseIpv6(text: string, start: number, end: number): Uint8Array | undefined {
  const out = new Uint8Array(16);
  let group = 0; // groups written so far (16-bit units)
  let gapAt = -1; // group index where "::" was seen
  let i = start;
  if (end - start < 2) return undefined;
  if (text.charCodeAt(i) === 0x3a /* : */) {
    if (text.charCodeAt(i + 1) !== 0x3a) return undefined;
    gapAt = 0;
    i += 2;
    if (i === end) return out; // "::"
  }
  while (i < end) {
    if (group >= 8) return undefined;
    const groupStart = i;
    let value = 0;
    let digits = 0;
    while (i < end) {
      const h = hexValue(text.charCodeAt(i));
      if (h < 0) break;
      value = (value << 4) | h;
      digits++;
      i++;
    }
    if (i < end && text.charCodeAt(i) === 0x2e /* . */) {
      // Embedded IPv4 must be the last 32 bits.
      if (group > 6) return undefined;
      if (!parseIpv4Into(text, groupStart, end, out, group * 2)) return undefined;
      group += 2;
      i = end;
      break;
    }
    if (digits === 0 || digits > 4) return undefined;
    out[group * 2] = value >> 8;
    out[group * 2 + 1] = value & 0xff;
    group++;
    if (i === end) break;
    if (text.charCodeAt(i) !== 0x3a) return undefined;
    i++;
    if (i < end && text.charCodeAt(i) === 0x3a) {
      if (gapAt >= 0) return undefined; // a second "::"
      gapAt = group;
      i++;
      if (i === end) break;
    } else if (i === end) {
      return undefined; // trailing single ":"
    }
  }
  if (gapAt < 0) return group === 8 ? out : undefined;
  if (group >= 8) return undefined; // "::" must stand for at least one group
  // Move the groups written after the gap to the end.
  const tail = (group - gapAt) * 2;
  const shift = 16 - group * 2;
  for (let k = tail - 1; k >= 0; k--) {
    out[gapAt * 2 + shift + k] = out[gapAt * 2 + k] ?? 0;
    out[gapAt * 2 + k] = 0;
  }
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let k = 0; k < 10; k++) if (b[k] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Whether `text` has "IPv6:" (any case) at `at`; compared in place, as this runs once per request. */
function hasIpv6Tag(text: string, at: number): boolean {
  return (
    (text.charCodeAt(at) | 0x20) === 0x69 /* i */ &&
    (text.charCodeAt(at + 1) | 0x20) === 0x70 /* p */ &&
    (text.charCodeAt(at + 2) | 0x20) === 0x76 /* v */ &&
    text.charCodeAt(at + 3) === 0x36 /* 6 */ &&
    text.charCodeAt(at + 4) === 0x3a /* : */
  );
}

/**
 * Parse an address as an MTA may report it: `192.0.2.1`, `2001:db8::1`,
 * `IPv6:2001:db8::1`, `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
 */
export function parseIp(text: string): IpAddress | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_ADDRESS_TEXT) return undefined;
  let start = 0;
  let end = text.length;
  if (text.charCodeAt(0) === 0x5b /* [ */) {
    if (text.charCodeAt(end - 1) !== 0x5d /* ] */) return undefined;
    start = 1;
    end--;
  }
  let v6Only = false;
  if (end - start > 5 && hasIpv6Tag(text, start)) {
    start += 5;
    v6Only = true;
  }
  if (!v6Only && text.indexOf(':', start) < 0) {
    const bytes = new Uint8Array(4);
    return parseIpv4Into(text, start, end, bytes, 0) ? { family: 4, bytes } : undefined;
  }
  const bytes = parseIpv6(text, start, end);
  if (bytes === undefined) return undefined;
  if (isV4Mapped(bytes)) return { family: 4, bytes: bytes.slice(12) };
  return { family: 6, bytes };
}

/** RFC 5952 text: lowercase hex, no leading zeros, longest zero run (>= 2 groups, first on a tie) as "::". */
export function formatIp(addr: IpAddress): string {
  const b = addr.bytes;
  if (addr.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never compressed
  let runStart = -1;
  for (let g = 0; g <= 8; g++) {
    const zero = g < 8 && b[g * 2] === 0 && b[g * 2 + 1] === 0;
    if (zero) {
      if (runStart < 0) runStart = g;
    } else if (runStart >= 0) {
      if (g - runStart > bestLen) {
        bestStart = runStart;
        bestLen = g - runStart;
      }
      runStart = -1;
    }
  }
  let out = '';
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      out += '::';
      g += bestLen - 1;
      continue;
    }
    if (out.length > 0 && !out.endsWith(':')) out += ':';
    out += ((((b[g * 2] ?? 0) << 8) | (b[g * 2 + 1] ?? 0))).toString(16);
  }
  return out;
}

/** Canonical text of an address given as text, or undefined when it is not an address. */
export function canonicalIp(text: string): string | undefined {
  return parseCanonicalIp(text)?.text;
}

/**
 * The parsed address and its canonical text (formatIp). A plain dotted quad is
 * its own canonical text: parseIp takes the IPv4 path only for text without
 * ":" and accepts only four decimal octets without leading zeros, so the text
 * given is reused instead of formatted again (this runs once per request).
 */
export function parseCanonicalIp(text: string): { readonly ip: IpAddress; readonly text: string } | undefined {
  const ip = parseIp(text);
  if (ip === undefined) return undefined;
  const plainQuad = ip.family === 4 && text.charCodeAt(0) !== 0x5b /* [ */ && text.indexOf(':') < 0;
  return { ip, text: plainQuad ? text : formatIp(ip) };
}

/** networkKey for IPv4 and a prefix on an octet boundary (/8, /16, /24 are what rules use): no intermediate bytes. */
function ipv4NetworkOnOctets(b: Uint8Array, prefixLen: number): string {
  const octet = (k: number): number => (k * 8 < prefixLen ? (b[k] ?? 0) : 0);
  return `${octet(0)}.${octet(1)}.${octet(2)}.${octet(3)}/${prefixLen}`;
}

function maskedBytes(bytes: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  const full = prefixLen >> 3;
  for (let k = 0; k < full; k++) out[k] = bytes[k] ?? 0;
  const rest = prefixLen & 7;
  if (rest > 0 && full < bytes.length) out[full] = (bytes[full] ?? 0) & (0xff << (8 - rest));
  return out;
}

function maxPrefix(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

/**
 * Canonical text of the network holding `addr`: `192.0.2.0/24`, `2001:db8:1:2::/64`.
 * Undefined when the address is invalid or the prefix length is out of range
 * for its family.
 */
export function networkKey(addr: IpAddress | string, prefixLen: number): string | undefined {
  const a = typeof addr === 'string' ? parseIp(addr) : addr;
  if (a === undefined) return undefined;
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > maxPrefix(a.family)) return undefined;
  if (a.family === 4 && (prefixLen & 7) === 0) return ipv4NetworkOnOctets(a.bytes, prefixLen);
  return `${formatIp({ family: a.family, bytes: maskedBytes(a.bytes, prefixLen) })}/${prefixLen}`;
}

/**
 * Parse `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host route).
 * Host bits are zeroed; use `cidrHasHostBits` to refuse them in config.
 */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (addr === undefined) return undefined;
  let prefixLen = maxPrefix(addr.family);
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return undefined;
    prefixLen = Number(lenText);
    // `::ffff:192.0.2.0/120` became IPv4: carry the prefix over.
    if (addr.family === 4 && text.indexOf(':') >= 0) {
      if (prefixLen < 96) return undefined;
      prefixLen -= 96;
    }
    if (prefixLen > maxPrefix(addr.family)) return undefined;
  }
  return { family: addr.family, bytes: maskedBytes(addr.bytes, prefixLen), prefixLen };
}

/** True when `text` is a CIDR whose address part has bits set beyond the prefix (`192.0.2.1/24`). */
export function cidrHasHostBits(text: string): boolean {
  const c = parseCidr(text);
  if (c === undefined) return false;
  const slash = text.indexOf('/');
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (addr === undefined) return false;
  for (let k = 0; k < c.bytes.length; k++) if (c.bytes[k] !== addr.bytes[k]) return true;
  return false;
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, bytes: c.bytes })}/${c.prefixLen}`;
}

export function cidrContains(cidr: Cidr, addr: IpAddress): boolean {
  if (cidr.family !== addr.family) return false;
  const full = cidr.prefixLen >> 3;
  for (let k = 0; k < full; k++) if (cidr.bytes[k] !== addr.bytes[k]) return false;
  const rest = cidr.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((addr.bytes[full] ?? 0) & mask) === (cidr.bytes[full] ?? 0);
}

/** A compiled CIDR list: true when the address is inside any of its networks. */
export type CidrMatcher = (addr: IpAddress | undefined) => boolean;

/*
 * Compilation: every CIDR becomes an inclusive range [first, last]; ranges are
 * sorted and merged, then a lookup is one binary search. IPv4 ranges are
 * uint32 numbers; IPv6 ranges are four uint32 words each, compared word by
 * word, so no BigInt on the hot path.
 */

function word(b: Uint8Array, k: number): number {
  return (((b[k] ?? 0) << 24) | ((b[k + 1] ?? 0) << 16) | ((b[k + 2] ?? 0) << 8) | (b[k + 3] ?? 0)) >>> 0;
}

function rangeOf(c: Cidr): { first: number[]; last: number[] } {
  const words = c.bytes.length / 4;
  const first: number[] = [];
  const last: number[] = [];
  for (let w = 0; w < words; w++) {
    const v = word(c.bytes, w * 4);
    const bitsHere = Math.min(32, Math.max(0, c.prefixLen - w * 32));
    const hostMask = bitsHere === 32 ? 0 : bitsHere === 0 ? 0xffffffff : (0xffffffff >>> bitsHere) >>> 0;
    first.push(v);
    last.push((v | hostMask) >>> 0);
  }
  return { first, last };
}

function compareWords(a: readonly number[] | Uint32Array, aOff: number, b: readonly number[] | Uint32Array, bOff: number, n: number): number {
  for (let k = 0; k < n; k++) {
    const x = a[aOff + k] ?? 0;
    const y = b[bOff + k] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** True when the word vector `a` is `b + 1` (ranges touching each other merge). */
function isSuccessor(a: readonly number[], b: readonly number[]): boolean {
  const n = a.length;
  const next = b.slice();
  for (let k = n - 1; k >= 0; k--) {
    const v = ((next[k] ?? 0) + 1) >>> 0;
    next[k] = v;
    if (v !== 0) break;
    if (k === 0) return false; // b was all ones: nothing follows it
  }
  return compareWords(a, 0, next, 0, n) === 0;
}

interface RangeTable {
  /** firsts[i*n .. i*n+n) and lasts[...] hold range i; n = 1 (IPv4) or 4 (IPv6). */
  readonly firsts: Uint32Array;
  readonly lasts: Uint32Array;
  readonly count: number;
}

function buildTable(cidrs: readonly Cidr[], n: number): RangeTable {
  const ranges = cidrs.map(rangeOf).sort((x, y) => compareWords(x.first, 0, y.first, 0, n));
  const merged: { first: number[]; last: number[] }[] = [];
  for (const r of ranges) {
    const prev = merged[merged.length - 1];
    if (prev !== undefined && (compareWords(r.first, 0, prev.last, 0, n) <= 0 || isSuccessor(r.first, prev.last))) {
      if (compareWords(r.last, 0, prev.last, 0, n) > 0) prev.last = r.last;
    } else {
      merged.push({ first: r.first.slice(), last: r.last.slice() });
    }
  }
  const firsts = new Uint32Array(merged.length * n);
  const lasts = new Uint32Array(merged.length * n);
  merged.forEach((r, i) => {
    firsts.set(r.first, i * n);
    lasts.set(r.last, i * n);
  });
  return { firsts, lasts, count: merged.length };
}

function lookup(table: RangeTable, key: Uint32Array, n: number): boolean {
  // Find the last range whose first <= key, then check key <= its last.
  let lo = 0;
  let hi = table.count - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (compareWords(table.firsts, mid * n, key, 0, n) <= 0) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found >= 0 && compareWords(key, 0, table.lasts, found * n, n) <= 0;
}

/** Compile CIDRs (objects or text; invalid text is skipped—validate config first) into a matcher. */
export function compileCidrList(list: readonly (Cidr | string)[]): CidrMatcher {
  const v4: Cidr[] = [];
  const v6: Cidr[] = [];
  for (const item of list) {
    const c = typeof item === 'string' ? parseCidr(item) : item;
    if (c === undefined) continue;
    (c.family === 4 ? v4 : v6).push(c);
  }
  const t4 = buildTable(v4, 1);
  const t6 = buildTable(v6, 4);
  // Scratch key reused across calls: the matcher is synchronous and never re-entered.
  const key6 = new Uint32Array(4);
  const key4 = new Uint32Array(1);
  return (addr) => {
    if (addr === undefined) return false;
    if (addr.family === 4) {
      if (t4.count === 0) return false;
      key4[0] = word(addr.bytes, 0);
      return lookup(t4, key4, 1);
    }
    if (t6.count === 0) return false;
    for (let w = 0; w < 4; w++) key6[w] = word(addr.bytes, w * 4);
    return lookup(t6, key6, 4);
  };
}
