/**
 * config-schema - the whole levee.yaml schema (zod 4), from YAML's snake_case
 * keys to the camelCase `LeveeConfig` the daemon and the rule compiler use.
 *
 * Every object is strict, so a misspelt key is an error rather than a rule
 * that silently does nothing. Values are checked as far as can be done
 * without I/O: addresses, CIDRs, patterns, regexes, key templates, durations
 * and SMTP replies. Cross-field checks (unique rule names, reply class against
 * action) run in superRefine, which zod skips for an object whose fields
 * already failed: fix the first errors and the next ones appear.
 *
 * A custom issue may carry `params.offset`: the position of the problem inside
 * a string value (e.g. a bad placeholder), so the loader can point at the
 * exact column.
 *
 * Every option carries its documentation in `.meta()` (`doc()` below):
 * config-reference.ts turns the schema into docs/configuration-reference.md
 * (`pnpm docs:config`), and a test fails when an option has no description or
 * the committed reference is stale.
 */

import { z } from 'zod';
import { STAGES, type Protocol, type Stage } from './facts.js';
import { ACTIONS, type Action, type HeaderToAdd } from './verdict.js';
import { cidrHasHostBits, formatCidr, parseCidr, parseIp } from './ip.js';
import { checkPattern, isRegexPattern, splitRegex, type PatternField } from './string-pattern.js';
import { regexBacktrackingProblem } from './regex-safety.js';
import type { RecipientStatus } from './recipient-directory.js';
import type { Tier, TierThresholds } from './load-tier.js';
import type { BatvCheck } from './batv.js';
import { DEFAULT_WORM_ATTACHMENTS, expandDefences, isDefenceRuleName, type DefencesConfig, type RateSpec } from './defences.js';
import { parseKeyTemplate } from './key-template.js';
import { formatDuration, parseDuration } from './duration.js';
import { completeReply, replyClassForAction, validateReply, validateReplyText } from './reply.js';
import { DEFAULT_BUCKETS } from './sliding-window.js';
import type { OptionMeta } from './config-reference.js';

// ---- output types ---------------------------------------------------------

export type ListenAddress =
  | { readonly kind: 'inet'; readonly host: string; readonly port: number; readonly text: string }
  | { readonly kind: 'unix'; readonly path: string; readonly text: string };

export interface HostPort {
  readonly host: string;
  readonly port: number;
  readonly text: string;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** Personal values `log.redact` can hide in log lines and admin output. */
export type RedactField = 'sasl_username' | 'sender' | 'recipient';
export const REDACT_FIELDS: readonly RedactField[] = ['sasl_username', 'sender', 'recipient'];
export type FailAction = 'continue' | 'tempfail';
/** What a limit rule does while the shared counter store is failing: decide on local counts, or tempfail. */
export type StoreErrorAction = 'fail_open' | 'fail_closed';
export type CounterBackend = 'memory' | 'redis';
export type RuleMode = 'enforce' | 'warn';
/** What a limit counts per request: 1, the recipient count (at least 1), or the message size. */
export type CountMode = 'requests' | 'recipients' | 'bytes';

export interface NumberRange {
  readonly min?: number | undefined;
  readonly max?: number | undefined;
}

/** `match` / `unless`: every present condition must hold. */
export interface Conditions {
  readonly clientAddress?: readonly string[] | undefined;
  readonly clientName?: readonly string[] | undefined;
  readonly heloName?: readonly string[] | undefined;
  readonly sender?: readonly string[] | undefined;
  readonly recipient?: readonly string[] | undefined;
  readonly saslUsername?: readonly string[] | undefined;
  readonly nullSender?: boolean | undefined;
  readonly authenticated?: boolean | undefined;
  readonly size?: NumberRange | undefined;
  readonly recipientCount?: NumberRange | undefined;
  readonly protocol?: Protocol | undefined;
  readonly stress?: boolean | undefined;
  /** Open connections from the client / in total (milter only: the policy protocol has no close). */
  readonly clientConcurrency?: NumberRange | undefined;
  readonly totalConcurrency?: NumberRange | undefined;
  /** Header name (case-insensitive) -> text patterns; holds when a header of each name matches. */
  readonly header?: Readonly<Record<string, readonly string[]>> | undefined;
  /** Holds when any attachment's file name matches. */
  readonly attachmentName?: readonly string[] | undefined;
  /** Holds when any attachment's MIME type matches. */
  readonly attachmentType?: readonly string[] | undefined;
  /** Holds when the recipient directory classifies the recipient as one of these. */
  readonly recipientStatus?: readonly RecipientStatus[] | undefined;
  /** Holds in these load tiers (outbreak mode): rules that only run under load. */
  readonly tier?: readonly Tier[] | undefined;
  /** What BATV says of the recipient (set for recipients in batv.domains when BATV is configured). */
  readonly batv?: readonly BatvCheck[] | undefined;
  /** The message is a multipart/report of one of these report-types (delivery-status: a DSN bounce). */
  readonly report?: readonly string[] | undefined;
  /** The message does (not) return the headers of another message (a bounce with the original attached). */
  readonly returnsHeaders?: boolean | undefined;
  /** Some Received line of the returned message matches: the bounced mail passed through here. */
  readonly returnedReceived?: readonly string[] | undefined;
}

export interface LimitConfig {
  /** Key template source, e.g. "{client_network/24,64}". */
  readonly key: string;
  readonly max: number;
  readonly windowMs: number;
  readonly buckets: number;
  readonly count: CountMode;
  /**
   * Only requests meeting these conditions add to the counter; every other
   * request the rule applies to reads it (adds 0) and is refused too once it
   * is over max: "after 10 unknown recipients, refuse all of this client's mail".
   */
  readonly countIf?: Conditions | undefined;
  /** Count each value of this key template (e.g. "{recipient_domain}") once per window, not every request. */
  readonly distinct?: string | undefined;
}

export interface RuleConfig {
  readonly name: string;
  readonly description?: string | undefined;
  readonly stages: readonly Stage[];
  readonly mode: RuleMode;
  readonly match?: Conditions | undefined;
  readonly unless?: Conditions | undefined;
  readonly limit?: LimitConfig | undefined;
  readonly action: Action;
  readonly code?: number | undefined;
  readonly enhancedCode?: string | undefined;
  readonly text?: string | undefined;
  /** Headers added when the rule decides; with action continue the rule tags and evaluation goes on. */
  readonly addHeaders?: readonly HeaderToAdd[] | undefined;
  /** Limit rules only; absent means fail_open. */
  readonly onStoreError?: StoreErrorAction | undefined;
  /** Tarpit: wait this long before answering when the rule decides. */
  readonly delayMs?: number | undefined;
  /** Limit rules only: warn first, hold the key after a grace period, for a while (containment.ts). */
  readonly contain?: { readonly graceMs: number; readonly holdMs: number } | undefined;
}

export interface RedisSettings {
  /** redis:// or rediss:// URL of a single server (exclusive with clusterNodes). */
  readonly url?: string | undefined;
  /** Seed nodes of a Redis Cluster. */
  readonly clusterNodes?: readonly HostPort[] | undefined;
  /** Sentinels to ask for the current master of `sentinelName` (exclusive with url and clusterNodes). */
  readonly sentinels?: readonly HostPort[] | undefined;
  readonly sentinelName?: string | undefined;
  /** Password of the master found through Sentinel (a url carries its own). */
  readonly password?: string | undefined;
  /** Prepended to every key; never contains a hash tag. */
  readonly keyPrefix: string;
  /** Per-request deadline in ms; past it the request counts locally. */
  readonly timeoutMs: number;
  /** Connections the counting calls are spread over, each with at most one batch in flight. */
  readonly connections: number;
  readonly breaker: { readonly failures: number; readonly coolDownMs: number };
}

export interface CounterSettings {
  readonly backend: CounterBackend;
  readonly maxKeys: number;
  /** Present when `counters.redis` is configured (required by backend redis). */
  readonly redis?: RedisSettings | undefined;
  /** Present when `counters.snapshot.file` is set. */
  readonly snapshot?: { readonly file: string; readonly intervalMs: number } | undefined;
}

/** Outbreak mode: what is sampled, and the thresholds of each tier (load-tier.ts). */
export interface LoadSettings {
  readonly sampleIntervalMs: number;
  readonly holdMs: number;
  readonly calmRatio: number;
  /** Answer delay in tier delay and above (connect, mail, rcpt). */
  readonly delayMs: number;
  readonly queueFilesystem: string | undefined;
  readonly queueDirectories: readonly string[];
  /** Empty: tiers are off (the tier stays normal). */
  readonly thresholds: TierThresholds;
}

export interface BatvSettings {
  /** Where the secret is (the daemon reads it); at least 16 characters. */
  readonly secretFile: string;
  /** 0-9, carried in each tag so the secret can be rotated. */
  readonly keyId: number;
  /** Envelope senders in these domains are signed; bounces to them are checked. */
  readonly domains: readonly string[];
  readonly validDays: number;
  /** Besides authenticated clients, mail from these networks is signed (your own hosts). */
  readonly signClients: readonly string[];
}

/** What Levee keeps of the mail it answered quarantine for (the MTA holds the mail itself). */
export interface HeldSettings {
  /** Records older than this are forgotten (the mail stays in the MTA's hold queue). */
  readonly retentionMs: number;
  /** At most this many records; the oldest go first. */
  readonly maxRecords: number;
  /** Run by `levee release` (as the admin who runs it): argv, `{queue_id}` replaced. */
  readonly releaseCommand: readonly string[];
  /** Run by `levee drop`: argv, `{queue_id}` replaced. */
  readonly dropCommand: readonly string[];
}

/** How the postmaster hears that a customer was warned or held. */
export interface NotifySettings {
  /** argv run with the notice on stdin and LEVEE_* variables set. */
  readonly command: readonly string[] | undefined;
  /** A mail through the local MTA. */
  readonly mail: { readonly to: string; readonly from: string; readonly smtp: HostPort } | undefined;
  /** Notices beyond this many per hour are only logged (a flood of them helps nobody). */
  readonly maxPerHour: number;
}

/** The longest tarpit delay: Postfix's policy timeout we recommend is 10s, sendmail's milter read timeout 10-20s. */
export const MAX_RULE_DELAY_MS = 5000;

export interface LeveeConfig {
  readonly listen: { readonly policy: readonly ListenAddress[]; readonly milter: readonly ListenAddress[] };
  readonly metrics: { readonly listen: HostPort | false };
  readonly counters: CounterSettings;
  /**
   * buffered: stdout written in blocks (flushed every second and at exit) rather than line by line.
   * redact: values shown as a keyed hash in logs and admin output; redactKeyFile: the key (else one per start).
   */
  readonly log: {
    readonly level: LogLevel;
    readonly buffered: boolean;
    readonly redact: readonly RedactField[];
    readonly redactKeyFile: string | undefined;
  };
  readonly policy: { readonly failAction: FailAction; readonly idleTimeoutMs: number; readonly maxConnections: number };
  readonly milter: { readonly idleTimeoutMs: number; readonly maxConnections: number };
  /** The recipient directory (recipient-directory.ts); the daemon reads the file. */
  readonly recipients: { readonly file: string | undefined };
  readonly load: LoadSettings;
  /** BATV: sign outbound envelope senders of these domains, verify bounces to them. */
  readonly batv: BatvSettings | undefined;
  readonly held: HeldSettings;
  readonly notify: NotifySettings;
  /** The admin endpoint (levee status/top/block); false: off. */
  readonly admin: { readonly listen: HostPort | false; readonly tokenFile: string | undefined };
  readonly rules: readonly RuleConfig[];
}

// ---- value parsers --------------------------------------------------------

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** sun_path is 108 bytes including the terminating NUL on Linux. */
const MAX_UNIX_PATH = 107;

/** Parse "HOST:PORT" (IPv6 host in brackets); a message when invalid. */
export function parseHostPort(text: string): HostPort | string {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return `"${text}" is not HOST:PORT`;
  const hostText = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (!/^[1-9][0-9]{0,4}$/.test(portText) || Number(portText) > 65535) return `port "${portText}" is not in 1..65535`;
  let host: string;
  if (hostText.startsWith('[')) {
    if (!hostText.endsWith(']')) return `"${hostText}" lacks its closing "]"`;
    const inner = hostText.slice(1, -1);
    const ip = parseIp(inner);
    if (ip === undefined || ip.family !== 6 || inner.includes('.')) return `"${inner}" is not an IPv6 address`;
    host = inner;
  } else {
    if (hostText.includes(':')) return `IPv6 address "${hostText}" must be in brackets: [${hostText}]:${portText}`;
    if (parseIp(hostText) === undefined && !HOSTNAME_RE.test(hostText)) return `"${hostText}" is not an IP address or host name`;
    host = hostText;
  }
  return { host, port: Number(portText), text };
}

/** Parse "inet:HOST:PORT" or "unix:/abs/path"; a message when invalid. */
export function parseListenAddress(text: string): ListenAddress | string {
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!path.startsWith('/')) return `unix socket path "${path}" must be absolute`;
    if (Buffer.byteLength(path) > MAX_UNIX_PATH) return `unix socket path is longer than ${MAX_UNIX_PATH} bytes`;
    if (path.includes('\0')) return 'unix socket path contains NUL';
    return { kind: 'unix', path, text };
  }
  if (text.startsWith('inet:')) {
    const hp = parseHostPort(text.slice(5));
    return typeof hp === 'string' ? hp : { kind: 'inet', host: hp.host, port: hp.port, text };
  }
  return `"${text}" is not "inet:HOST:PORT" or "unix:/path"`;
}

// ---- schema building blocks -----------------------------------------------

/** Documentation of an option for the generated reference (config-reference.ts). */
function doc(description: string, more: Omit<OptionMeta, 'description'> = {}): OptionMeta {
  return { description, ...more };
}

/** Drop keys whose value is undefined, so a printed config shows only what is set. */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** A string or a non-empty list of strings; always a list after parsing. */
function stringList<T extends z.ZodType<unknown, string>>(item: T, allowEmpty = false) {
  return z.preprocess(
    (v) => (typeof v === 'string' ? [v] : v),
    z.array(item, { error: 'expected a string or a list of strings' }).min(allowEmpty ? 0 : 1, 'list must not be empty'),
  ).meta({ oneOrList: true } satisfies OptionMeta);
}

/** A string checked by `check`; `valueType` names what it must be, for the reference. */
function checkedString(check: (s: string) => string | undefined, valueType: string) {
  return z
    .string({ error: 'expected a string' })
    .superRefine((s, ctx) => {
      const m = check(s);
      if (m !== undefined) ctx.addIssue({ code: 'custom', message: m });
    })
    .meta({ valueType } satisfies OptionMeta);
}

const cidrItem = checkedString((s) => {
  const c = parseCidr(s);
  if (c === undefined) return `"${s}" is not an IP address or CIDR network`;
  if (cidrHasHostBits(s)) return `"${s}" has host bits set; did you mean ${formatCidr(c)}?`;
  return undefined;
}, 'IP address or CIDR network');

/** An absolute file path (the daemon reads or writes the file). */
function absolutePath(message: string) {
  return z
    .string({ error: 'expected an absolute path' })
    .regex(/^\/[^\0]*$/, message)
    .meta({ valueType: 'file path', allowed: 'absolute path' } satisfies OptionMeta);
}

/** RFC 5322 field name: printable ASCII except ":" and space. */
const HEADER_NAME_RE = /^[!-9;-~]{1,76}$/;

/** `add_header: "X-Name: value"` -> { name, value }; the value is one line of printable text. */
const headerLine = z.string({ error: 'expected "Name: value"' }).transform((s, ctx): HeaderToAdd => {
  const colon = s.indexOf(':');
  const name = colon < 0 ? '' : s.slice(0, colon);
  const value = colon < 0 ? '' : s.slice(colon + 1).trim();
  if (!HEADER_NAME_RE.test(name)) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not "Name: value" with a header name of printable ASCII` });
    return z.NEVER;
  }
  const problem = value.length === 0 ? 'the header value is empty' : replyTextProblemForHeader(value);
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', message: `header ${name}: ${problem}` });
    return z.NEVER;
  }
  return { name, value };
}).meta({ valueType: '"Name: value"', allowed: 'printable ASCII name, one line of text' } satisfies OptionMeta);

function replyTextProblemForHeader(value: string): string | undefined {
  // The same single-line, no-control-character rule as reply text.
  return validateReplyText(value)?.replace('reply text', 'header value');
}

const PATTERN_TYPE: Readonly<Record<PatternField, string>> = {
  address: 'address pattern',
  host: 'host pattern',
  username: 'pattern',
  text: 'text pattern',
  filename: 'file-name pattern',
};

const patternItem = (field: PatternField) => checkedString((s) => checkPattern(s, field), PATTERN_TYPE[field]);

// An empty list is allowed: it turns that listener off.
const listenList = stringList(
  checkedString((s) => {
    const r = parseListenAddress(s);
    return typeof r === 'string' ? r : undefined;
  }, 'listen address'),
  true,
).transform((l) => l.map((s) => parseListenAddress(s) as ListenAddress));

const duration = z.unknown().transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)}: write e.g. 500ms, 60s, 5m, 1h, 1d or a number of milliseconds` });
    return z.NEVER;
  }
  return ms;
}).meta({ valueType: 'duration' } satisfies OptionMeta);

const count = z.int({ error: 'expected a whole number' }).min(0, 'must be 0 or more');

const range = z
  .strictObject({ min: count.optional(), max: count.optional() })
  .superRefine((r, ctx) => {
    if (r.min === undefined && r.max === undefined) ctx.addIssue({ code: 'custom', message: 'give min, max or both' });
    else if (r.min !== undefined && r.max !== undefined && r.min > r.max) {
      ctx.addIssue({ code: 'custom', message: `min ${r.min} is greater than max ${r.max}`, path: ['min'] });
    }
  })
  .transform((r): NumberRange => compact({ min: r.min, max: r.max }))
  .meta({ valueType: '{ min, max }', allowed: 'whole numbers, at least 0; min, max or both; min ≤ max' } satisfies OptionMeta);

const trueOrFalse = z.boolean({ error: 'expected true or false' });

const conditions = z
  .strictObject({
    client_address: stringList(cidrItem)
      .optional()
      .meta(doc('The client address is in one of these networks (an IPv4-mapped IPv6 address counts as IPv4).')),
    client_name: stringList(patternItem('host')).optional().meta(doc('The verified client host name matches.')),
    helo_name: stringList(patternItem('host')).optional().meta(doc('The HELO/EHLO name matches.')),
    sender: stringList(patternItem('address')).optional().meta(doc('The envelope sender matches (never the null sender).')),
    recipient: stringList(patternItem('address')).optional().meta(doc('The recipient matches.')),
    sasl_username: stringList(patternItem('username')).optional().meta(doc('The SASL login name matches.')),
    null_sender: trueOrFalse.optional().meta(doc('The envelope sender is (true) or is not (false) the null sender `<>`, once MAIL FROM was given.')),
    authenticated: trueOrFalse.optional().meta(doc('The client has (true) or has not (false) authenticated with SASL.')),
    size: range.optional().meta(doc('Message size in bytes: SIZE= at MAIL, the real size at eom.')),
    recipient_count: range.optional().meta(doc('Number of recipients, known at the data and eom stages.')),
    protocol: z.enum(['policy', 'milter']).optional().meta(doc('Which listener asked: the Postfix policy service or the milter.')),
    stress: trueOrFalse.optional().meta(doc('Postfix says it is (true) or is not (false) overloaded (`stress=yes`).')),
    client_concurrency: range
      .optional()
      .meta(doc('Open milter connections from this client address, this one included (milter only: the policy protocol never sees a connection close).')),
    total_concurrency: range.optional().meta(doc('Open milter connections from all clients, this one included (milter only).')),
    header: z
      .record(z.string().regex(HEADER_NAME_RE, 'header names are printable ASCII without ":" or spaces'), stringList(patternItem('text')), {
        error: 'expected a map of header name to patterns',
      })
      .optional()
      .meta(
        doc('For every header name listed, some header of that name (case-insensitive) matches one of its patterns (milter, at eom).', {
          valueType: 'map of header name to text patterns',
        }),
      ),
    attachment_name: stringList(patternItem('filename'))
      .optional()
      .meta(doc("Some attachment's file name matches, at any depth of the MIME tree and inside zip archives (milter, at eom).")),
    attachment_type: stringList(patternItem('text')).optional().meta(doc("Some attachment's MIME type matches, e.g. `application/zip` (milter, at eom).")),
    recipient_status: stringList(z.enum(['known', 'unknown', 'foreign'], { error: 'expected known, unknown or foreign' }))
      .optional()
      .meta(doc('What `recipients.file` says of the recipient: known, unknown (in one of our domains but not listed) or foreign (not our domain).')),
    tier: stringList(z.enum(['normal', 'delay', 'shed', 'refuse'], { error: 'expected normal, delay, shed or refuse' }))
      .optional()
      .meta(doc('The current load tier is one of these (outbreak mode, see `load`): rules that only run under load.')),
    report: stringList(patternItem('text'))
      .optional()
      .meta(doc('The message is a `multipart/report` of one of these report-types (`delivery-status`: a DSN bounce) (milter).')),
    batv: stringList(z.enum(['valid', 'expired', 'bad-signature', 'unknown-key', 'unsigned'], { error: 'expected valid, expired, bad-signature, unknown-key or unsigned' }))
      .optional()
      .meta(doc("What BATV says of a recipient in `batv.domains` (a bounce's tag), when `batv` is configured.")),
    returns_headers: trueOrFalse
      .optional()
      .meta(doc("The message does (true) or does not (false) return another message's headers (a bounce with the original attached) (milter).")),
    returned_received: stringList(patternItem('text'))
      .optional()
      .meta(doc('Some Received line of the returned message matches: the bounced mail passed through here (milter).')),
  })
  .transform(
    (c): Conditions => compact({
      clientAddress: c.client_address,
      clientName: c.client_name,
      heloName: c.helo_name,
      sender: c.sender,
      recipient: c.recipient,
      saslUsername: c.sasl_username,
      nullSender: c.null_sender,
      authenticated: c.authenticated,
      size: c.size,
      recipientCount: c.recipient_count,
      protocol: c.protocol,
      stress: c.stress,
      clientConcurrency: c.client_concurrency,
      totalConcurrency: c.total_concurrency,
      header: c.header,
      attachmentName: c.attachment_name,
      attachmentType: c.attachment_type,
      recipientStatus: c.recipient_status,
      tier: c.tier,
      report: c.report,
      batv: c.batv,
      returnsHeaders: c.returns_headers,
      returnedReceived: c.returned_received,
    }),
  )
  .meta({
    id: 'conditions',
    title: 'Conditions',
    description:
      'What `rules[].match`, `rules[].unless` and `rules[].limit.count_if` may test. Every condition given must hold; a list holds when any of its items matches. Patterns compare case-insensitively unless a regex says otherwise.',
  } satisfies OptionMeta & { id: string });

function isEmptyConditions(c: Conditions): boolean {
  return Object.values(c).every((v) => v === undefined);
}

/** The pattern lists of a Conditions, each with its YAML key and its kind. */
function patternLists(c: Conditions): { key: readonly (string | number)[]; field: PatternField; patterns: readonly string[] }[] {
  const lists: [readonly (string | number)[], PatternField, readonly string[] | undefined][] = [
    [['client_name'], 'host', c.clientName],
    [['helo_name'], 'host', c.heloName],
    [['sender'], 'address', c.sender],
    [['recipient'], 'address', c.recipient],
    [['sasl_username'], 'username', c.saslUsername],
    [['attachment_name'], 'filename', c.attachmentName],
    [['attachment_type'], 'text', c.attachmentType],
    [['report'], 'text', c.report],
    [['returned_received'], 'text', c.returnedReceived],
    ...Object.entries(c.header ?? {}).map(([name, patterns]): [string[], PatternField, readonly string[]] => [['header', name], 'text', patterns]),
  ];
  return lists.flatMap(([key, field, patterns]) => (patterns === undefined ? [] : [{ key, field, patterns }]));
}

/**
 * Regexes of a rule's conditions that may backtrack catastrophically
 * (regex-safety.ts), each with its path below the rule. A pattern with
 * its own problem (checkPattern: syntax, flags, length) is reported there
 * and skipped here.
 */
function unsafeRegexes(where: readonly string[], c: Conditions | undefined): { path: (string | number)[]; message: string }[] {
  if (c === undefined) return [];
  const out: { path: (string | number)[]; message: string }[] = [];
  for (const { key, field, patterns } of patternLists(c)) {
    patterns.forEach((p, i) => {
      const parts = isRegexPattern(p) && checkPattern(p, field) === undefined ? splitRegex(p) : undefined;
      const problem = parts === undefined ? undefined : regexBacktrackingProblem(parts.source, parts.flags);
      if (problem !== undefined) out.push({ path: [...where, ...key, i], message: `regex ${p} ${problem}` });
    });
  }
  return out;
}

const keyTemplate = z
  .string({ error: 'expected a string' })
  .superRefine((s, ctx) => {
    const r = parseKeyTemplate(s);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: r.message, params: { offset: r.offset } });
  })
  .meta({ valueType: 'key template', allowed: 'text and placeholders such as `{client_address}`, `{client_network/24,64}`, `{sender_domain}`' } satisfies OptionMeta);

const MAX_BUCKETS = 1000;

const limit = z
  .strictObject({
    key: keyTemplate.meta(doc('What is counted per: a template over the request, e.g. `{client_address}`; a request with no value for a placeholder is not counted and the rule does not apply.')),
    max: count.meta(doc('Allowed per window; the request that takes the count above max makes the rule decide.')),
    window: duration.meta(doc('Length of the sliding window.')),
    buckets: z
      .int({ error: 'expected a whole number' })
      .min(1, 'at least 1 bucket')
      .max(MAX_BUCKETS, `at most ${MAX_BUCKETS} buckets`)
      .default(DEFAULT_BUCKETS)
      .meta(doc('Sub-windows: the window slides in steps of window / buckets (rounded up).')),
    count: z
      .enum(['requests', 'recipients', 'bytes'])
      .default('requests')
      .meta(doc('What a request adds: 1 (requests), its recipient count, at least 1 (recipients), or the message size (bytes).')),
    count_if: conditions
      .optional()
      .meta(doc('Only requests meeting these conditions add to the counter; every other request the rule applies to only reads it, and is refused too once it is over max.')),
    distinct: keyTemplate
      .optional()
      .meta(doc('Count each value of this template once per window length instead of every request, e.g. `{recipient_domain}`: distinct recipient domains per user. Needs count: requests.')),
  })
  .superRefine((l, ctx) => {
    if (l.window < l.buckets) {
      ctx.addIssue({ code: 'custom', message: `window ${formatDuration(l.window)} is shorter than ${l.buckets} buckets of 1ms`, path: ['window'] });
    }
    if (l.distinct !== undefined && l.count !== 'requests') {
      // Each new value adds one: "recipient domains per hour", not bytes of them.
      ctx.addIssue({ code: 'custom', message: `distinct counts each new value once; it cannot be combined with count: ${l.count}`, path: ['distinct'] });
    }
  })
  .transform(
    (l): LimitConfig => compact({ key: l.key, max: l.max, windowMs: l.window, buckets: l.buckets, count: l.count, countIf: l.count_if, distinct: l.distinct }),
  )
  .meta(doc('Makes the rule a rate limit: it counts the requests it applies to and decides only when the count is over max.'));

/** The longest grace period and hold of `contain`. */
const MAX_CONTAIN_MS = 30 * 86_400_000;

const contain = z
  .strictObject({
    grace: boundedDuration(0, MAX_CONTAIN_MS)
      .prefault('15m')
      .meta(doc('After the first time the key goes over its limit, only warn for this long; still over the limit after it: hold. 0 holds at once.')),
    hold_for: boundedDuration(1000, MAX_CONTAIN_MS)
      .prefault('2h')
      .meta(doc("The cool-down: how long every message of a held key gets the rule's action, under the limit or not; then the hold expires by itself.")),
  })
  .transform((c) => ({ graceMs: c.grace, holdMs: c.hold_for }))
  .meta(doc('Contain an infected customer: warn at the first trip, hold the key after the grace period, let it go after hold_for (limit rules, action not continue/accept, mode enforce).'));

const stage = z.enum(STAGES as readonly Stage[] as [Stage, ...Stage[]]);

const RULE_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

const rule = z
  .strictObject({
    name: z
      .string({ error: 'expected a string' })
      .regex(RULE_NAME_RE, 'rule name must be 1-64 characters of A-Z a-z 0-9 _ . -')
      .meta(doc('Unique name; the `rule` label of the metrics and the `rule` field of the log, and part of the counter key.', { allowed: '1-64 characters of A-Z a-z 0-9 _ . -; unique' })),
    description: z.string({ error: 'expected a string' }).max(1000).optional().meta(doc('Free text for people; Levee does not read it.')),
    stage: stringList(stage)
      .optional()
      .meta(doc('The SMTP stages the rule runs at.', { defaultText: 'all stages' })),
    mode: z
      .enum(['enforce', 'warn'])
      .default('enforce')
      .meta(doc('warn: never decides; logs and counts (`levee_rule_hits_total{mode="warn"}`) what it would have done, and evaluation goes on.')),
    match: conditions.optional().meta(doc('Conditions that must all hold for the rule to apply; absent: every request.')),
    unless: conditions.optional().meta(doc('Exemptions: the rule does not apply when all of these hold.')),
    limit: limit.optional(),
    action: z
      .enum(ACTIONS as readonly Action[] as [Action, ...Action[]])
      .meta(doc('What the rule answers when it decides; continue with add_header tags the message and evaluation goes on.')),
    code: z
      .int({ error: 'expected a whole number' })
      .optional()
      .meta(doc('SMTP reply code; tempfail and reject only, needs text.', { allowed: '4xx for tempfail, 5xx for reject', defaultText: '450 (tempfail), 550 (reject)' })),
    enhanced_code: z
      .string({ error: 'expected a string like "5.7.1"' })
      .optional()
      .meta(doc('RFC 3463 enhanced status code; tempfail and reject only.', { allowed: 'X.Y.Z, class matching the code', defaultText: '4.7.1 (tempfail), 5.7.1 (reject)' })),
    text: z
      .string({ error: 'expected a string' })
      .optional()
      .meta(doc('Reply text (tempfail, reject) or the reason logged and passed to the MTA (quarantine, discard).', { allowed: 'one line, no control characters, at most 400 bytes' })),
    add_header: stringList(headerLine).optional().meta(doc('Headers added to the message when the rule decides (with action continue: tags, and evaluation goes on).')),
    on_store_error: z
      .enum(['fail_open', 'fail_closed'])
      .optional()
      .meta(doc('Limit rules only: while a shared (Redis) counter store fails, decide on local counts (fail_open) or answer 451 4.3.0 (fail_closed).', { defaultText: '`fail_open`' })),
    contain: contain.optional(),
    delay: duration
      .superRefine((ms, ctx) => {
        if (ms > MAX_RULE_DELAY_MS) ctx.addIssue({ code: 'custom', message: `at most ${formatDuration(MAX_RULE_DELAY_MS)}: MTAs give up waiting for an answer` });
      })
      .optional()
      .meta(doc('Tarpit: wait this long before answering when the rule decides.', { valueType: 'duration', allowed: `0 to ${formatDuration(MAX_RULE_DELAY_MS)}` })),
  })
  .superRefine((r, ctx) => {
    let bad = false;
    const issue = (path: string, message: string): void => {
      bad = true;
      ctx.addIssue({ code: 'custom', message, path: [path] });
    };
    if (r.on_store_error !== undefined && r.limit === undefined) {
      // Only a limit reads counters, so only a limit can be affected by a failing store.
      issue('on_store_error', 'on_store_error is only for rules with a limit');
    }
    if (r.contain !== undefined) {
      if (r.limit === undefined) issue('contain', 'contain is only for rules with a limit (it acts when the limit is exceeded)');
      else if (r.action === 'continue' || r.action === 'accept') issue('contain', `contain holds mail with the rule's action; ${r.action} holds nothing (use quarantine)`);
      else if (r.mode === 'warn') issue('contain', 'contain needs mode enforce: in warn mode nothing is ever held (drop contain to shadow-test the limit)');
    }
    if (r.unless !== undefined && isEmptyConditions(r.unless)) {
      // An empty `unless` always holds, which would switch the rule off entirely.
      issue('unless', 'unless has no conditions, so it would exempt every request');
    }
    const cls = replyClassForAction(r.action);
    if (cls === undefined) {
      if (r.code !== undefined) issue('code', `code is only for tempfail or reject, not ${r.action}`);
      if (r.enhanced_code !== undefined) issue('enhanced_code', `enhanced_code is only for tempfail or reject, not ${r.action}`);
      if (r.text !== undefined && r.action !== 'quarantine' && r.action !== 'discard') {
        issue('text', `text is only for tempfail, reject, quarantine or discard, not ${r.action}`);
      }
    } else {
      if (r.code !== undefined && Math.floor(r.code / 100) !== cls) {
        issue('code', `${r.action} needs a ${cls}xx code, not ${r.code}`);
      } else if (r.code !== undefined && r.text === undefined) {
        // Never a bare code: Postfix reads `action=550` without text as OK.
        issue('code', 'code requires text');
      }
      if (r.enhanced_code !== undefined) {
        const m = /^([245])\.(\d{1,3})\.(\d{1,3})$/.exec(r.enhanced_code);
        if (m === null) issue('enhanced_code', `"${r.enhanced_code}" is not an enhanced status code like ${cls}.7.1`);
        else if (Number(m[1]) !== cls) issue('enhanced_code', `${r.action} needs a ${cls}.x.x enhanced code, not ${r.enhanced_code}`);
      }
    }
    if (r.text !== undefined) {
      const m = validateReplyText(r.text);
      if (m !== undefined) issue('text', m);
    }
    for (const u of [...unsafeRegexes(['match'], r.match), ...unsafeRegexes(['unless'], r.unless), ...unsafeRegexes(['limit', 'count_if'], r.limit?.countIf)]) {
      bad = true;
      ctx.addIssue({ code: 'custom', message: `rule ${r.name}: ${u.message}`, path: u.path });
    }
    if (!bad && cls !== undefined) {
      // The reply the rule will really send, defaults filled in, passes the same check as every emitted reply.
      const reply = completeReply(r.action, r.limit !== undefined, r.code, r.enhanced_code, r.text);
      const m = reply === undefined ? 'no reply' : validateReply(reply.code, reply.enhancedCode, reply.text);
      if (m !== undefined) ctx.addIssue({ code: 'custom', message: m });
    }
  })
  .transform(
    (r): RuleConfig => compact({
      name: r.name,
      description: r.description,
      stages: r.stage ?? STAGES,
      mode: r.mode,
      match: r.match,
      unless: r.unless,
      limit: r.limit,
      action: r.action,
      code: r.code,
      enhancedCode: r.enhanced_code,
      text: r.text,
      addHeaders: r.add_header,
      delayMs: r.delay,
      onStoreError: r.on_store_error,
      contain: r.contain,
    }),
  );

const metricsListen = z.unknown().transform((v, ctx): HostPort | false => {
  if (v === false) return false;
  if (typeof v !== 'string') {
    ctx.addIssue({ code: 'custom', message: 'expected "HOST:PORT" or false' });
    return z.NEVER;
  }
  const hp = parseHostPort(v);
  if (typeof hp === 'string') {
    ctx.addIssue({ code: 'custom', message: hp });
    return z.NEVER;
  }
  return hp;
}).meta({ valueType: '"HOST:PORT" or false', allowed: 'IP address or host name, port 1-65535 (IPv6 in brackets); false: off' } satisfies OptionMeta);

export const DEFAULT_POLICY_LISTEN = 'inet:127.0.0.1:10031';
export const DEFAULT_MILTER_LISTEN = 'inet:127.0.0.1:8891';
export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9469';
/** Read-only without a token: status, top, the block list. Changes need admin.token_file. */
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9470';
export const DEFAULT_MAX_KEYS = 1_000_000;
/** Just above Postfix's smtpd_policy_service_max_idle (300s), so Postfix closes idle connections first. */
export const DEFAULT_IDLE_TIMEOUT = '330s';
/** libmilter's own default read timeout (smfi_settimeout): an MTA may keep a milter connection quiet this long between commands. */
export const DEFAULT_MILTER_IDLE_TIMEOUT = '7210s';
/** Open connections per listener: far above Postfix's default_process_limit (100 smtpd, each holding one), room for several MX hosts sharing one Levee. */
export const DEFAULT_MAX_CONNECTIONS = 4096;

/** A listener's cap on open connections. */
const maxConnections = z
  .int({ error: 'expected a whole number of connections' })
  .min(1)
  .max(1_000_000)
  .default(DEFAULT_MAX_CONNECTIONS);

/**
 * A top-level section: absent or empty (`log:` with everything below
 * commented out, which YAML reads as null) means all its defaults.
 */
function section<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => v ?? {}, schema);
}

export const DEFAULT_REDIS_KEY_PREFIX = 'levee:';
/** Far below Postfix's policy (100s) and milter (30s) timeouts; a LAN round trip is well under 1ms. */
export const DEFAULT_REDIS_TIMEOUT = '25ms';
export const DEFAULT_BREAKER_FAILURES = 3;
/**
 * Two: ioredis sends one auto-pipeline at a time per connection, so with one
 * connection a request waits for the previous batch's round trip; two keep a
 * batch in flight while the next fills (~20 % more requests/s at 8 policy
 * connections in `pnpm bench`, docs/benchmarks.md).
 */
export const DEFAULT_REDIS_CONNECTIONS = 2;
export const DEFAULT_BREAKER_COOL_DOWN = '5s';
export const DEFAULT_SNAPSHOT_INTERVAL = '60s';

/** A duration within [min, max] ms. */
function boundedDuration(min: number, max: number) {
  return duration
    .superRefine((ms, ctx) => {
      if (ms < min || ms > max) ctx.addIssue({ code: 'custom', message: `must be between ${formatDuration(min)} and ${formatDuration(max)}` });
    })
    .meta({ valueType: 'duration', allowed: `${formatDuration(min)} to ${formatDuration(max)}` } satisfies OptionMeta);
}

const redisUrl = checkedString((s) => {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return `"${s.replace(/\/\/[^@/]*@/, '//***@')}" is not a URL like redis://host:6379/0`;
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') return `URL scheme "${url.protocol}" is not redis: or rediss:`;
  if (url.hostname === '') return 'the URL has no host';
  return undefined;
}, 'URL').meta({ allowed: '`redis://[:PASSWORD@]HOST[:PORT][/DB]` or `rediss://...` (TLS)' } satisfies OptionMeta);

const hostPortItem = checkedString((s) => {
  const r = parseHostPort(s);
  return typeof r === 'string' ? r : undefined;
}, '"HOST:PORT"');

const redisSection = z
  .strictObject({
    url: redisUrl.optional().meta(doc('A single Redis server. Give exactly one of url, cluster_nodes or sentinels.')),
    cluster_nodes: stringList(hostPortItem).optional().meta(doc('Seed nodes of a Redis Cluster (the rest is discovered).')),
    sentinels: stringList(hostPortItem).optional().meta(doc('Redis Sentinels to ask for the current master of sentinel_name.')),
    sentinel_name: z
      .string({ error: 'expected a string' })
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a Sentinel master name')
      .optional()
      .meta(doc('The master name the Sentinels watch; required with sentinels.', { allowed: '1-64 characters of A-Z a-z 0-9 _ . -' })),
    password: z.string({ error: 'expected a string' }).optional().meta(doc('Password of the master found through Sentinel (a url carries its own).')),
    // A "{" or "}" in the prefix would make the prefix the hash tag and put every key in one Cluster slot.
    key_prefix: z
      .string({ error: 'expected a string' })
      .max(64, 'at most 64 characters')
      .regex(/^[^{}\s]*$/, 'key_prefix must not contain "{", "}" or white space (they would break the hash tag)')
      .default(DEFAULT_REDIS_KEY_PREFIX)
      .meta(doc('Prepended to every key, so several Levee installations can share one Redis.', { allowed: 'at most 64 characters, no `{`, `}` or white space' })),
    timeout: boundedDuration(1, 10_000)
      .prefault(DEFAULT_REDIS_TIMEOUT)
      .meta(doc('Per-request deadline; past it the request is decided on local counts (and counted in levee_counter_backend_errors_total).')),
    connections: z
      .int({ error: 'expected a whole number' })
      .min(1, 'at least 1 connection')
      .max(16, 'at most 16 connections')
      .default(DEFAULT_REDIS_CONNECTIONS)
      .meta(
        doc('Connections the counting calls are spread over (per node on a Cluster), each with at most one batch of requests in flight; the shared lists use one more.', {
          allowed: '1-16',
        }),
      ),
    breaker: section(
      z.strictObject({
        failures: z
          .int({ error: 'expected a whole number' })
          .min(1)
          .max(1000)
          .default(DEFAULT_BREAKER_FAILURES)
          .meta(doc('Consecutive failures that open the circuit breaker: Redis is no longer asked and counts are local.')),
        cool_down: boundedDuration(10, 3_600_000)
          .prefault(DEFAULT_BREAKER_COOL_DOWN)
          .meta(doc('While the breaker is open, how often a background probe tries Redis again.')),
      }),
    ).meta(doc('The circuit breaker that stops asking a failing Redis.')),
  })
  .superRefine((r, ctx) => {
    if ([r.url, r.cluster_nodes, r.sentinels].filter((x) => x !== undefined).length !== 1) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of url, cluster_nodes or sentinels' });
    }
    if ((r.sentinels === undefined) !== (r.sentinel_name === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'sentinels and sentinel_name go together', path: [r.sentinels === undefined ? 'sentinel_name' : 'sentinels'] });
    }
  })
  .transform(
    (r): RedisSettings => compact({
      url: r.url,
      clusterNodes: r.cluster_nodes?.map((s) => parseHostPort(s) as HostPort),
      sentinels: r.sentinels?.map((s) => parseHostPort(s) as HostPort),
      sentinelName: r.sentinel_name,
      password: r.password,
      keyPrefix: r.key_prefix,
      timeoutMs: r.timeout,
      connections: r.connections,
      breaker: { failures: r.breaker.failures, coolDownMs: r.breaker.cool_down },
    }),
  )
  .meta(doc('The shared Redis store: required by backend redis (docs/redis.md).'));

const snapshotSection = z
  .strictObject({
    file: absolutePath('snapshot file must be an absolute path').meta(doc('Where the counters are saved (written to a temporary file and renamed).')),
    interval: boundedDuration(1000, 86_400_000).prefault(DEFAULT_SNAPSHOT_INTERVAL).meta(doc('How often the counters are saved while running.')),
  })
  .transform((s) => ({ file: s.file, intervalMs: s.interval }))
  .meta(doc('Save the local (memory) counters periodically and at a clean stop, and restore them at start, so a restart during an attack keeps its limits.'));

/** Sizes: a number of bytes or "500MB", "2GB", "10k". */
const byteSize = z.unknown().transform((v, ctx) => {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim()) : null;
  if (m === null) {
    ctx.addIssue({ code: 'custom', message: `invalid size ${JSON.stringify(v)}: write e.g. 500MB, 2GB or a number of bytes` });
    return z.NEVER;
  }
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * unit);
}).meta({ valueType: 'size', allowed: 'bytes, or a number with k, MB, GB, TB (powers of 1024)' } satisfies OptionMeta);

/** A tier's thresholds for one signal; `worse` says in which direction the reading gets worse. */
const tierLevels = <T extends z.ZodType>(value: T, worse: 'above' | 'below', description: string) =>
  z
    .strictObject({
      delay: value.optional().meta(doc(`Enter tier delay at or ${worse} this reading.`)),
      shed: value.optional().meta(doc(`Enter tier shed at or ${worse} this reading.`)),
      refuse: value.optional().meta(doc(`Enter tier refuse at or ${worse} this reading.`)),
    })
    .transform((t) => compact({ ...t }))
    .meta(doc(description));

const loadSection = z
  .strictObject({
    sample_interval: boundedDuration(100, 600_000).prefault('5s').meta(doc('How often load, event-loop lag, queue free space and depth are sampled.')),
    hold: boundedDuration(0, 86_400_000).prefault('60s').meta(doc('How long it must stay calm before the tier steps down one level (hysteresis).')),
    calm_ratio: z
      .number({ error: 'expected a number' })
      .gt(0)
      .lt(1)
      .default(0.8)
      .meta(doc("Calm means every reading is on the good side of this share of the current tier's threshold.")),
    delay: boundedDuration(0, MAX_RULE_DELAY_MS).prefault('1s').meta(doc('Answer delay at connect, mail and rcpt in tier delay and above.')),
    queue_filesystem: absolutePath('must be an absolute path').optional().meta(doc('The filesystem whose free space queue_free reads (the MTA queue).')),
    queue_directories: z
      .array(z.string().regex(/^\/[^\0]*$/, 'must be an absolute path').meta({ valueType: 'file path', allowed: 'absolute path' } satisfies OptionMeta))
      .default([])
      .meta(doc('Queue directories whose files queue_depth counts (e.g. incoming, active, deferred).')),
    thresholds: z
      .strictObject({
        load_per_cpu: tierLevels(z.number({ error: 'expected a number' }).positive(), 'above', 'Load average (1 min) divided by the number of CPUs.').optional(),
        event_loop_lag: tierLevels(boundedDuration(1, 60_000), 'above', "Levee's own event-loop lag (p99 over the last sampling period).").optional(),
        queue_free: tierLevels(byteSize, 'below', 'Free space on queue_filesystem (needs queue_filesystem).').optional(),
        queue_depth: tierLevels(z.int({ error: 'expected a whole number' }).positive(), 'above', 'Files in queue_directories (needs queue_directories).').optional(),
        stress_share: tierLevels(
          z.number({ error: 'expected a number between 0 and 1' }).gt(0).max(1),
          'above',
          'Share of recent policy requests on which Postfix said stress=yes.',
        ).optional(),
      })
      .default({})
      .meta(doc('When to step up a tier, per signal; the worst signal sets the tier. Empty: tiers are off and the tier stays normal.')),
  })
  .superRefine((l, ctx) => {
    if (l.thresholds.queue_free !== undefined && l.queue_filesystem === undefined) {
      ctx.addIssue({ code: 'custom', message: 'queue_free thresholds need queue_filesystem', path: ['thresholds', 'queue_free'] });
    }
    if (l.thresholds.queue_depth !== undefined && l.queue_directories.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'queue_depth thresholds need queue_directories', path: ['thresholds', 'queue_depth'] });
    }
  })
  .transform(
    (l): LoadSettings => ({
      sampleIntervalMs: l.sample_interval,
      holdMs: l.hold,
      calmRatio: l.calm_ratio,
      delayMs: l.delay,
      queueFilesystem: l.queue_filesystem,
      queueDirectories: l.queue_directories,
      thresholds: compact<Record<string, unknown>>({
        loadPerCpu: l.thresholds.load_per_cpu,
        eventLoopLagMs: l.thresholds.event_loop_lag,
        queueFreeBytes: l.thresholds.queue_free,
        queueDepth: l.thresholds.queue_depth,
        stressShare: l.thresholds.stress_share,
      }) as TierThresholds,
    }),
  );

/** Postfix's own tools; `levee release`/`drop` run them as the admin (postsuper needs root). */
export const DEFAULT_RELEASE_COMMAND = ['postsuper', '-H', '{queue_id}'];
export const DEFAULT_DROP_COMMAND = ['postsuper', '-d', '{queue_id}', 'hold'];

/** An argv list: a program and its arguments, never a shell line. */
const argv = (what: string, mustHave?: string) =>
  z
    .array(z.string({ error: 'expected a string' }).min(1, 'empty argument').refine((a) => !a.includes('\0'), 'argument contains NUL'), {
      error: `expected ${what} as a list: [program, argument, ...]`,
    })
    .min(1, `${what} needs at least the program`)
    .superRefine((a, ctx) => {
      if (mustHave !== undefined && !a.some((x) => x.includes(mustHave))) ctx.addIssue({ code: 'custom', message: `${what} must contain ${mustHave}` });
    });

const ADDRESS_RE = /^[^\s@<>]+@[^\s@<>]+$/;
const mailAddress = checkedString((s) => (ADDRESS_RE.test(s) ? undefined : `"${s}" is not a mail address like postmaster@example.org`), 'mail address');

const heldSection = z
  .strictObject({
    retention: boundedDuration(60_000, 365 * 86_400_000)
      .prefault('7d')
      .meta(doc('How long Levee remembers a held message (answered quarantine) for `levee held`; the mail itself stays in the MTA.')),
    max_records: z
      .int({ error: 'expected a whole number' })
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .meta(doc('The most held-message records kept; the oldest go first.')),
    release_command: argv('release_command', '{queue_id}')
      .default(DEFAULT_RELEASE_COMMAND)
      .meta(doc('What `levee release` runs, as the admin who runs it (postsuper needs root): a program and its arguments, no shell; `{queue_id}` and `{id}` are replaced.', { valueType: 'list of strings' })),
    drop_command: argv('drop_command', '{queue_id}')
      .default(DEFAULT_DROP_COMMAND)
      .meta(doc('What `levee drop` runs, like release_command.', { valueType: 'list of strings' })),
  })
  .transform(
    (h): HeldSettings => ({ retentionMs: h.retention, maxRecords: h.max_records, releaseCommand: h.release_command, dropCommand: h.drop_command }),
  );

const notifySection = z
  .strictObject({
    command: argv('notify.command')
      .optional()
      .meta(doc('Run when a customer is warned or held (contain): the notice on stdin; LEVEE_EVENT, LEVEE_RULE, LEVEE_SUBJECT, LEVEE_COUNT, LEVEE_LIMIT, LEVEE_UNTIL set; killed after 10 s.', { valueType: 'list of strings' })),
    mail: z
      .strictObject({
        to: mailAddress.meta(doc('The postmaster address the notice goes to.', { valueType: 'mail address' })),
        from: mailAddress.optional().meta(doc('The notice\'s sender.', { valueType: 'mail address', defaultText: 'the `to` address' })),
        smtp: metricsListen.prefault('127.0.0.1:25').meta(doc('The local MTA, plain SMTP.', { valueType: '"HOST:PORT"' })),
      })
      .superRefine((m, ctx) => {
        if (m.smtp === false) ctx.addIssue({ code: 'custom', message: 'smtp must be HOST:PORT of the local MTA', path: ['smtp'] });
      })
      .transform((m) => ({ to: m.to, from: m.from ?? m.to, smtp: m.smtp as HostPort }))
      .optional()
      .meta(doc('The notice as a mail through the local MTA.')),
    max_per_hour: z
      .int({ error: 'expected a whole number' })
      .min(1)
      .max(10_000)
      .default(60)
      .meta(doc('Notices beyond this many an hour are only logged.')),
  })
  .transform((n): NotifySettings => ({ command: n.command, mail: n.mail, maxPerHour: n.max_per_hour }));

// ---- defences: built-in rule families (defences.ts) --------------------------

/** `family: true` switches a family on with its defaults; false or absent: off. */
function family<T extends z.ZodType>(options: T) {
  return z.preprocess((v) => (v === true ? {} : v === false || v === null ? undefined : v), options.optional());
}

/** A rate's fields, each with its default. */
const rateFields = (max: number, window: string, what: string) =>
  z.strictObject({
    max: count.default(max).meta(doc(`At most this many ${what} in the window.`)),
    window: duration.prefault(window).meta(doc('Length of the sliding window.')),
  });

/** A rate with defaults for what is left out: absent or `{}` is the default rate. */
const rate = (max: number, window: string, what: string) =>
  rateFields(max, window, what)
    .prefault({})
    .transform((r): RateSpec => ({ max: r.max, windowMs: r.window }))
    .meta(doc(`${what} allowed per window.`, { defaultText: `${max} in ${window}` }));

/** A rate that can also be switched off with false (absent or true: the default rate); resolved by onRate. */
const switchableRate = (max: number, window: string, what: string) =>
  z
    .union([z.boolean(), rateFields(max, window, what)])
    .optional()
    .meta(doc(`${what} allowed per window; false: not limited.`, { defaultText: `${max} in ${window}`, valueType: '{ max, window } or false' }));

function onRate(v: boolean | { max: number; window: number } | undefined, max: number, window: string): RateSpec | undefined {
  if (v === false) return undefined;
  if (v === true || v === undefined) return { max, windowMs: parseDuration(window) ?? 0 };
  return { max: v.max, windowMs: v.window };
}

const defencesSection = z
  .strictObject({
    exempt: stringList(cidrItem, true)
      .default(['127.0.0.0/8', '::1'])
      .meta(doc('Client networks no defence applies to (your own hosts), except contain: a stolen password sends through your own webmail.', { defaultText: '["127.0.0.0/8", "::1"]' })),
    connection_floods: family(
      z.strictObject({
        per_client: rate(30, '1m', 'new connections per client address'),
        per_network: rate(100, '1m', 'new connections per client /24 (IPv6 /64)'),
        client_concurrency: z.int().min(1).default(10).meta(doc('Open connections per client address (milter only: it sees connections close).')),
        total_concurrency: z.int().min(1).optional().meta(doc('Open connections in all, like sendmail MaxDaemonChildren (milter only).')),
        tarpit: boundedDuration(0, MAX_RULE_DELAY_MS).prefault('1s').meta(doc('Wait this long before refusing an over-limit client.')),
      }),
    ).meta(doc('Connection floods: 421 4.7.0 past the per-client and per-network rates and concurrency (Postfix asks at CONNECT only with smtpd_delay_reject = no).')),
    dictionary_attack: family(rate(10, '10m', 'unknown recipients per client')).meta(
      doc('Many unknown recipients from one client (dictionary attack, Joe job): 550 5.7.1 to the rest of its mail. Needs recipients.file.', { defaultText: 'off; true: 10 in 10m' }),
    ),
    unknown_recipients: family(z.strictObject({})).meta(doc('Unknown recipients get 550 5.1.1, never 4xx. Needs recipients.file.')),
    bounce_storms: family(
      z.strictObject({
        per_client: rate(30, '10m', 'bounces (null sender) per client address'),
        per_recipient: rate(10, '1h', 'bounces per recipient'),
      }),
    ).meta(doc('Bounce storms (backscatter): 450 4.7.1 past the rates.')),
    batv_bounces: family(z.strictObject({})).meta(doc('Bounces to addresses of batv.domains without a valid BATV tag: 550 5.7.1. Needs the batv section.')),
    forged_bounces: family(
      z.strictObject({
        our_hosts: stringList(z.string().regex(/^[A-Za-z0-9.-]+$/, 'expected a host name')).meta(doc('Names of your MX/relay hosts as they appear in Received lines.')),
      }),
    ).meta(doc('A bounce whose returned headers never passed our_hosts answers mail sent in your name by someone else: 550 5.7.1 (milter).')),
    worms: family(
      z.strictObject({
        attachments: stringList(patternItem('filename')).default(DEFAULT_WORM_ATTACHMENTS).meta(doc('Attachment names (also inside zip archives) that are worms.')),
        action: z.enum(['discard', 'reject', 'quarantine']).default('discard').meta(doc('Never bounce: drop, refuse at SMTP time, or hold.')),
      }),
    ).meta(doc('Worm mail by attachment name (milter): never delivered, never bounced.')),
    av_notices: family(z.strictObject({})).meta(doc('Anti-virus "virus found" notices (to forged senders): discarded (milter).')),
    auto_replies: family(z.strictObject({})).meta(doc('Auto-replies (RFC 3834 Auto-Submitted, X-Autoreply) to mail our users did not send: discarded unless BATV shows it left here (milter).')),
    contain: family(
      z.strictObject({
        messages: switchableRate(300, '1h', 'messages per customer'),
        recipients: switchableRate(1000, '1h', 'recipients per customer'),
        domains: switchableRate(100, '1h', 'distinct recipient domains per customer'),
        local_networks: stringList(cidrItem, true).default([]).meta(doc('Your customers\' networks that relay without SMTP AUTH: contained per client address.')),
        grace: boundedDuration(0, 30 * 86_400_000).prefault('15m').meta(doc('Warn only for this long after the first trip.')),
        hold_for: boundedDuration(1000, 30 * 86_400_000).prefault('2h').meta(doc('Then hold the customer\'s mail this long.')),
      }),
    ).meta(doc('Contain the infected customer: per SASL user (and per address of local_networks), warn, hold after grace, expire (cookbook recipe 5).')),
  })
  .transform(
    (d): DefencesConfig =>
      compact({
        exempt: d.exempt as string[],
        connectionFloods:
          d.connection_floods === undefined
            ? undefined
            : {
                perClient: d.connection_floods.per_client,
                perNetwork: d.connection_floods.per_network,
                clientConcurrency: d.connection_floods.client_concurrency,
                totalConcurrency: d.connection_floods.total_concurrency,
                tarpitMs: d.connection_floods.tarpit,
              },
        dictionaryAttack: d.dictionary_attack,
        unknownRecipients: d.unknown_recipients,
        bounceStorms: d.bounce_storms === undefined ? undefined : { perClient: d.bounce_storms.per_client, perRecipient: d.bounce_storms.per_recipient },
        batvBounces: d.batv_bounces,
        forgedBounces: d.forged_bounces === undefined ? undefined : { ourHosts: d.forged_bounces.our_hosts as string[] },
        worms: d.worms === undefined ? undefined : { attachments: d.worms.attachments as string[], action: d.worms.action },
        avNotices: d.av_notices,
        autoReplies: d.auto_replies,
        contain:
          d.contain === undefined
            ? undefined
            : {
                messages: onRate(d.contain.messages, 300, '1h'),
                recipients: onRate(d.contain.recipients, 1000, '1h'),
                domains: onRate(d.contain.domains, 100, '1h'),
                localNetworks: d.contain.local_networks as string[],
                graceMs: d.contain.grace,
                holdMs: d.contain.hold_for,
              },
      }) as DefencesConfig,
  );

export const configSchema = z
  .strictObject({
    listen: section(
      z.strictObject({
        policy: listenList
          .prefault([DEFAULT_POLICY_LISTEN])
          .meta(doc('Postfix policy service listeners (`check_policy_service`); a unix socket is created mode 0660, a stale one left by a crash is replaced, a live one never taken over. `[]`: off.')),
        milter: listenList
          .prefault([DEFAULT_MILTER_LISTEN])
          .meta(doc('Milter listeners (Postfix `smtpd_milters`, sendmail `INPUT_MAIL_FILTER`), same syntax. `[]`: off.')),
      }),
    ).meta(doc('Where the MTAs connect. Read at start only: a change needs a restart (a reload logs a warning).')),
    metrics: section(
      z.strictObject({
        listen: metricsListen
          .prefault(DEFAULT_METRICS_LISTEN)
          .meta(doc('Prometheus `/metrics` and `/healthz` over HTTP; false: off. Read at start only.')),
      }),
    ).meta(doc('The Prometheus endpoint (docs/operations.md lists the metrics).')),
    counters: section(
      z
        .strictObject({
          backend: z
            .enum(['memory', 'redis'], { error: 'expected "memory" or "redis"' })
            .default('memory')
            .meta(doc("Where rate counters live: this host's memory, or Redis, shared between MX hosts.")),
          max_keys: z
            .int({ error: 'expected a whole number' })
            .min(1)
            .max(100_000_000)
            .default(DEFAULT_MAX_KEYS)
            .meta(doc('The most counter keys kept locally (every counter with memory, the fallback with redis); the least recently used is evicted, so a flood of random addresses cannot exhaust memory.')),
          redis: redisSection.optional(),
          snapshot: snapshotSection.optional(),
        })
        .superRefine((c, ctx) => {
          if (c.backend === 'redis' && c.redis === undefined) {
            ctx.addIssue({ code: 'custom', message: 'backend redis needs a counters.redis section with url, cluster_nodes or sentinels', path: ['backend'] });
          }
        }),
    ).meta(doc('Rate counters. Read at start only: a change needs a restart (a reload logs a warning).')),
    log: section(
      z.strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .meta(doc('info writes one JSON line per decision; warn only problems. `levee run --log-level` overrides it.')),
        buffered: z
          .boolean({ error: 'expected true or false' })
          .default(true)
          .meta(doc('Write log lines to stdout in blocks, at least every second and at every exit; false writes each line at once (even a kill -9 loses none), at some CPU per decision.')),
        redact: stringList(z.enum(REDACT_FIELDS as [RedactField, ...RedactField[]], { error: `expected ${REDACT_FIELDS.join(', ')}` }), true)
          .transform((l) => [...new Set(l)])
          .default([])
          .meta(doc('Personal values shown as a keyed hash (`~` and 12 hex digits; addresses keep their domain) in log lines, counter keys shown by `levee top` and `levee report` samples.', { valueType: `list of: ${REDACT_FIELDS.join(', ')}` })),
        redact_key_file: absolutePath('redact_key_file must be an absolute path')
          .optional()
          .meta(doc('The key of those hashes (at least 16 characters), so tokens stay the same across restarts; without it a new key is drawn at each start.')),
      }),
    ).meta(doc('JSON log lines on stdout.')),
    policy: section(
      z.strictObject({
        fail_action: z
          .enum(['continue', 'tempfail'])
          .default('continue')
          .meta(doc('The answer when a decision fails inside Levee or a request cannot be decided: continue (DUNNO / SMFIR_CONTINUE, fail open) or tempfail (451 4.3.0, fail closed). Policy and milter alike.')),
        idle_timeout: duration
          .prefault(DEFAULT_IDLE_TIMEOUT)
          .meta(doc("Close a policy connection idle this long; keep it above Postfix's smtpd_policy_service_max_idle (300s) so Postfix closes first.")),
        max_connections: maxConnections.meta(
          doc('Open policy connections at most, per listener; a connection beyond it is closed at once (Postfix retries, then applies smtpd_policy_service_default_action), counted in levee_connections_refused_total. Changes apply at reload.'),
        ),
      }),
    ).meta(doc('How the listeners answer when things go wrong.')),
    milter: section(
      z.strictObject({
        idle_timeout: duration
          .prefault(DEFAULT_MILTER_IDLE_TIMEOUT)
          .meta(doc("Close a milter connection on which the MTA has sent nothing this long (libmilter's default, 7210s); keep it above the MTA's own SMTP command timeouts, since the milter connection lasts the whole SMTP session. Applies to connections opened after a reload.")),
        max_connections: maxConnections.meta(
          doc('Open milter connections at most, per listener; a connection beyond it is closed at once (the MTA applies milter_default_action or the F= flag), counted in levee_connections_refused_total. Changes apply at reload.'),
        ),
      }),
    ).meta(doc('Limits of the milter listeners (the failure answer is policy.fail_action).')),
    load: section(loadSection).meta(doc('Outbreak mode: sample load and queue pressure and step through tiers normal, delay (slow answers), shed (skip content checks), refuse (tempfail new connections), with hysteresis.')),
    batv: z
      .strictObject({
        secret_file: absolutePath('secret_file must be an absolute path').meta(doc('File holding the signing secret, at least 16 characters; read at start and reload.')),
        key_id: z
          .int({ error: 'expected a whole number 0-9' })
          .min(0)
          .max(9)
          .default(0)
          .meta(doc('Carried in every tag, so the secret can be rotated.')),
        domains: stringList(checkedString((d) => (/^[a-z0-9.-]+\.[a-z]{2,}$/i.test(d) ? undefined : `"${d}" is not a domain`), 'domain')).meta(
          doc('Envelope senders in these domains are signed; bounces to them are checked.'),
        ),
        valid_days: z
          .int({ error: 'expected a whole number of days' })
          .min(1)
          .max(30)
          .default(7)
          .meta(doc('How many days a signed address accepts bounces.')),
        sign_clients: stringList(cidrItem, true)
          .default([])
          .meta(doc('Besides authenticated clients, mail from these networks (your own hosts) is signed.', { defaultText: '`[]`' })),
      })
      .transform(
        (b): BatvSettings => ({
          secretFile: b.secret_file,
          keyId: b.key_id,
          domains: b.domains.map((d: string) => d.toLowerCase()),
          validDays: b.valid_days,
          signClients: b.sign_clients as string[],
        }),
      )
      .optional()
      .meta(doc('BATV (bounce address tag validation): sign outbound envelope senders (milter CHGFROM) and give bounces to those domains the fact `batv`. Absent: off.')),
    admin: section(
      z
        .strictObject({
          listen: metricsListen
            .prefault(DEFAULT_ADMIN_LISTEN)
            .meta(doc('The admin endpoint over HTTP behind `levee status`, `top`, `blocks`, `block`, `unblock`, `report`; false: off.')),
          token_file: absolutePath('token_file must be an absolute path')
            .optional()
            .meta(doc('File holding the bearer token (at least 16 characters) that `levee block` and `unblock` must present; without it, changes are refused (403).')),
        })
        .transform((a) => ({ listen: a.listen, tokenFile: a.token_file })),
    ).meta(doc('The admin endpoint: read-only without a token.')),
    held: section(heldSection).meta(doc('Mail answered quarantine (held in the MTA) and the commands `levee release` / `levee drop` run.')),
    notify: section(notifySection).meta(doc('How the postmaster hears that a customer was warned or held (rules with contain).')),
    recipients: section(
      z
        .strictObject({
          file: absolutePath('recipients file must be an absolute path')
            .optional()
            .meta(doc('The recipient directory: which recipients exist, for the condition recipient_status. One entry per line: `@example.org` (our domain), `alice@example.org`, `@example.net *` (a catch-all domain), `!old@example.net` (except this address).')),
        })
        .transform((r) => ({ file: r.file })),
    ).meta(doc('Who exists, so unknown recipients can get 550 5.1.1 rather than a 4xx.')),
    defences: section(defencesSection).meta(doc('Built-in rule families, one per defence, switched on with true or tuned; they run before rules (docs/cookbook.md).')),
    // `rules:` with every rule commented out is an empty list, not an error.
    rules: z
      .preprocess((v) => v ?? [], z.array(rule, { error: 'expected a list of rules' }))
      .meta(doc('The rules, in order. A rule without limit decides as soon as it applies (first match wins); a limit rule decides when its counter is over max. When no rule decides the answer is continue. Absent: no rules at all (the built-in set is only in the embedded defaults).', { defaultText: '`[]`' })),
  })
  .superRefine((c, ctx) => {
    const needs = (on: unknown, family: string, what: string, present: boolean): void => {
      if (on !== undefined && !present) ctx.addIssue({ code: 'custom', message: `needs ${what}`, path: ['defences', family] });
    };
    needs(c.defences.unknownRecipients, 'unknown_recipients', 'recipients.file (the list of your users)', c.recipients.file !== undefined);
    needs(c.defences.dictionaryAttack, 'dictionary_attack', 'recipients.file (to know a recipient is unknown)', c.recipients.file !== undefined);
    needs(c.defences.batvBounces, 'batv_bounces', 'the batv section', c.batv !== undefined);
    const seen = new Map<string, number>();
    c.rules.forEach((r, i) => {
      if (isDefenceRuleName(r.name)) {
        ctx.addIssue({ code: 'custom', message: `rule names starting with "defence." are the defences section's`, path: ['rules', i, 'name'] });
      }
      const first = seen.get(r.name);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', message: `duplicate rule name "${r.name}" (first used by rules.${first})`, path: ['rules', i, 'name'] });
      } else {
        seen.set(r.name, i);
      }
    });
  })
  .transform(
    (c): LeveeConfig => ({
      listen: { policy: c.listen.policy, milter: c.listen.milter },
      metrics: { listen: c.metrics.listen },
      counters: compact({ backend: c.counters.backend, maxKeys: c.counters.max_keys, redis: c.counters.redis, snapshot: c.counters.snapshot }),
      log: { level: c.log.level, buffered: c.log.buffered, redact: c.log.redact, redactKeyFile: c.log.redact_key_file },
      policy: { failAction: c.policy.fail_action, idleTimeoutMs: c.policy.idle_timeout, maxConnections: c.policy.max_connections },
      milter: { idleTimeoutMs: c.milter.idle_timeout, maxConnections: c.milter.max_connections },
      recipients: { file: c.recipients.file },
      load: c.load,
      batv: c.batv,
      admin: c.admin,
      held: c.held,
      notify: c.notify,
      rules: [...defenceRules(c.defences), ...c.rules],
    }),
  );

/** The rules of the defences switched on, through the same rule schema as `rules:` (a failure here is Levee's bug). */
function defenceRules(d: DefencesConfig): RuleConfig[] {
  const parsed = z.array(rule).safeParse(expandDefences(d));
  if (!parsed.success) throw new Error(`defences expanded to an invalid rule: ${parsed.error.message}`);
  return parsed.data;
}
