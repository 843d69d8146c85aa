/**
 * batv - Bounce Address Tag Validation (draft-levine-smtp-batv, "prvs"):
 * outbound envelope senders are signed, `alice@example.org` becoming
 * `prvs=0123abcdef=alice@example.org`; a bounce (null sender) to one of our
 * addresses that lacks a valid signature cannot be a reply to mail we sent,
 * so it is backscatter from someone forging our addresses and is refused.
 *
 * tag-val = K DDD SSSSSS: K the key number (0-9), DDD the expiry day (days
 * since the epoch, mod 1000), SSSSSS the first three bytes, in hex, of
 * HMAC-SHA1(key, K DDD local-part). Day arithmetic mod 1000 is taken as the
 * nearest expiry within +/- 500 days of today, as the draft intends.
 *
 * LIMITATIONS: only the prvs scheme; the local part is signed as sent
 * (case kept), so an MTA that rewrites its case breaks the signature.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';

const DAY_MS = 86_400_000;
const PRVS = /^prvs=([0-9])([0-9]{3})([0-9a-f]{6})=(.+)@([^@]+)$/i;

export interface BatvKey {
  /** 0-9, carried in the tag so keys can be rotated. */
  readonly id: number;
  readonly secret: string;
}

export type BatvCheck = 'valid' | 'expired' | 'bad-signature' | 'unknown-key' | 'unsigned';

function dayNumber(now: number): number {
  return Math.floor(now / DAY_MS);
}

function hash(key: BatvKey, day3: string, local: string): string {
  return createHmac('sha1', key.secret).update(`${key.id}${day3}${local}`).digest('hex').slice(0, 6);
}

/** batvSign - the signed form of `address`, valid for `validDays` from `now`. Null sender and signed addresses are returned as they are. */
export function batvSign(address: string, key: BatvKey, now: number, validDays = 7): string {
  if (address === '' || PRVS.test(address)) return address;
  const at = address.lastIndexOf('@');
  if (at <= 0) return address;
  const local = address.slice(0, at);
  const day3 = String((dayNumber(now) + validDays) % 1000).padStart(3, '0');
  return `prvs=${key.id}${day3}${hash(key, day3, local)}=${address}`;
}

/** batvStrip - the address without its BATV tag (for lookups and keys). */
export function batvStrip(address: string): string {
  const m = PRVS.exec(address);
  return m === null ? address : `${m[4] ?? ''}@${m[5] ?? ''}`;
}

/** batvVerify - whether `address` carries a valid, unexpired signature under one of `keys`. */
export function batvVerify(address: string, keys: readonly BatvKey[], now: number): BatvCheck {
  const m = PRVS.exec(address);
  if (m === null) return 'unsigned';
  const [, id, day3 = '', sig = '', local = ''] = m;
  const key = keys.find((k) => String(k.id) === id);
  if (key === undefined) return 'unknown-key';
  const expected = Buffer.from(hash(key, day3, local), 'hex');
  const given = Buffer.from(sig.toLowerCase(), 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad-signature';
  // The expiry day is known mod 1000: take the candidate nearest to today.
  const today = dayNumber(now);
  let expiry = today - (today % 1000) + Number(day3);
  if (expiry - today > 500) expiry -= 1000;
  else if (today - expiry > 500) expiry += 1000;
  return today > expiry ? 'expired' : 'valid';
}
