/**
 * held-mail - what Levee remembers of the mail it answered `quarantine` for,
 * so `levee held` can list it and `levee release` / `levee drop` can act on
 * it. The MTA holds the mail itself (Postfix: the hold queue, after
 * `action=HOLD`; sendmail: a quarantined queue file, after SMFIR_QUARANTINE);
 * Levee keeps a record per message: who sent it, why, and the MTA's queue id.
 *
 * A message is one MTA transaction: Postfix's `instance` (the same for every
 * policy request of one message) or the milter's per-message id. Postfix often
 * has no queue id yet when it asks at the first RCPT, so a later request of the
 * same transaction (another RCPT, DATA, END-OF-MESSAGE) fills it in; a later
 * refusal of the same transaction (reject, tempfail, discard) drops the
 * record, since then nothing was held.
 *
 * Records are kept `retentionMs` and at most `maxRecords` (oldest first out),
 * in a shared list (shared-list.ts): in memory with counters backend memory
 * (forgotten at a restart; the held mail is not, the MTA has it, and `mailq`
 * still lists it), in Redis with backend redis (every MX host lists every
 * host's held mail, and a restart keeps them). The transaction a record
 * waits to complete is known only to the host that saw it, which is the
 * host that sees the rest of that transaction.
 */

import { randomBytes } from 'node:crypto';
import type { Facts, Verdict } from '@levee/rules';
import type { Logger } from './logger.js';
import type { SharedCodec, SharedList } from './shared-list.js';

/** The shared list's name (Redis keys `<prefix>{list:held}`...). */
export const HELD_LIST = 'held';

export interface HeldRecord {
  /** Levee's id for `levee release ID` (8 hex digits). */
  readonly id: string;
  /** When Levee answered quarantine (epoch ms). */
  readonly at: number;
  readonly protocol: Facts['protocol'];
  /** The rule that decided, and its counter key when a limit (a contained customer) did. */
  readonly rule: string;
  readonly key: string | undefined;
  readonly reason: string;
  readonly clientAddress: string | undefined;
  readonly saslUsername: string | undefined;
  readonly sender: string | undefined;
  readonly recipients: readonly string[];
  /** The MTA's queue id, once it told us. */
  readonly queueId: string | undefined;
  readonly transaction: string | undefined;
}

export interface HeldMail {
  /** See a decision: record a hold, complete a record, or drop one the MTA did not keep. */
  note(facts: Facts, verdict: Verdict, now: number): { readonly record: HeldRecord; readonly created: boolean } | undefined;
  list(now: number): HeldRecord[];
  get(id: string, now: number): HeldRecord | undefined;
  /** Forget a record (released or dropped by the admin); false when unknown. */
  remove(id: string): Promise<boolean>;
  readonly size: number;
}

/** Recipients kept per record: enough to recognise the message, bounded. */
const MAX_RECIPIENTS = 50;

const REFUSED: ReadonlySet<Verdict['action']> = new Set(['reject', 'tempfail', 'discard']);

export function createHeldMail(options: {
  readonly list: SharedList<HeldRecord>;
  readonly retentionMs: () => number;
  readonly maxRecords: () => number;
  readonly log: Logger;
  readonly newId?: () => string;
}): HeldMail {
  const { list } = options;
  // Transactions of records this host made and may still complete: transaction -> record id.
  const byTransaction = new Map<string, string>();
  const newId = options.newId ?? (() => randomBytes(4).toString('hex'));
  const failed = (error: unknown): void => options.log.error({ list: HELD_LIST, err: (error as Error).message }, 'held-mail record not written');
  const find = (id: string): HeldRecord | undefined => list.records().find((r) => r.id === id)?.value;

  const drop = (id: string): void => {
    const r = find(id);
    if (r?.transaction !== undefined && byTransaction.get(r.transaction) === id) byTransaction.delete(r.transaction);
    list.remove(id).catch(failed);
  };

  /** The live records, oldest first; past maxRecords the oldest are dropped. */
  const current = (now: number): HeldRecord[] => {
    const oldest = now - options.retentionMs();
    const records = list
      .records()
      .map((r) => r.value)
      .filter((r) => r.at > oldest)
      // Stable: records of one moment stay in the order they were made (on this host).
      .sort((a, b) => a.at - b.at);
    const excess = records.length - options.maxRecords();
    for (const r of excess > 0 ? records.splice(0, excess) : []) drop(r.id);
    return records;
  };

  const store = (record: HeldRecord): void => {
    list.put(record.id, record, record.at + options.retentionMs()).catch(failed);
  };

  const withRecipient = (have: readonly string[], recipient: string | undefined): readonly string[] =>
    recipient === undefined || have.includes(recipient) || have.length >= MAX_RECIPIENTS ? have : [...have, recipient];

  return {
    note(facts, verdict, now) {
      if (byTransaction.size === 0 && verdict.action !== 'quarantine') return undefined;
      const transaction = facts.instance;
      const pendingId = transaction === undefined ? undefined : byTransaction.get(transaction);
      const pending = pendingId === undefined ? undefined : find(pendingId);
      if (pendingId !== undefined && pending === undefined && transaction !== undefined) byTransaction.delete(transaction);
      if (pending !== undefined) {
        if (REFUSED.has(verdict.action)) {
          drop(pending.id);
          return undefined;
        }
        const recipients = withRecipient(pending.recipients, facts.recipient);
        const queueId = pending.queueId ?? facts.queueId;
        if (recipients === pending.recipients && queueId === pending.queueId) return { record: pending, created: false };
        const updated = { ...pending, recipients, queueId };
        store(updated);
        return { record: updated, created: false };
      }
      if (verdict.action !== 'quarantine') return undefined;
      let id = newId();
      while (find(id) !== undefined) id = newId();
      const record: HeldRecord = {
        id,
        at: now,
        protocol: facts.protocol,
        rule: verdict.rule ?? 'unknown',
        key: verdict.counter?.key,
        reason: verdict.text ?? 'held by levee',
        clientAddress: facts.clientAddress,
        saslUsername: facts.saslUsername,
        sender: facts.sender,
        recipients: facts.recipients?.slice(0, MAX_RECIPIENTS) ?? (facts.recipient === undefined ? [] : [facts.recipient]),
        queueId: facts.queueId,
        transaction,
      };
      store(record);
      if (transaction !== undefined) {
        byTransaction.set(transaction, id);
        // Transactions end; the map must not grow with them: forget the oldest beyond the records kept.
        if (byTransaction.size > options.maxRecords()) {
          const first = byTransaction.keys().next().value;
          if (first !== undefined) byTransaction.delete(first);
        }
      }
      current(now);
      return { record, created: true };
    },
    list: (now) => current(now),
    get: (id, now) => current(now).find((r) => r.id === id),
    async remove(id) {
      const r = find(id);
      if (r?.transaction !== undefined && byTransaction.get(r.transaction) === id) byTransaction.delete(r.transaction);
      return (await list.remove(id)).removed;
    },
    get size() {
      return list.records().length;
    },
  };
}

/** How held records are written to the shared store; anything malformed is skipped. */
export const HELD_CODEC: SharedCodec<HeldRecord> = {
  encode: (r) => JSON.stringify(r),
  decode(text) {
    try {
      const o = JSON.parse(text) as Record<string, unknown> | null;
      if (o === null || typeof o !== 'object') return undefined;
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
      const id = str('id');
      const rule = str('rule');
      const at = o['at'];
      const protocol = o['protocol'];
      const recipients = o['recipients'];
      if (id === undefined || rule === undefined || typeof at !== 'number' || !Number.isFinite(at) || (protocol !== 'policy' && protocol !== 'milter')) return undefined;
      if (!Array.isArray(recipients) || !recipients.every((x) => typeof x === 'string')) return undefined;
      return {
        id,
        at,
        protocol,
        rule,
        key: str('key'),
        reason: str('reason') ?? 'held by levee',
        clientAddress: str('clientAddress'),
        saslUsername: str('saslUsername'),
        sender: str('sender'),
        recipients: recipients.slice(0, MAX_RECIPIENTS) as string[],
        queueId: str('queueId'),
        transaction: str('transaction'),
      };
    } catch {
      return undefined;
    }
  },
};

/** Queue ids as Postfix and sendmail write them; anything else is never put into a command. */
const QUEUE_ID_RE = /^[A-Za-z0-9]{1,64}$/;

/** The argv of a release or drop command for a record: `{queue_id}` and `{id}` replaced; undefined without a usable queue id. */
export function commandFor(template: readonly string[], record: HeldRecord): string[] | undefined {
  if (record.queueId === undefined || !QUEUE_ID_RE.test(record.queueId)) return undefined;
  const queueId = record.queueId;
  return template.map((a) => a.replaceAll('{queue_id}', queueId).replaceAll('{id}', record.id));
}
