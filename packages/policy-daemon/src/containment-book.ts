/**
 * containment-book - the containment state of each counter key of a limit
 * with `contain` (warned since, held until), read before deciding and written
 * with the changes decide() reports. See @levee/rules containment.ts for the
 * state machine.
 *
 * The states live in a shared list (shared-list.ts): in memory with counters
 * backend memory, in Redis with backend redis, so a customer held on one MX
 * host is held on all of them and a restart keeps the holds. Reading never
 * waits (the list's local copy, indexed by key once per change). A state
 * lives in the list only as long as it can matter (a hold until it ends, a
 * warning one window length past its last trip).
 *
 * A warning's last-trip time is written again only when it moved by a tenth
 * of the window: a worm trips its limit on every message, and each write is a
 * Redis round trip for every host.
 * LIMITATIONS: two hosts that see the same customer trip at the same moment
 * may both start its warning or hold (and both notify); the later write wins.
 */

import { containStateTtlMs, liveContainState, type ContainmentChange, type ContainmentReader, type ContainPolicy, type ContainState } from '@levee/rules';
import type { Logger } from './logger.js';
import type { SharedCodec, SharedList, SharedRecord } from './shared-list.js';

export interface ContainedKey {
  /** `<rule>|<rendered key>`. */
  readonly key: string;
  readonly rule: string;
  readonly state: ContainState;
}

export interface ContainmentBook extends ContainmentReader {
  read(keys: readonly string[], now: number): readonly (ContainState | undefined)[];
  write(changes: readonly ContainmentChange[], now: number): void;
  list(now: number): ContainedKey[];
  /** End a key's warning or hold now (the postmaster released the customer); false when it had none. */
  end(key: string): Promise<boolean>;
}

/** The shared list's name (Redis keys `<prefix>{list:contained}`...). */
export const CONTAINED_LIST = 'contained';

export interface ContainValue {
  readonly rule: string;
  readonly state: ContainState;
  readonly policy: ContainPolicy;
}

const finite = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n);

function decodeState(o: Record<string, unknown>): ContainState | undefined {
  if (o['phase'] === 'warned' && finite(o['since']) && finite(o['lastTrip'])) return { phase: 'warned', since: o['since'], lastTrip: o['lastTrip'] };
  if (o['phase'] === 'held' && finite(o['since']) && finite(o['until'])) return { phase: 'held', since: o['since'], until: o['until'] };
  return undefined;
}

export const CONTAIN_CODEC: SharedCodec<ContainValue> = {
  encode: (v) => JSON.stringify(v),
  decode(text) {
    try {
      const o = JSON.parse(text) as { rule?: unknown; state?: unknown; policy?: Record<string, unknown> } | null;
      if (o === null || typeof o.rule !== 'string' || typeof o.state !== 'object' || o.state === null || typeof o.policy !== 'object' || o.policy === null) return undefined;
      const state = decodeState(o.state as Record<string, unknown>);
      const { graceMs, holdMs, windowMs } = o.policy;
      if (state === undefined || !finite(graceMs) || !finite(holdMs) || !finite(windowMs)) return undefined;
      return { rule: o.rule, state, policy: { graceMs, holdMs, windowMs } };
    } catch {
      return undefined;
    }
  },
};

/** Whether writing `next` over `stored` changes anything that matters (see the header). */
function worthWriting(stored: ContainState | undefined, next: ContainState, policy: ContainPolicy): boolean {
  if (stored === undefined || stored.phase !== next.phase || stored.since !== next.since) return true;
  if (stored.phase === 'warned' && next.phase === 'warned') return next.lastTrip - stored.lastTrip >= policy.windowMs / 10;
  return false;
}

export function createContainmentBook(list: SharedList<ContainValue>, log: Logger): ContainmentBook {
  let indexedFrom: readonly SharedRecord<ContainValue>[] | undefined;
  let index = new Map<string, SharedRecord<ContainValue>>();
  /** The list's local copy by key, rebuilt when the list changed. */
  const byKey = (): Map<string, SharedRecord<ContainValue>> => {
    const records = list.records();
    if (records !== indexedFrom) {
      index = new Map(records.map((r) => [r.id, r]));
      indexedFrom = records;
    }
    return index;
  };
  const live = (r: SharedRecord<ContainValue> | undefined, now: number): ContainState | undefined =>
    r === undefined || (r.until !== undefined && r.until <= now) ? undefined : liveContainState(r.value.state, now, r.value.policy);
  const failed = (error: unknown): void => log.error({ list: CONTAINED_LIST, err: (error as Error).message }, 'containment state not written');

  return {
    read(keys, now) {
      if (list.records().length === 0) return keys.map(() => undefined);
      const map = byKey();
      return keys.map((k) => live(map.get(k), now));
    },
    write(changes, now) {
      const map = byKey();
      for (const c of changes) {
        if (c.next === undefined) {
          if (map.has(c.key)) list.remove(c.key).catch(failed);
          continue;
        }
        if (!worthWriting(live(map.get(c.key), now), c.next, c.policy)) continue;
        list.put(c.key, { rule: c.rule, state: c.next, policy: c.policy }, now + containStateTtlMs(c.next, now, c.policy)).catch(failed);
      }
    },
    list(now) {
      const out: ContainedKey[] = [];
      for (const r of list.records()) {
        const state = live(r, now);
        if (state !== undefined) out.push({ key: r.id, rule: r.value.rule, state });
      }
      return out;
    },
    async end(key) {
      const { removed } = await list.remove(key);
      return removed;
    },
  };
}
