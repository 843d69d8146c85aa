/**
 * log-redaction - `log.redact`: SASL user names, senders and recipients
 * shown as a keyed hash in decision log lines and admin output, so logs can
 * be kept and shipped without the personal values, and an admin can still
 * follow one user or address from line to line.
 *
 * A redacted value is `~` and the first 12 hex digits of
 * HMAC-SHA256(key, lowercased value): the same value gives the same token
 * under the same key, and without the key a token cannot be checked against
 * a guessed address (a plain hash could, by hashing a list of addresses).
 * Senders and recipients keep their domain (`~3f9a0c12b4de@example.org`);
 * the null sender stays empty. A counter key built from a redacted
 * placeholder (`{sasl_username}`, `{sender}`, `{recipient}`) is shown as its
 * rule name and one token for the rest: `per-user|~5b1e…`.
 *
 * The key comes from log.redact_key_file (the same key on every host and
 * after restarts: tokens correlate across them), or else is drawn at start
 * (tokens correlate within one run, reloads included).
 */

import { createHmac, randomBytes } from 'node:crypto';
import type { CounterEvidence, RedactField, Ruleset } from '@levee/rules';
import type { Evidence } from './evidence.js';

const TOKEN_HEX = 12;

export interface Redactor {
  readonly fields: ReadonlySet<RedactField>;
  /** The value as it may be shown: itself, or its token when `field` is redacted. */
  show(field: RedactField, value: string | undefined): string | undefined;
  /** A counter key (`rule|rendered`) as it may be shown. */
  showKey(key: string): string;
  /** A counter as it may be shown. */
  showCounter<T extends CounterEvidence | undefined>(counter: T): T;
}

/** The token for `value` under `key`. */
export function redactToken(key: string | Buffer, value: string): string {
  return `~${createHmac('sha256', key).update(value.toLowerCase()).digest('hex').slice(0, TOKEN_HEX)}`;
}

/** A fresh random key, for when no log.redact_key_file is configured. */
export function randomRedactKey(): Buffer {
  return randomBytes(32);
}

/** Placeholders whose value is the named field (domains are not redacted). */
const PLACEHOLDER_FIELD: Readonly<Record<string, RedactField>> = { sasl_username: 'sasl_username', sender: 'sender', recipient: 'recipient' };

/** createRedactor - hides `fields` under `key`; the ruleset says which counter keys carry them. */
export function createRedactor(fields: readonly RedactField[], key: string | Buffer, ruleset: Ruleset): Redactor {
  const redacted = new Set(fields);
  // Rules whose counter key renders a redacted value.
  const keyRules = new Set(
    ruleset.rules
      .filter((r) => r.limit?.template.parts.some((p) => p.kind === 'field' && redacted.has(PLACEHOLDER_FIELD[p.name] as RedactField)) === true)
      .map((r) => r.name),
  );
  const showKey = (k: string): string => {
    const bar = k.indexOf('|');
    if (bar < 0 || !keyRules.has(k.slice(0, bar))) return k;
    return `${k.slice(0, bar + 1)}${redactToken(key, k.slice(bar + 1))}`;
  };
  return {
    fields: redacted,
    show(field, value) {
      if (value === undefined || value === '' || !redacted.has(field)) return value;
      if (field === 'sasl_username') return redactToken(key, value);
      const at = value.lastIndexOf('@');
      return at < 0 ? redactToken(key, value) : `${redactToken(key, value)}${value.slice(at)}`;
    },
    showKey,
    showCounter(counter) {
      if (counter === undefined || keyRules.size === 0) return counter;
      return { ...counter, key: showKey(counter.key) };
    },
  };
}

/** No redaction: every value shown as it is. */
export const SHOW_ALL: Redactor = {
  fields: new Set(),
  show: (_field, value) => value,
  showKey: (k) => k,
  showCounter: (c) => c,
};

/**
 * Evidence (levee report) as it may be shown: samples' senders and
 * recipients redacted; with either redacted, the sample message's headers
 * (which carry them again in From:, To:, Received:) are left out.
 */
export function showEvidence(e: Evidence, redactor: Redactor): Evidence {
  if (!redactor.fields.has('sender') && !redactor.fields.has('recipient')) return e;
  return {
    ...e,
    samples: e.samples.map((s) => {
      const sender = redactor.show('sender', s.sender);
      const recipient = redactor.show('recipient', s.recipient);
      const { sender: _s, recipient: _r, ...rest } = s;
      return { ...rest, ...(sender === undefined ? {} : { sender }), ...(recipient === undefined ? {} : { recipient }) };
    }),
    sampleHeaders: undefined,
  };
}
