/**
 * block-list - addresses and networks the postmaster blocked by hand
 * (`levee block`), each until a time or for good. Pure data and functions:
 * the daemon holds one list and swaps it on every change, so a decision
 * sees the list before or after a change, never half of one.
 *
 * Expired entries are ignored at lookup and dropped at the next change.
 */

import { parseCidr, cidrContains, parseIp, formatCidr } from './ip.js';

export interface BlockEntry {
  /** Canonical CIDR, e.g. "192.0.2.7/32" or "2001:db8::/48". */
  readonly network: string;
  /** Epoch ms after which the entry no longer holds; undefined: until unblocked. */
  readonly until: number | undefined;
  readonly reason: string;
  readonly since: number;
}

export type BlockList = readonly BlockEntry[];

/** normaliseNetwork - the canonical CIDR of an address or network, or undefined if it is neither. */
export function normaliseNetwork(text: string): string | undefined {
  const trimmed = text.trim();
  const cidr = parseCidr(trimmed.includes('/') ? trimmed : `${trimmed}/${trimmed.includes(':') ? 128 : 32}`);
  return cidr === undefined ? undefined : formatCidr(cidr);
}

/** blockAdd - the list with `network` blocked (replacing an entry for the same network). */
export function blockAdd(list: BlockList, entry: BlockEntry, now: number): BlockList {
  return [...liveBlocks(list, now).filter((e) => e.network !== entry.network), entry];
}

/** blockRemove - the list without `network`; also reports whether it was there. */
export function blockRemove(list: BlockList, network: string, now: number): { list: BlockList; removed: boolean } {
  const kept = liveBlocks(list, now);
  const next = kept.filter((e) => e.network !== network);
  return { list: next, removed: next.length !== kept.length };
}

/** liveBlocks - the entries still in force at `now`. */
export function liveBlocks(list: BlockList, now: number): BlockList {
  return list.every((e) => e.until === undefined || e.until > now) ? list : list.filter((e) => e.until === undefined || e.until > now);
}

/** blockedBy - the entry that blocks `address` at `now`, if any. */
export function blockedBy(list: BlockList, address: string | undefined, now: number): BlockEntry | undefined {
  if (list.length === 0 || address === undefined) return undefined;
  const ip = parseIp(address);
  if (ip === undefined) return undefined;
  for (const e of list) {
    if (e.until !== undefined && e.until <= now) continue;
    const cidr = parseCidr(e.network);
    if (cidr !== undefined && cidrContains(cidr, ip)) return e;
  }
  return undefined;
}
