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
 * Records are kept `retentionMs` and at most `maxRecords` (oldest first out).
 * They are forgotten at a restart; the held mail is not (the MTA has it), and
 * `postqueue -j` / `mailq` still list it. LIMITATIONS: per daemon, in memory.
 */

import { randomBytes } from 'node:crypto';
import type { Facts, Verdict } from '@levee/rules';

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
  remove(id: string): boolean;
  readonly size: number;
}

/** Recipients kept per record: enough to recognise the message, bounded. */
const MAX_RECIPIENTS = 50;

const REFUSED: ReadonlySet<Verdict['action']> = new Set(['reject', 'tempfail', 'discard']);

export function createHeldMail(options: { readonly retentionMs: () => number; readonly maxRecords: () => number; readonly newId?: () => string }): HeldMail {
  // Insertion order is age order: the oldest record is the first.
  const records = new Map<string, HeldRecord>();
  const byTransaction = new Map<string, string>();
  const newId = options.newId ?? (() => randomBytes(4).toString('hex'));

  const drop = (id: string): boolean => {
    const r = records.get(id);
    if (r === undefined) return false;
    records.delete(id);
    if (r.transaction !== undefined && byTransaction.get(r.transaction) === id) byTransaction.delete(r.transaction);
    return true;
  };

  const expire = (now: number): void => {
    const oldest = now - options.retentionMs();
    for (const r of records.values()) {
      if (r.at > oldest && records.size <= options.maxRecords()) break;
      drop(r.id);
    }
  };

  const withRecipient = (list: readonly string[], recipient: string | undefined): readonly string[] =>
    recipient === undefined || list.includes(recipient) || list.length >= MAX_RECIPIENTS ? list : [...list, recipient];

  return {
    note(facts, verdict, now) {
      if (byTransaction.size === 0 && verdict.action !== 'quarantine') return undefined;
      const transaction = facts.instance;
      const pendingId = transaction === undefined ? undefined : byTransaction.get(transaction);
      const pending = pendingId === undefined ? undefined : records.get(pendingId);
      if (pending !== undefined) {
        if (REFUSED.has(verdict.action)) {
          drop(pending.id);
          return undefined;
        }
        const recipients = withRecipient(pending.recipients, facts.recipient);
        const queueId = pending.queueId ?? facts.queueId;
        if (recipients === pending.recipients && queueId === pending.queueId) return { record: pending, created: false };
        const updated = { ...pending, recipients, queueId };
        records.set(pending.id, updated);
        return { record: updated, created: false };
      }
      if (verdict.action !== 'quarantine') return undefined;
      expire(now);
      let id = newId();
      while (records.has(id)) id = newId();
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
      records.set(id, record);
      if (transaction !== undefined) byTransaction.set(transaction, id);
      expire(now);
      return { record, created: true };
    },
    list(now) {
      expire(now);
      return [...records.values()];
    },
    get(id, now) {
      expire(now);
      return records.get(id);
    },
    remove: drop,
    get size() {
      return records.size;
    },
  };
}

/** Queue ids as Postfix and sendmail write them; anything else is never put into a command. */
const QUEUE_ID_RE = /^[A-Za-z0-9]{1,64}$/;

/** The argv of a release or drop command for a record: `{queue_id}` and `{id}` replaced; undefined without a usable queue id. */
export function commandFor(template: readonly string[], record: HeldRecord): string[] | undefined {
  if (record.queueId === undefined || !QUEUE_ID_RE.test(record.queueId)) return undefined;
  const queueId = record.queueId;
  return template.map((a) => a.replaceAll('{queue_id}', queueId).replaceAll('{id}', record.id));
}
