/**
 * containment-book - the containment state of each counter key of a limit
 * with `contain` (warned since, held until), read before deciding and written
 * with the changes decide() reports. See @levee/rules containment.ts for the
 * state machine.
 *
 * In memory, per daemon, bounded: a key's state is dropped once it can no
 * longer matter (a hold that ended, a warning one grace period after its last
 * trip) and at most MAX_ENTRIES are kept (the oldest first out).
 * LIMITATIONS: lost at a restart (a held customer's hold ends early; the mail
 * already held stays in the MTA); with several MX hosts each host contains on
 * its own counts' verdict (the counters themselves may be shared in Redis).
 */

import { containStateTtlMs, liveContainState, type ContainmentChange, type ContainmentReader, type ContainPolicy, type ContainState } from '@levee/rules';

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
  end(key: string): boolean;
  readonly size: number;
}

const MAX_ENTRIES = 100_000;

interface Entry {
  readonly rule: string;
  readonly state: ContainState;
  readonly policy: ContainPolicy;
  readonly expires: number;
}

export function createContainmentBook(): ContainmentBook {
  const entries = new Map<string, Entry>();
  const live = (key: string, now: number): Entry | undefined => {
    const e = entries.get(key);
    if (e === undefined) return undefined;
    if (e.expires <= now || liveContainState(e.state, now, e.policy) === undefined) {
      entries.delete(key);
      return undefined;
    }
    return e;
  };
  return {
    read(keys, now) {
      if (entries.size === 0) return keys.map(() => undefined);
      return keys.map((k) => live(k, now)?.state);
    },
    write(changes, now) {
      for (const c of changes) {
        entries.delete(c.key);
        if (c.next === undefined) continue;
        entries.set(c.key, { rule: c.rule, state: c.next, policy: c.policy, expires: now + containStateTtlMs(c.next, now, c.policy) });
        if (entries.size > MAX_ENTRIES) {
          const oldest = entries.keys().next().value;
          if (oldest !== undefined) entries.delete(oldest);
        }
      }
    },
    list(now) {
      const out: ContainedKey[] = [];
      for (const key of [...entries.keys()]) {
        const e = live(key, now);
        if (e !== undefined) out.push({ key, rule: e.rule, state: e.state });
      }
      return out;
    },
    end: (key) => entries.delete(key),
    get size() {
      return entries.size;
    },
  };
}
