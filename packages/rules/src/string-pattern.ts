/**
 * string-pattern - the string patterns of `match`/`unless`, checked and
 * compiled once at config load.
 *
 * Address fields (sender, recipient):
 *   `user@example.com`  the whole address, case-insensitive
 *   `@example.com`      any address in exactly that domain
 *   `@.example.com`     any address in that domain or one of its subdomains
 * Host fields (client_name, helo_name):
 *   `mx.example.com`    that host name, case-insensitive, trailing dot ignored
 *   `.example.com`      any name strictly below example.com (not example.com
 *                       itself; list both when both are meant, as Postfix does)
 * User-name field (sasl_username): any other text is an exact, case-insensitive
 *   user name; the `@domain` forms work as for addresses.
 * Text fields (header values, MIME types): any other text is the exact value,
 *   case-insensitive; white space allowed.
 * File names (attachments): `.exe` any name ending in ".exe" (so "a.pdf.exe"
 *   matches `.exe` and `.pdf.exe`); any other text is the exact name;
 *   case-insensitive; white space allowed.
 * Every field: `/regex/flags`, a JavaScript RegExp, flags from [imsu] only
 *   (no `g`/`y`: their lastIndex state would make a shared RegExp give
 *   different answers to the same input). The regex sees the value as
 *   received (not lowercased; use `i`) and only its first MAX_TESTED_LENGTH
 *   characters.
 *
 * Limits: a regex source is at most MAX_REGEX_SOURCE characters, and is run on
 * at most MAX_TESTED_LENGTH characters of a value. Catastrophic backtracking
 * is checked when a rule is loaded (config-schema.ts, regex-safety.ts), not
 * here: checkPattern stays cheap and about one pattern. Exact forms are looked
 * up in Sets, so long lists cost the same as short ones.
 */

export type PatternField = 'address' | 'host' | 'username' | 'text' | 'filename';

export const MAX_REGEX_SOURCE = 200;
/** A regex sees at most this many characters of a value: bounds the time of any accepted regex (regex-safety.ts). */
export const MAX_TESTED_LENGTH = 1024;
const MAX_PATTERN_LENGTH = 512;

/**
 * A compiled list: true when any pattern matches. `raw` is the value as
 * received, `lower` its lowercased form, `domain` the lowercased domain
 * (addresses: after the last `@`, trailing dot removed; hosts: the name
 * itself, trailing dot removed; undefined when there is none).
 */
export type PatternMatcher = (raw: string, lower: string, domain: string | undefined) => boolean;

export interface RegexParts {
  readonly source: string;
  readonly flags: string;
}

/** True for the `/regex/flags` form (checked or not). */
export function isRegexPattern(pattern: string): boolean {
  return pattern.startsWith('/');
}

/** The source and flags of a `/regex/flags` pattern, or undefined when it is not one. */
export function splitRegex(pattern: string): RegexParts | undefined {
  if (!pattern.startsWith('/')) return undefined;
  const end = pattern.lastIndexOf('/');
  if (end <= 0) return undefined;
  return { source: pattern.slice(1, end), flags: pattern.slice(end + 1) };
}

function checkRegex(pattern: string): string | undefined {
  const parts = splitRegex(pattern);
  if (parts === undefined) return 'a regex pattern must look like /regex/flags';
  if (parts.source.length === 0) return 'empty regex';
  if (parts.source.length > MAX_REGEX_SOURCE) {
    return `regex is ${parts.source.length} characters, at most ${MAX_REGEX_SOURCE} allowed`;
  }
  if (!/^[imsu]*$/.test(parts.flags) || new Set(parts.flags).size !== parts.flags.length) {
    return `regex flags "${parts.flags}" not allowed: use each of i, m, s, u at most once`;
  }
  try {
    new RegExp(parts.source, parts.flags);
  } catch (e) {
    return `invalid regex: ${e instanceof Error ? e.message : String(e)}`;
  }
  return undefined;
}

const HOST_RE = /^[a-z0-9_\-.:[\]]+$/;

function checkDomain(domain: string, what: string): string | undefined {
  if (domain.length === 0) return `${what}: missing domain`;
  if (domain.includes('@')) return `${what}: "@" in domain`;
  if (!HOST_RE.test(domain.toLowerCase())) return `${what}: "${domain}" is not a domain name`;
  return undefined;
}

/** Why `pattern` is not valid for `field`, or undefined when it is. */
export function checkPattern(pattern: string, field: PatternField): string | undefined {
  if (pattern.length === 0) return 'empty pattern';
  if (pattern.length > MAX_PATTERN_LENGTH) return `pattern longer than ${MAX_PATTERN_LENGTH} characters`;
  if (pattern.startsWith('/')) return checkRegex(pattern);
  if (field === 'text') return undefined;
  if (field === 'filename') return pattern === '.' ? 'a file-name suffix needs text after the dot' : undefined;
  if (/\s/.test(pattern)) return 'pattern contains white space';
  if (field === 'host') {
    if (pattern.includes('@')) return `"${pattern}" is an address pattern; host patterns are "name" or ".domain"`;
    const name = pattern.startsWith('.') ? pattern.slice(1) : pattern;
    return checkDomain(stripDot(name), 'host pattern');
  }
  if (pattern.startsWith('@.')) return checkDomain(stripDot(pattern.slice(2)), 'domain pattern');
  if (pattern.startsWith('@')) return checkDomain(stripDot(pattern.slice(1)), 'domain pattern');
  if (field === 'address') {
    const at = pattern.lastIndexOf('@');
    if (at < 0) return `"${pattern}" is not an address: write user@domain, @domain or @.domain`;
    if (at === pattern.length - 1) return `"${pattern}" has no domain`;
  }
  return undefined;
}

function stripDot(s: string): string {
  return s.endsWith('.') ? s.slice(0, -1) : s;
}

/** True when `domain` is `parent` or below it and, if `strict`, not `parent` itself. */
function inParentSet(domain: string, parents: ReadonlySet<string>, strict: boolean): boolean {
  if (!strict && parents.has(domain)) return true;
  for (let i = domain.indexOf('.'); i >= 0; i = domain.indexOf('.', i + 1)) {
    if (parents.has(domain.slice(i + 1))) return true;
  }
  return false;
}

/**
 * Compile a checked pattern list. Patterns that fail `checkPattern` are
 * skipped: validate config first (the schema does).
 */
export function compilePatterns(patterns: readonly string[], field: PatternField): PatternMatcher {
  const exact = new Set<string>();
  const domains = new Set<string>();
  const parents = new Set<string>();
  const regexes: RegExp[] = [];
  for (const p of patterns) {
    if (checkPattern(p, field) !== undefined) continue;
    if (p.startsWith('/')) {
      const parts = splitRegex(p);
      if (parts !== undefined) regexes.push(new RegExp(parts.source, parts.flags));
    } else if (field === 'text') {
      exact.add(p.toLowerCase());
    } else if (field === 'filename') {
      if (p.startsWith('.')) parents.add(p.toLowerCase());
      else exact.add(p.toLowerCase());
    } else if (field === 'host') {
      if (p.startsWith('.')) parents.add(stripDot(p.slice(1).toLowerCase()));
      else exact.add(stripDot(p.toLowerCase()));
    } else if (p.startsWith('@.')) {
      parents.add(stripDot(p.slice(2).toLowerCase()));
    } else if (p.startsWith('@')) {
      domains.add(stripDot(p.slice(1).toLowerCase()));
    } else {
      exact.add(p.toLowerCase());
    }
  }
  const hasExact = exact.size > 0;
  const hasDomains = domains.size > 0;
  const hasParents = parents.size > 0;
  const hasRegexes = regexes.length > 0;
  // Host suffixes match strictly below the parent; address `@.` forms include the domain itself.
  const strictParents = field === 'host';
  const matchesExact = field === 'host' ? (domain: string | undefined) => domain !== undefined && exact.has(domain) : undefined;
  if (field === 'filename') {
    // `domain` is unused; every ".suffix" of the name is looked up.
    return (raw, lower) => {
      if (hasExact && exact.has(lower)) return true;
      if (hasParents) for (let i = lower.indexOf('.'); i >= 0; i = lower.indexOf('.', i + 1)) if (parents.has(lower.slice(i))) return true;
      return hasRegexes && testRegexes(regexes, raw);
    };
  }
  return (raw, lower, domain) => {
    if (hasExact && (matchesExact !== undefined ? matchesExact(domain) : exact.has(lower))) return true;
    if (domain !== undefined) {
      if (hasDomains && domains.has(domain)) return true;
      if (hasParents && inParentSet(domain, parents, strictParents)) return true;
    }
    return hasRegexes && testRegexes(regexes, raw);
  };
}

/** True when any regex matches the value's first MAX_TESTED_LENGTH characters. */
function testRegexes(regexes: readonly RegExp[], raw: string): boolean {
  const tested = raw.length > MAX_TESTED_LENGTH ? raw.slice(0, MAX_TESTED_LENGTH) : raw;
  for (const re of regexes) if (re.test(tested)) return true;
  return false;
}
