/**
 * block-records - the postmaster's block list (`levee block`) as a shared
 * list: one record per blocked network (id: the canonical CIDR), its value
 * the reason and when it was made, its expiry the block's `--for`.
 */

import type { BlockEntry, BlockList } from '@levee/rules';
import type { SharedCodec, SharedRecord } from './shared-list.js';

/** The shared list's name (Redis keys `<prefix>{list:blocks}`...). */
export const BLOCKS_LIST = 'blocks';

export interface BlockValue {
  readonly reason: string;
  readonly since: number;
}

export const BLOCK_CODEC: SharedCodec<BlockValue> = {
  encode: (v) => JSON.stringify({ reason: v.reason, since: v.since }),
  decode(text) {
    try {
      const o = JSON.parse(text) as { reason?: unknown; since?: unknown } | null;
      if (o === null || typeof o.reason !== 'string' || typeof o.since !== 'number' || !Number.isFinite(o.since)) return undefined;
      return { reason: o.reason, since: o.since };
    } catch {
      return undefined;
    }
  },
};

/** blockListOf - the block list the rules package reads, from the shared records (oldest block first, then by network). */
export function blockListOf(records: readonly SharedRecord<BlockValue>[]): BlockList {
  return records
    .map((r): BlockEntry => ({ network: r.id, until: r.until, reason: r.value.reason, since: r.value.since }))
    .sort((a, b) => a.since - b.since || (a.network < b.network ? -1 : a.network > b.network ? 1 : 0));
}
