/**
 * shared-list - a small keyed list of records that every MX host sharing a
 * store sees (the postmaster's block list today; held-mail and containment
 * records next), each record with an optional expiry.
 *
 * Reading never waits: `records()` is the local copy, replaced (never
 * mutated) on every change, so a decision sees the list before or after a
 * change, never half of one, and a consumer can cache what it derives from it
 * by identity. Writing goes to the shared store when it can and is kept here
 * (`pending`) when it cannot, to be written when the store is back.
 *
 * Two implementations: `createMemorySharedList` here (one host, nothing
 * shared: backend memory) and `createRedisSharedList` in redis-shared-list.ts.
 * The pure functions below are the semantics both share: a change carries the
 * time it was made (`at`) and a newer change of a record wins over an older
 * one, whichever host made it and whenever it reached the store.
 */

/** One record of a shared list. */
export interface SharedRecord<T> {
  /** The record's key within its list (for blocks: the canonical CIDR). */
  readonly id: string;
  readonly value: T;
  /** Epoch ms after which the record no longer holds; undefined: until removed. */
  readonly until: number | undefined;
  /** Epoch ms of the change that wrote it (newer changes win). */
  readonly at: number;
}

/** A change made on this host: put a record, or remove one (by id). */
export type SharedChange<T> =
  | { readonly kind: 'put'; readonly record: SharedRecord<T> }
  | { readonly kind: 'remove'; readonly id: string; readonly at: number };

/** Where a change went: into the shared store (or the only store there is), or kept here until the store is back. */
export type SharedWrite = 'stored' | 'pending';

/** How a list's values are written to the shared store. */
export interface SharedCodec<T> {
  encode(value: T): string;
  /** undefined for text this version cannot read (skipped, logged). */
  decode(text: string): T | undefined;
}

export interface SharedList<T> {
  readonly name: string;
  /** The records as known here now (expired ones may linger until the next sync): no I/O. */
  records(): readonly SharedRecord<T>[];
  /** Put (or replace) a record; resolves once written, or once kept pending because the store failed. */
  put(id: string, value: T, until: number | undefined): Promise<SharedWrite>;
  /** Remove a record; `removed`: whether it was in the list. */
  remove(id: string): Promise<{ readonly removed: boolean; readonly write: SharedWrite }>;
  /** Changes made here not yet in the shared store. */
  pending(): number;
  /** Write pending changes and re-read the shared store now; true when both succeeded. */
  sync(): Promise<boolean>;
  /** Stop background work. */
  close(): void;
}

export interface SharedListOptions {
  /** The clock (epoch ms): change times and expiry. */
  readonly now: () => number;
  /** Called after every change of records(), with the new records. */
  readonly onChange?: (records: readonly SharedRecord<unknown>[]) => void;
}

/** Most changes kept while the shared store is unreachable; beyond that a change is refused. */
export const MAX_PENDING_CHANGES = 10_000;

/** liveRecords - the records still in force at `now` (the same array when none expired). */
export function liveRecords<T>(records: readonly SharedRecord<T>[], now: number): readonly SharedRecord<T>[] {
  return records.every((r) => r.until === undefined || r.until > now) ? records : records.filter((r) => r.until === undefined || r.until > now);
}

/** applyChange - the records after `change`; a change older than the record it would replace or remove is ignored. */
export function applyChange<T>(records: readonly SharedRecord<T>[], change: SharedChange<T>): readonly SharedRecord<T>[] {
  const id = change.kind === 'put' ? change.record.id : change.id;
  const at = change.kind === 'put' ? change.record.at : change.at;
  const i = records.findIndex((r) => r.id === id);
  const old = i < 0 ? undefined : records[i];
  if (old !== undefined && old.at > at) return records;
  if (change.kind === 'remove') return i < 0 ? records : [...records.slice(0, i), ...records.slice(i + 1)];
  return i < 0 ? [...records, change.record] : [...records.slice(0, i), change.record, ...records.slice(i + 1)];
}

/** applyChanges - `applyChange` for each change in order. */
export function applyChanges<T>(records: readonly SharedRecord<T>[], changes: readonly SharedChange<T>[]): readonly SharedRecord<T>[] {
  let out = records;
  for (const c of changes) out = applyChange(out, c);
  return out;
}

/** createMemorySharedList - a list on this host only (counters.backend memory): every change is stored at once, lost at exit. */
export function createMemorySharedList<T>(name: string, options: SharedListOptions): SharedList<T> {
  let records: readonly SharedRecord<T>[] = [];
  const change = (c: SharedChange<T>): void => {
    const next = liveRecords(applyChange(records, c), options.now());
    if (next === records) return;
    records = next;
    options.onChange?.(records);
  };
  return {
    name,
    records: () => records,
    put(id, value, until) {
      change({ kind: 'put', record: { id, value, until, at: Math.floor(options.now()) } });
      return Promise.resolve('stored');
    },
    remove(id) {
      const removed = liveRecords(records, options.now()).some((r) => r.id === id);
      change({ kind: 'remove', id, at: Math.floor(options.now()) });
      return Promise.resolve({ removed, write: 'stored' });
    },
    pending: () => 0,
    sync: () => Promise.resolve(true),
    close() {},
  };
}
