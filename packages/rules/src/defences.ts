/**
 * defences - the built-in rule families of the `defences:` section, each an
 * answer to an incident of the worm years (docs/cookbook.md), switched on and
 * tuned in a few lines instead of written out as rules:
 *
 *   defences:
 *     connection_floods: true
 *     worms: { action: reject }
 *     contain: { grace: 30m }
 *
 * expandDefences turns the checked section into ordinary rules (in the shape
 * of `rules:` entries, so they pass the same schema and compile the same way),
 * named `defence.<family>.<rule>`: `levee explain`, the logs and the metrics
 * name them like any rule. They run before the config's own `rules`, in the
 * order below: limits that must see every request first, terminal answers
 * after them. Pure.
 */

/** A rate: at most `max` in `windowMs`. */
export interface RateSpec {
  readonly max: number;
  readonly windowMs: number;
}

export type WormAction = 'discard' | 'reject' | 'quarantine';

export interface DefencesConfig {
  /** Client networks no defence applies to (your own hosts, monitoring). */
  readonly exempt: readonly string[];
  readonly connectionFloods?: {
    readonly perClient: RateSpec;
    readonly perNetwork: RateSpec;
    readonly clientConcurrency: number;
    readonly totalConcurrency: number | undefined;
    readonly tarpitMs: number;
  };
  readonly dictionaryAttack?: RateSpec;
  readonly unknownRecipients?: Record<string, never>;
  readonly bounceStorms?: { readonly perClient: RateSpec; readonly perRecipient: RateSpec };
  readonly batvBounces?: Record<string, never>;
  readonly forgedBounces?: { readonly ourHosts: readonly string[] };
  readonly worms?: { readonly attachments: readonly string[]; readonly action: WormAction };
  readonly avNotices?: Record<string, never>;
  readonly autoReplies?: Record<string, never>;
  readonly contain?: {
    readonly messages: RateSpec | undefined;
    readonly recipients: RateSpec | undefined;
    readonly domains: RateSpec | undefined;
    readonly localNetworks: readonly string[];
    readonly graceMs: number;
    readonly holdMs: number;
  };
}

/** The families in the order their rules run. */
export const DEFENCE_FAMILIES = [
  'connection_floods',
  'dictionary_attack',
  'unknown_recipients',
  'bounce_storms',
  'batv_bounces',
  'forged_bounces',
  'worms',
  'av_notices',
  'auto_replies',
  'contain',
] as const;

/** Executables worms travelled as (2003-04: .pif, .scr, .exe, zipped too), and their script cousins. */
export const DEFAULT_WORM_ATTACHMENTS = ['.exe', '.scr', '.pif', '.com', '.bat', '.vbs', '.cpl', '.cmd', '.js', '.jse', '.wsf', '.lnk'];

/** Subjects of anti-virus "virus found" notices. */
export const AV_NOTICE_SUBJECTS = ['/\\b(virus|worm|infect(ed|ion))\\b.*\\b(found|detected|alert|notification)\\b/i', '/^(virus|security) (alert|warning)/i'];

/** A rules: entry as YAML gives it (snake_case, durations in ms). */
export type RawRule = Readonly<Record<string, unknown>>;

const PREFIX = 'defence.';

/** A regex matching a host name as a word in a Received line, e.g. /\bmx1\.example\.org\b/i. */
function hostPattern(host: string): string {
  return `/\\b${host.toLowerCase().replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\b/i`;
}

function limit(key: string, rate: RateSpec, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { key, max: rate.max, window: rate.windowMs, ...extra };
}

/** expandDefences - the rules of every family switched on, in DEFENCE_FAMILIES order. */
export function expandDefences(d: DefencesConfig): RawRule[] {
  const out: RawRule[] = [];
  const exempt = d.exempt.length === 0 ? {} : { unless: { client_address: [...d.exempt] } };
  // Containment is never exempt: webmail on your own hosts is where a stolen password sends from.
  const add = (name: string, rule: Record<string, unknown>, exemptable = true): void => {
    out.push({ name: `${PREFIX}${name}`, ...rule, ...(exemptable && rule['unless'] === undefined ? exempt : {}) });
  };

  const floods = d.connectionFloods;
  if (floods !== undefined) {
    const slowDown = { action: 'tempfail', code: 421, enhanced_code: '4.7.0', ...(floods.tarpitMs > 0 ? { delay: floods.tarpitMs } : {}) };
    add('connection_floods.client-rate', {
      description: 'new connections per client address (sendmail ConnectionRateThrottle)',
      stage: 'connect',
      limit: limit('{client_address}', floods.perClient),
      ...slowDown,
      text: 'Too many connections from your address, slow down',
    });
    add('connection_floods.network-rate', {
      description: 'new connections per client network (/24, IPv6 /64)',
      stage: 'connect',
      limit: limit('{client_network/24,64}', floods.perNetwork),
      ...slowDown,
      text: 'Too many connections from your network, slow down',
    });
    add('connection_floods.client-concurrency', {
      description: 'open connections per client address (milter: it sees every connection close)',
      stage: 'connect',
      match: { protocol: 'milter', client_concurrency: { min: floods.clientConcurrency + 1 } },
      ...slowDown,
      text: 'Too many connections from your address, slow down',
    });
    if (floods.totalConcurrency !== undefined) {
      add('connection_floods.total-concurrency', {
        description: 'open connections in all (sendmail MaxDaemonChildren)',
        stage: 'connect',
        match: { protocol: 'milter', total_concurrency: { min: floods.totalConcurrency + 1 } },
        action: 'tempfail',
        code: 421,
        enhanced_code: '4.3.2',
        text: 'Too many connections, try again later',
      });
    }
  }
  if (d.dictionaryAttack !== undefined) {
    add('dictionary_attack', {
      description: 'many unknown recipients from one client: refuse the rest of its mail',
      stage: 'rcpt',
      limit: limit('{client_address}', d.dictionaryAttack, { count_if: { recipient_status: ['unknown'] } }),
      action: 'reject',
      code: 550,
      enhanced_code: '5.7.1',
      text: 'Too many unknown recipients from your address',
    });
  }
  if (d.unknownRecipients !== undefined) {
    add('unknown_recipients', {
      description: 'permanent means permanent: 550 5.1.1, never 4xx',
      stage: 'rcpt',
      match: { recipient_status: ['unknown'] },
      action: 'reject',
      code: 550,
      enhanced_code: '5.1.1',
      text: 'No such user here',
    });
  }
  if (d.bounceStorms !== undefined) {
    const storm = { action: 'tempfail', code: 450, enhanced_code: '4.7.1' };
    add('bounce_storms.per-client', {
      description: 'bounces (null sender) per client address',
      stage: 'rcpt',
      match: { null_sender: true },
      limit: limit('{client_address}', d.bounceStorms.perClient),
      ...storm,
      text: 'Too many bounces from your address, try again later',
    });
    add('bounce_storms.per-recipient', {
      description: 'bounces (null sender) per recipient: backscatter aimed at one address',
      stage: 'rcpt',
      match: { null_sender: true },
      limit: limit('{recipient}', d.bounceStorms.perRecipient),
      ...storm,
      text: 'Too many bounces for this recipient, try again later',
    });
  }
  if (d.batvBounces !== undefined) {
    add('batv_bounces', {
      description: 'a bounce to an address of ours without a valid BATV tag answers mail we never sent',
      stage: 'rcpt',
      match: { null_sender: true, batv: ['unsigned', 'bad-signature', 'expired'] },
      action: 'reject',
      code: 550,
      enhanced_code: '5.7.1',
      text: 'This address sends no mail that could bounce to it',
    });
  }
  if (d.forgedBounces !== undefined) {
    add('forged_bounces', {
      description: 'a bounce whose returned headers never passed our hosts answers mail someone else sent in our name',
      stage: 'eom',
      match: { null_sender: true, returns_headers: true },
      unless: { returned_received: d.forgedBounces.ourHosts.map(hostPattern) },
      action: 'reject',
      code: 550,
      enhanced_code: '5.7.1',
      text: 'Bounce of a message that was not sent from here',
    });
  }
  if (d.worms !== undefined) {
    add('worms', {
      description: 'executable attachments, also inside zip archives: never delivered, never bounced',
      stage: 'eom',
      match: { attachment_name: [...d.worms.attachments] },
      action: d.worms.action,
      ...(d.worms.action === 'reject' ? { code: 550, enhanced_code: '5.7.1', text: 'Executable attachments are not accepted here' } : { text: 'worm attachment stopped by levee' }),
    });
  }
  if (d.avNotices !== undefined) {
    add('av_notices', {
      description: 'anti-virus "virus found" notices go to forged senders: dropped',
      stage: 'eom',
      match: { header: { Subject: AV_NOTICE_SUBJECTS } },
      action: 'discard',
      text: 'anti-virus notification dropped by levee',
    });
  }
  if (d.autoReplies !== undefined) {
    const reply = { stage: 'eom', unless: { batv: ['valid'] }, action: 'discard', text: 'auto-reply dropped by levee' };
    add('auto_replies.rfc3834', { description: 'auto-replies (RFC 3834) to mail our users did not send', match: { header: { 'Auto-Submitted': ['/^auto-replied/i'] } }, ...reply });
    add('auto_replies.legacy', { description: 'auto-replies marked the pre-RFC 3834 way', match: { header: { 'X-Autoreply': ['/./'] } }, ...reply });
  }
  const c = d.contain;
  if (c !== undefined) {
    const held = { action: 'quarantine', text: 'held: sending rate of this account', contain: { grace: c.graceMs, hold_for: c.holdMs } };
    const customers: [string, Record<string, unknown>, string][] = [['users', { authenticated: true }, '{sasl_username}']];
    if (c.localNetworks.length > 0) customers.push(['hosts', { authenticated: false, client_address: [...c.localNetworks] }, '{client_address}']);
    for (const [who, match, key] of customers) {
      if (c.messages !== undefined) add(`contain.${who}-messages`, { description: `messages per ${key}`, stage: 'eom', match, limit: limit(key, c.messages), ...held }, false);
      if (c.recipients !== undefined) {
        add(`contain.${who}-recipients`, { description: `recipients per ${key}`, stage: 'eom', match, limit: limit(key, c.recipients, { count: 'recipients' }), ...held }, false);
      }
      if (c.domains !== undefined) {
        const domains = { description: `distinct recipient domains per ${key}`, stage: 'rcpt', match, limit: limit(key, c.domains, { distinct: '{recipient_domain}' }), ...held };
        add(`contain.${who}-domains`, domains, false);
      }
    }
  }
  return out;
}

/** Whether a rule name is reserved for the defences section. */
export function isDefenceRuleName(name: string): boolean {
  return name.startsWith(PREFIX);
}
