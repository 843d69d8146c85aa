/**
 * block-list - addresses and networks the postmaster blocked by hand
 * (`levee block`), each until a time or for good. Pure data and functions:
 * the daemon keeps the list (in a shared list: in memory, or in Redis shared
 * by every MX host) and swaps in a new one on every change, so a decision
 * sees the list before or after a change, never half of one.
 *
 * A list is compiled once per change (`compileBlockList`): a client that is
 * not blocked then costs one binary search over merged ranges, however long
 * the list. Expired entries are ignored at lookup.
 */

import { parseCidr, cidrContains, compileCidrList, parseIp, formatCidr, type Cidr, type IpAddress } from './ip.js';

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

/** liveBlocks - the entries still in force at `now`. */
export function liveBlocks(list: BlockList, now: number): BlockList {
  return list.every((e) => e.until === undefined || e.until > now) ? list : list.filter((e) => e.until === undefined || e.until > now);
}

/** The entry blocking an address at `now`, if any. */
export type BlockLookup = (ip: IpAddress | undefined, now: number) => BlockEntry | undefined;

/** compileBlockList - a lookup for one version of the list (entries whose network does not parse are skipped). */
export function compileBlockList(list: BlockList): BlockLookup {
  if (list.length === 0) return () => undefined;
  const parsed: { entry: BlockEntry; cidr: Cidr }[] = [];
  for (const entry of list) {
    const cidr = parseCidr(entry.network);
    if (cidr !== undefined) parsed.push({ entry, cidr });
  }
  const any = compileCidrList(parsed.map((p) => p.cidr));
  return (ip, now) => {
    if (ip === undefined || !any(ip)) return undefined;
    for (const p of parsed) if ((p.entry.until === undefined || p.entry.until > now) && cidrContains(p.cidr, ip)) return p.entry;
    return undefined;
  };
}

/** blockedBy - the entry that blocks `address` at `now`, if any (compiles the list: for one-off checks). */
export function blockedBy(list: BlockList, address: string | undefined, now: number): BlockEntry | undefined {
  if (list.length === 0 || address === undefined) return undefined;
  return compileBlockList(list)(parseIp(address), now);
}
