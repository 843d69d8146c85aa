/**
 * containment-service - the daemon's side of "contain the infected customer"
 * and of held mail: it hands decide() the states of contained keys, writes
 * the changes a decision reports, logs and counts each warning and hold,
 * notifies the postmaster, and records every message answered quarantine
 * (held-mail) for `levee held`, `levee release` and `levee drop`.
 *
 * Everything here runs after the decision is made and never fails it. The
 * states and records are shared lists (in Redis with counters backend redis):
 * open them with the counter backend and hand them in.
 */

import { Counter, Gauge, type Registry } from 'prom-client';
import type { ContainmentReader, Decision, Facts, HeldSettings, NotifySettings } from '@levee/rules';
import { createContainmentBook, type ContainedKey, type ContainValue } from './containment-book.js';
import { createHeldMail, type HeldRecord } from './held-mail.js';
import type { SharedList } from './shared-list.js';
import type { Logger } from './logger.js';
import { createNotifier, type Notice } from './notifier.js';

export interface ContainmentService {
  readonly reader: ContainmentReader;
  /** See a decision (after it is answered). */
  note(facts: Facts, decision: Decision): void;
  held(): HeldRecord[];
  heldRecord(id: string): HeldRecord | undefined;
  /** Forget a held record after the admin released or dropped the message. */
  forget(id: string, how: 'released' | 'dropped'): Promise<HeldRecord | undefined>;
  contained(): ContainedKey[];
  /** End a customer's warning or hold now; false when it had none. */
  endContainment(key: string): Promise<boolean>;
  /** Resolves when no notice is under way. */
  idle(): Promise<void>;
}

export function createContainmentService(options: {
  readonly containedList: SharedList<ContainValue>;
  readonly heldList: SharedList<HeldRecord>;
  readonly held: () => HeldSettings;
  readonly notify: () => NotifySettings;
  readonly log: Logger;
  readonly now: () => number;
  readonly registry: Registry;
}): ContainmentService {
  const { log, now } = options;
  const registers = [options.registry];
  const book = createContainmentBook(options.containedList, log);
  const heldMail = createHeldMail({
    list: options.heldList,
    retentionMs: () => options.held().retentionMs,
    maxRecords: () => options.held().maxRecords,
    log,
  });
  const events = new Counter({
    name: 'levee_containment_events_total',
    help: 'Customers (limit keys with contain) warned or held, by rule and event.',
    labelNames: ['rule', 'event'] as const,
    registers,
  });
  const heldTotal = new Counter({
    name: 'levee_held_messages_total',
    help: 'Messages answered quarantine (held in the MTA), by rule.',
    labelNames: ['rule'] as const,
    registers,
  });
  new Gauge({
    name: 'levee_contained_keys',
    help: 'Limit keys now warned or held (contain).',
    labelNames: ['phase'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of book.list(now())) this.labels(c.state.phase).inc();
    },
  });
  new Gauge({
    name: 'levee_held_records',
    help: 'Held messages Levee keeps a record of (levee held).',
    registers,
    collect() {
      this.set(heldMail.list(now()).length);
    },
  });
  const notifications = new Counter({
    name: 'levee_notifications_total',
    help: 'Notices to the postmaster, by channel (command, mail) and outcome (sent, failed, suppressed).',
    labelNames: ['channel', 'outcome'] as const,
    registers,
  });
  const notifier = createNotifier({ settings: options.notify, log, now, counted: (channel, outcome) => notifications.labels(channel, outcome).inc() });

  const noteContainment = (decision: Decision, at: number): void => {
    const changes = decision.containment;
    if (changes === undefined) return;
    book.write(changes, at);
    for (const c of changes) {
      if (c.event === undefined || c.next === undefined) continue;
      const counter = decision.trail.find((t) => t.rule === c.rule)?.counter;
      const subject = c.key.slice(c.key.indexOf('|') + 1);
      const until = c.next.phase === 'held' ? c.next.until : c.next.since + c.policy.graceMs;
      events.labels(c.rule, c.event).inc();
      const fields = { rule: c.rule, customer: subject, count: counter?.count, limit: counter?.limit, until: new Date(until).toISOString() };
      if (c.event === 'warned') log.warn(fields, 'contain: over the limit, warning (held if it continues past the grace period)');
      else log.warn(fields, 'contain: held, its mail is quarantined until the cool-down ends');
      const notice: Notice = {
        event: c.event,
        rule: c.rule,
        subject,
        count: counter?.count ?? 0,
        limit: counter?.limit ?? 0,
        windowMs: counter?.windowMs ?? 0,
        until,
        at,
      };
      notifier.notify(notice);
    }
  };

  return {
    reader: book,
    note(facts, decision) {
      const at = now();
      noteContainment(decision, at);
      const noted = heldMail.note(facts, decision.verdict, at);
      if (noted?.created === true) heldTotal.labels(noted.record.rule).inc();
    },
    held: () => heldMail.list(now()),
    heldRecord: (id) => heldMail.get(id, now()),
    async forget(id, how) {
      const record = heldMail.get(id, now());
      if (record === undefined || !(await heldMail.remove(id))) return undefined;
      log.warn({ id, queueId: record.queueId, rule: record.rule, sender: record.sender }, `held message ${how} by the postmaster`);
      return record;
    },
    contained: () => book.list(now()),
    async endContainment(key) {
      const ended = await book.end(key);
      if (ended) log.warn({ key }, 'contain: ended by the postmaster');
      return ended;
    },
    idle: () => notifier.idle(),
  };
}
