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
import { parseKeyTemplate } from './key-template.js';
import { formatDuration, parseDuration } from './duration.js';
import { completeReply, replyClassForAction, validateReply, validateReplyText } from './reply.js';
import { DEFAULT_BUCKETS } from './sliding-window.js';

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
  readonly policy: { readonly failAction: FailAction; readonly idleTimeoutMs: number };
  /** The recipient directory (recipient-directory.ts); the daemon reads the file. */
  readonly recipients: { readonly file: string | undefined };
  readonly load: LoadSettings;
  /** BATV: sign outbound envelope senders of these domains, verify bounces to them. */
  readonly batv: BatvSettings | undefined;
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

/** Drop keys whose value is undefined, so a printed config shows only what is set. */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** A string or a non-empty list of strings; always a list after parsing. */
function stringList<T extends z.ZodType<unknown, string>>(item: T, allowEmpty = false) {
  return z.preprocess(
    (v) => (typeof v === 'string' ? [v] : v),
    z.array(item, { error: 'expected a string or a list of strings' }).min(allowEmpty ? 0 : 1, 'list must not be empty'),
  );
}

function checkedString(check: (s: string) => string | undefined) {
  return z.string({ error: 'expected a string' }).superRefine((s, ctx) => {
    const m = check(s);
    if (m !== undefined) ctx.addIssue({ code: 'custom', message: m });
  });
}

const cidrItem = checkedString((s) => {
  const c = parseCidr(s);
  if (c === undefined) return `"${s}" is not an IP address or CIDR network`;
  if (cidrHasHostBits(s)) return `"${s}" has host bits set; did you mean ${formatCidr(c)}?`;
  return undefined;
});

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
});

function replyTextProblemForHeader(value: string): string | undefined {
  // The same single-line, no-control-character rule as reply text.
  return validateReplyText(value)?.replace('reply text', 'header value');
}

const patternItem = (field: PatternField) => checkedString((s) => checkPattern(s, field));

// An empty list is allowed: it turns that listener off.
const listenList = stringList(
  checkedString((s) => {
    const r = parseListenAddress(s);
    return typeof r === 'string' ? r : undefined;
  }),
  true,
).transform((l) => l.map((s) => parseListenAddress(s) as ListenAddress));

const duration = z.unknown().transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)}: write e.g. 500ms, 60s, 5m, 1h, 1d or a number of milliseconds` });
    return z.NEVER;
  }
  return ms;
});

const count = z.int({ error: 'expected a whole number' }).min(0, 'must be 0 or more');

const range = z
  .strictObject({ min: count.optional(), max: count.optional() })
  .superRefine((r, ctx) => {
    if (r.min === undefined && r.max === undefined) ctx.addIssue({ code: 'custom', message: 'give min, max or both' });
    else if (r.min !== undefined && r.max !== undefined && r.min > r.max) {
      ctx.addIssue({ code: 'custom', message: `min ${r.min} is greater than max ${r.max}`, path: ['min'] });
    }
  })
  .transform((r): NumberRange => compact({ min: r.min, max: r.max }));

const conditions = z
  .strictObject({
    client_address: stringList(cidrItem).optional(),
    client_name: stringList(patternItem('host')).optional(),
    helo_name: stringList(patternItem('host')).optional(),
    sender: stringList(patternItem('address')).optional(),
    recipient: stringList(patternItem('address')).optional(),
    sasl_username: stringList(patternItem('username')).optional(),
    null_sender: z.boolean({ error: 'expected true or false' }).optional(),
    authenticated: z.boolean({ error: 'expected true or false' }).optional(),
    size: range.optional(),
    recipient_count: range.optional(),
    protocol: z.enum(['policy', 'milter']).optional(),
    stress: z.boolean({ error: 'expected true or false' }).optional(),
    client_concurrency: range.optional(),
    total_concurrency: range.optional(),
    header: z
      .record(z.string().regex(HEADER_NAME_RE, 'header names are printable ASCII without ":" or spaces'), stringList(patternItem('text')), {
        error: 'expected a map of header name to patterns',
      })
      .optional(),
    attachment_name: stringList(patternItem('filename')).optional(),
    attachment_type: stringList(patternItem('text')).optional(),
    recipient_status: stringList(z.enum(['known', 'unknown', 'foreign'], { error: 'expected known, unknown or foreign' })).optional(),
    tier: stringList(z.enum(['normal', 'delay', 'shed', 'refuse'], { error: 'expected normal, delay, shed or refuse' })).optional(),
    report: stringList(patternItem('text')).optional(),
    batv: stringList(z.enum(['valid', 'expired', 'bad-signature', 'unknown-key', 'unsigned'], { error: 'expected valid, expired, bad-signature, unknown-key or unsigned' })).optional(),
    returns_headers: z.boolean({ error: 'expected true or false' }).optional(),
    returned_received: stringList(patternItem('text')).optional(),
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
  );

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

const keyTemplate = z.string({ error: 'expected a string' }).superRefine((s, ctx) => {
  const r = parseKeyTemplate(s);
  if (!r.ok) ctx.addIssue({ code: 'custom', message: r.message, params: { offset: r.offset } });
});

const MAX_BUCKETS = 1000;

const limit = z
  .strictObject({
    key: keyTemplate,
    max: count,
    window: duration,
    buckets: z.int({ error: 'expected a whole number' }).min(1, 'at least 1 bucket').max(MAX_BUCKETS, `at most ${MAX_BUCKETS} buckets`).default(DEFAULT_BUCKETS),
    count: z.enum(['requests', 'recipients', 'bytes']).default('requests'),
    count_if: conditions.optional(),
  })
  .superRefine((l, ctx) => {
    if (l.window < l.buckets) {
      ctx.addIssue({ code: 'custom', message: `window ${formatDuration(l.window)} is shorter than ${l.buckets} buckets of 1ms`, path: ['window'] });
    }
  })
  .transform((l): LimitConfig => compact({ key: l.key, max: l.max, windowMs: l.window, buckets: l.buckets, count: l.count, countIf: l.count_if }));

const stage = z.enum(STAGES as readonly Stage[] as [Stage, ...Stage[]]);

const RULE_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

const rule = z
  .strictObject({
    name: z.string({ error: 'expected a string' }).regex(RULE_NAME_RE, 'rule name must be 1-64 characters of A-Z a-z 0-9 _ . -'),
    description: z.string({ error: 'expected a string' }).max(1000).optional(),
    stage: stringList(stage).optional(),
    mode: z.enum(['enforce', 'warn']).default('enforce'),
    match: conditions.optional(),
    unless: conditions.optional(),
    limit: limit.optional(),
    action: z.enum(ACTIONS as readonly Action[] as [Action, ...Action[]]),
    code: z.int({ error: 'expected a whole number' }).optional(),
    enhanced_code: z.string({ error: 'expected a string like "5.7.1"' }).optional(),
    text: z.string({ error: 'expected a string' }).optional(),
    add_header: stringList(headerLine).optional(),
    on_store_error: z.enum(['fail_open', 'fail_closed']).optional(),
    delay: duration
      .superRefine((ms, ctx) => {
        if (ms > MAX_RULE_DELAY_MS) ctx.addIssue({ code: 'custom', message: `at most ${formatDuration(MAX_RULE_DELAY_MS)}: MTAs give up waiting for an answer` });
      })
      .optional(),
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
});

export const DEFAULT_POLICY_LISTEN = 'inet:127.0.0.1:10031';
export const DEFAULT_MILTER_LISTEN = 'inet:127.0.0.1:8891';
export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9469';
/** Read-only without a token: status, top, the block list. Changes need admin.token_file. */
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:9470';
export const DEFAULT_MAX_KEYS = 1_000_000;
/** Just above Postfix's smtpd_policy_service_max_idle (300s), so Postfix closes idle connections first. */
export const DEFAULT_IDLE_TIMEOUT = '330s';

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
export const DEFAULT_BREAKER_COOL_DOWN = '5s';
export const DEFAULT_SNAPSHOT_INTERVAL = '60s';

/** A duration within [min, max] ms. */
function boundedDuration(min: number, max: number) {
  return duration.superRefine((ms, ctx) => {
    if (ms < min || ms > max) ctx.addIssue({ code: 'custom', message: `must be between ${formatDuration(min)} and ${formatDuration(max)}` });
  });
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
});

const hostPortItem = checkedString((s) => {
  const r = parseHostPort(s);
  return typeof r === 'string' ? r : undefined;
});

const redisSection = z
  .strictObject({
    url: redisUrl.optional(),
    cluster_nodes: stringList(hostPortItem).optional(),
    sentinels: stringList(hostPortItem).optional(),
    sentinel_name: z.string({ error: 'expected a string' }).regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a Sentinel master name').optional(),
    password: z.string({ error: 'expected a string' }).optional(),
    // A "{" or "}" in the prefix would make the prefix the hash tag and put every key in one Cluster slot.
    key_prefix: z
      .string({ error: 'expected a string' })
      .max(64, 'at most 64 characters')
      .regex(/^[^{}\s]*$/, 'key_prefix must not contain "{", "}" or white space (they would break the hash tag)')
      .default(DEFAULT_REDIS_KEY_PREFIX),
    timeout: boundedDuration(1, 10_000).prefault(DEFAULT_REDIS_TIMEOUT),
    breaker: section(
      z.strictObject({
        failures: z.int({ error: 'expected a whole number' }).min(1).max(1000).default(DEFAULT_BREAKER_FAILURES),
        cool_down: boundedDuration(10, 3_600_000).prefault(DEFAULT_BREAKER_COOL_DOWN),
      }),
    ),
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
      breaker: { failures: r.breaker.failures, coolDownMs: r.breaker.cool_down },
    }),
  );

const snapshotSection = z
  .strictObject({
    file: z.string({ error: 'expected an absolute path' }).regex(/^\/[^\0]*$/, 'snapshot file must be an absolute path'),
    interval: boundedDuration(1000, 86_400_000).prefault(DEFAULT_SNAPSHOT_INTERVAL),
  })
  .transform((s) => ({ file: s.file, intervalMs: s.interval }));

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
});

const tierLevels = <T extends z.ZodType>(value: T) =>
  z.strictObject({ delay: value.optional(), shed: value.optional(), refuse: value.optional() }).transform((t) => compact({ ...t }));

const loadSection = z
  .strictObject({
    sample_interval: boundedDuration(100, 600_000).prefault('5s'),
    hold: boundedDuration(0, 86_400_000).prefault('60s'),
    calm_ratio: z.number({ error: 'expected a number' }).gt(0).lt(1).default(0.8),
    delay: boundedDuration(0, MAX_RULE_DELAY_MS).prefault('1s'),
    queue_filesystem: z.string({ error: 'expected an absolute path' }).regex(/^\/[^\0]*$/, 'must be an absolute path').optional(),
    queue_directories: z.array(z.string().regex(/^\/[^\0]*$/, 'must be an absolute path')).default([]),
    thresholds: z
      .strictObject({
        load_per_cpu: tierLevels(z.number({ error: 'expected a number' }).positive()).optional(),
        event_loop_lag: tierLevels(boundedDuration(1, 60_000)).optional(),
        queue_free: tierLevels(byteSize).optional(),
        queue_depth: tierLevels(z.int({ error: 'expected a whole number' }).positive()).optional(),
        stress_share: tierLevels(z.number({ error: 'expected a number between 0 and 1' }).gt(0).max(1)).optional(),
      })
      .default({}),
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

export const configSchema = z
  .strictObject({
    listen: section(
      z.strictObject({
        policy: listenList.prefault([DEFAULT_POLICY_LISTEN]),
        milter: listenList.prefault([DEFAULT_MILTER_LISTEN]),
      }),
    ),
    metrics: section(z.strictObject({ listen: metricsListen.prefault(DEFAULT_METRICS_LISTEN) })),
    counters: section(
      z
        .strictObject({
          backend: z.enum(['memory', 'redis'], { error: 'expected "memory" or "redis"' }).default('memory'),
          max_keys: z.int({ error: 'expected a whole number' }).min(1).max(100_000_000).default(DEFAULT_MAX_KEYS),
          redis: redisSection.optional(),
          snapshot: snapshotSection.optional(),
        })
        .superRefine((c, ctx) => {
          if (c.backend === 'redis' && c.redis === undefined) {
            ctx.addIssue({ code: 'custom', message: 'backend redis needs a counters.redis section with url, cluster_nodes or sentinels', path: ['backend'] });
          }
        }),
    ),
    log: section(
      z.strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        buffered: z.boolean({ error: 'expected true or false' }).default(true),
        redact: stringList(z.enum(REDACT_FIELDS as [RedactField, ...RedactField[]], { error: `expected ${REDACT_FIELDS.join(', ')}` }), true)
          .transform((l) => [...new Set(l)])
          .default([]),
        redact_key_file: z.string({ error: 'expected an absolute path' }).regex(/^\/[^\0]*$/, 'redact_key_file must be an absolute path').optional(),
      }),
    ),
    policy: section(
      z.strictObject({
        fail_action: z.enum(['continue', 'tempfail']).default('continue'),
        idle_timeout: duration.prefault(DEFAULT_IDLE_TIMEOUT),
      }),
    ),
    load: section(loadSection),
    batv: z
      .strictObject({
        secret_file: z.string({ error: 'expected an absolute path' }).regex(/^\/[^\0]*$/, 'secret_file must be an absolute path'),
        key_id: z.int({ error: 'expected a whole number 0-9' }).min(0).max(9).default(0),
        domains: stringList(checkedString((d) => (/^[a-z0-9.-]+\.[a-z]{2,}$/i.test(d) ? undefined : `"${d}" is not a domain`))),
        valid_days: z.int({ error: 'expected a whole number of days' }).min(1).max(30).default(7),
        sign_clients: stringList(cidrItem, true).default([]),
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
      .optional(),
    admin: section(
      z
        .strictObject({
          listen: metricsListen.prefault(DEFAULT_ADMIN_LISTEN),
          token_file: z.string({ error: 'expected an absolute path' }).regex(/^\/[^\0]*$/, 'token_file must be an absolute path').optional(),
        })
        .transform((a) => ({ listen: a.listen, tokenFile: a.token_file })),
    ),
    recipients: section(
      z
        .strictObject({
          file: z.string({ error: 'expected an absolute path' }).regex(/^\/[^\0]*$/, 'recipients file must be an absolute path').optional(),
        })
        .transform((r) => ({ file: r.file })),
    ),
    // `rules:` with every rule commented out is an empty list, not an error.
    rules: z.preprocess((v) => v ?? [], z.array(rule, { error: 'expected a list of rules' })),
  })
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.rules.forEach((r, i) => {
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
      policy: { failAction: c.policy.fail_action, idleTimeoutMs: c.policy.idle_timeout },
      recipients: { file: c.recipients.file },
      load: c.load,
      batv: c.batv,
      admin: c.admin,
      rules: c.rules,
    }),
  );
