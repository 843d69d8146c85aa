/**
 * evidence - what each offending connecting IP did, for its abuse contact:
 * counts by action and rule, first and last seen, the originating IP of its
 * messages (the first Received hop), and a few sample decisions with their
 * message ids. "Offending" is any decision that was not continue or accept.
 *
 * Bounded: an LRU of at most maxAddresses records, each with at most
 * MAX_SAMPLES samples and MAX_ORIGINS origins, so a flood of random
 * addresses cannot grow it. In memory only (it restarts empty).
 */

import { LRUCache } from 'lru-cache';
import type { Facts, Verdict } from '@levee/rules';

const MAX_SAMPLES = 10;
const MAX_ORIGINS = 5;
/** Header lines kept from the first sample message, for an ARF report's third part. */
const MAX_SAMPLE_HEADER_BYTES = 4096;

export interface EvidenceSample {
  readonly at: number;
  readonly stage: string;
  readonly action: string;
  readonly rule: string | undefined;
  readonly sender?: string;
  readonly recipient?: string;
  readonly queueId?: string;
  readonly messageId?: string;
}

export interface Evidence {
  readonly address: string;
  firstSeen: number;
  lastSeen: number;
  readonly actions: Record<string, number>;
  readonly rules: Record<string, number>;
  /** The IPs in the first (bottom-most) Received header of its messages. */
  readonly origins: string[];
  readonly samples: EvidenceSample[];
  /** Headers of the first message seen (bounded), for reports. */
  sampleHeaders: string | undefined;
}

export interface EvidenceStore {
  note(facts: Facts, verdict: Verdict, now: number): void;
  get(address: string): Evidence | undefined;
  /** Offenders with the most offending decisions first. */
  top(n: number): Evidence[];
  readonly size: number;
}

/** The IP in a Received header's "from ... [1.2.3.4]" or "[IPv6:...]" part. */
export function receivedIp(received: string): string | undefined {
  const m = /\[(?:IPv6:)?([0-9a-fA-F:.]+)\]/.exec(received);
  return m?.[1]?.toLowerCase();
}

function header(facts: Facts, name: string): string | undefined {
  return facts.message?.headers.find((h) => h.name.toLowerCase() === name)?.value.trim();
}

/** createEvidenceStore - an empty store keeping at most `maxAddresses` offenders. */
export function createEvidenceStore(maxAddresses = 100_000): EvidenceStore {
  const records = new LRUCache<string, Evidence>({ max: maxAddresses });
  return {
    note(facts, verdict, now) {
      if (verdict.action === 'continue' || verdict.action === 'accept' || verdict.rule === 'fail-action') return;
      const address = facts.clientAddress;
      if (address === undefined) return;
      let e = records.get(address);
      if (e === undefined) {
        e = { address, firstSeen: now, lastSeen: now, actions: {}, rules: {}, origins: [], samples: [], sampleHeaders: undefined };
        records.set(address, e);
      }
      e.lastSeen = now;
      e.actions[verdict.action] = (e.actions[verdict.action] ?? 0) + 1;
      if (verdict.rule !== undefined) e.rules[verdict.rule] = (e.rules[verdict.rule] ?? 0) + 1;
      const received = facts.message?.headers.filter((h) => h.name.toLowerCase() === 'received');
      const origin = received === undefined || received.length === 0 ? undefined : receivedIp(received[received.length - 1]?.value ?? '');
      if (origin !== undefined && !e.origins.includes(origin) && e.origins.length < MAX_ORIGINS) e.origins.push(origin);
      if (e.samples.length < MAX_SAMPLES) {
        const messageId = header(facts, 'message-id');
        e.samples.push({
          at: now,
          stage: facts.stage,
          action: verdict.action,
          rule: verdict.rule,
          ...(facts.sender === undefined ? {} : { sender: facts.sender }),
          ...(facts.recipient === undefined ? {} : { recipient: facts.recipient }),
          ...(facts.queueId === undefined ? {} : { queueId: facts.queueId }),
          ...(messageId === undefined ? {} : { messageId }),
        });
      }
      if (e.sampleHeaders === undefined && facts.message !== undefined) {
        const text = facts.message.headers.map((h) => `${h.name}: ${h.value.replace(/\r?\n/g, '\r\n')}`).join('\r\n');
        e.sampleHeaders = text.length > MAX_SAMPLE_HEADER_BYTES ? text.slice(0, MAX_SAMPLE_HEADER_BYTES) : text;
      }
    },
    get: (address) => records.get(address),
    top(n) {
      const total = (e: Evidence): number => Object.values(e.actions).reduce((a, b) => a + b, 0);
      return [...records.values()].sort((a, b) => total(b) - total(a)).slice(0, n);
    },
    get size() {
      return records.size;
    },
  };
}

/** formatEvidence - the human summary of one offender. */
export function formatEvidence(e: Evidence): string {
  const lines = [
    `address:    ${e.address}`,
    `first seen: ${new Date(e.firstSeen).toISOString()}`,
    `last seen:  ${new Date(e.lastSeen).toISOString()}`,
    `actions:    ${Object.entries(e.actions).map(([a, n]) => `${a} ${n}`).join(', ')}`,
    `rules:      ${Object.entries(e.rules).map(([r, n]) => `${r} ${n}`).join(', ')}`,
    `origins:    ${e.origins.length === 0 ? '-' : e.origins.join(', ')}`,
    'samples:',
    ...e.samples.map(
      (s) =>
        `  ${new Date(s.at).toISOString()} ${s.stage} ${s.action} ${s.rule ?? '-'} from=<${s.sender ?? ''}> to=<${s.recipient ?? ''}>${s.messageId === undefined ? '' : ` message-id=${s.messageId}`}${s.queueId === undefined ? '' : ` queue-id=${s.queueId}`}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * formatArf - an abuse report (RFC 5965 ARF: multipart/report with a human
 * part, a message/feedback-report part and the sample's headers) addressed
 * to the abuse contact of the offending IP, never to the (forged) sender.
 */
export function formatArf(e: Evidence, opts: { readonly from: string; readonly to: string; readonly reporter: string; readonly now: number }): string {
  const boundary = `levee-arf-${e.address.replace(/[^0-9a-f]/gi, '')}-${String(opts.now)}`;
  const total = Object.values(e.actions).reduce((a, b) => a + b, 0);
  const human = [
    `This is an abuse report for ${e.address}, generated by Levee on ${opts.reporter}.`,
    '',
    `Between ${new Date(e.firstSeen).toUTCString()} and ${new Date(e.lastSeen).toUTCString()} this address`,
    `made ${String(total)} SMTP requests that our policy refused or dropped:`,
    ...Object.entries(e.rules).map(([r, n]) => `  ${String(n)} x ${r}`),
    ...(e.origins.length === 0 ? [] : ['', `The messages name these originating hosts in their first Received header: ${e.origins.join(', ')}.`]),
    '',
    'The envelope senders below are probably forged; please do not contact them.',
    ...e.samples.map((s) => `  ${new Date(s.at).toUTCString()}  ${s.action} (${s.rule ?? '-'})  from=<${s.sender ?? ''}>${s.messageId === undefined ? '' : `  ${s.messageId}`}`),
  ].join('\r\n');
  const report = [
    'Feedback-Type: abuse',
    'User-Agent: Levee/0.1',
    'Version: 1',
    `Source-IP: ${e.address}`,
    `Arrival-Date: ${new Date(e.lastSeen).toUTCString()}`,
    `Reporting-MTA: dns; ${opts.reporter}`,
    `Incidents: ${String(total)}`,
  ].join('\r\n');
  const sample = e.sampleHeaders ?? `Received: from [${e.address}] by ${opts.reporter}`;
  return [
    `From: ${opts.from}`,
    `To: ${opts.to}`,
    `Subject: Abuse report for ${e.address}`,
    `Date: ${new Date(opts.now).toUTCString()}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=feedback-report; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    human,
    `--${boundary}`,
    'Content-Type: message/feedback-report',
    '',
    report,
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    sample,
    `--${boundary}--`,
    '',
  ].join('\r\n');
}
