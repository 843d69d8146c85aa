/**
 * recipient-directory - which recipients exist, so unknown ones get a
 * permanent `550 5.1.1` at RCPT time instead of a bounce later or, worse, a
 * 4xx that makes the sender retry for days (the 2004 lesson: one site's 450s
 * to forged recipients kept 14,000 domains retrying).
 *
 * The list is text, one entry per line, `#` comments:
 *
 *   @example.org          we receive mail for example.org: an address there
 *                         is unknown unless listed below
 *   @example.net *        every address at example.net exists (catch-all)...
 *   !old@example.net      ...except these
 *   alice@example.org     this address exists
 *
 * Addresses compare case-insensitively. A domain that is not listed at all is
 * `foreign` (relayed or not ours): the directory says nothing about it.
 *
 * LIMITATIONS: no sub-addressing (`user+tag@`) folding and no wildcards
 * beyond the catch-all; plus-addresses must be listed or the domain made a
 * catch-all.
 */

export type RecipientStatus = 'known' | 'unknown' | 'foreign';

export interface RecipientDirectory {
  /** Domains we are authoritative for, with whether they are catch-all. */
  readonly domains: ReadonlyMap<string, { readonly catchAll: boolean }>;
  readonly known: ReadonlySet<string>;
  readonly excluded: ReadonlySet<string>;
}

export interface DirectoryIssue {
  readonly line: number;
  readonly message: string;
}

export type DirectoryParseResult =
  | { readonly ok: true; readonly directory: RecipientDirectory }
  | { readonly ok: false; readonly issues: readonly DirectoryIssue[] };

const DOMAIN_RE = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** Longest address accepted in the file (RFC 5321: 254 in a path). */
const MAX_ADDRESS = 320;

function splitAddress(address: string): { local: string; domain: string } | undefined {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return undefined;
  return { local: address.slice(0, at), domain: address.slice(at + 1) };
}

/** parseRecipientDirectory - the directory in `text`, or every problem with its line number. */
export function parseRecipientDirectory(text: string): DirectoryParseResult {
  const domains = new Map<string, { catchAll: boolean }>();
  const known = new Set<string>();
  const excluded = new Set<string>();
  const issues: DirectoryIssue[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim().toLowerCase();
    if (line === '') return;
    const number = i + 1;
    const fields = line.split(/\s+/);
    const entry = fields[0] ?? '';
    if (entry.startsWith('@')) {
      const domain = entry.slice(1).replace(/\.$/, '');
      if (!DOMAIN_RE.test(domain)) return void issues.push({ line: number, message: `"${entry}" is not @domain` });
      if (fields.length > 2 || (fields.length === 2 && fields[1] !== '*')) {
        return void issues.push({ line: number, message: `after "${entry}" only "*" (catch-all) may follow` });
      }
      domains.set(domain, { catchAll: fields.length === 2 });
      return;
    }
    if (fields.length > 1) return void issues.push({ line: number, message: `one address per line, got "${line}"` });
    const negated = entry.startsWith('!');
    const address = negated ? entry.slice(1) : entry;
    const parts = splitAddress(address);
    if (parts === undefined || address.length > MAX_ADDRESS || !DOMAIN_RE.test(parts.domain.replace(/\.$/, ''))) {
      return void issues.push({ line: number, message: `"${entry}" is not an address, @domain or !address` });
    }
    (negated ? excluded : known).add(address);
  });
  for (const address of [...known, ...excluded]) {
    const domain = splitAddress(address)?.domain ?? '';
    if (!domains.has(domain)) domains.set(domain, { catchAll: false });
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, directory: { domains, known, excluded } };
}

/** classifyRecipient - known, unknown, or foreign (a domain the directory does not cover). */
export function classifyRecipient(directory: RecipientDirectory, recipient: string): RecipientStatus {
  const address = recipient.toLowerCase();
  const parts = splitAddress(address);
  if (parts === undefined) return 'foreign';
  const domain = directory.domains.get(parts.domain.replace(/\.$/, ''));
  if (domain === undefined) return 'foreign';
  if (directory.excluded.has(address)) return 'unknown';
  if (domain.catchAll || directory.known.has(address)) return 'known';
  return 'unknown';
}
