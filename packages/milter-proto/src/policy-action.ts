/**
 * policy-action - the `action=` values a policy server answers with
 * (access(5) right-hand sides, SMTPD_POLICY_README) and their formatter.
 *
 * Only the actions Levee needs are modelled. Every status-code reply carries
 * an enhanced code and text: `action=550` alone is all-digits, which Postfix's
 * check_table_result() takes as OK (pitfall C.26).
 */

import { formatSmtpReply, type SmtpReply } from './smtp-reply.js';

export type PolicyAction =
  | { readonly kind: 'DUNNO' }
  | { readonly kind: 'OK' }
  /** An explicit `NNN X.Y.Z text`: REJECT/DEFER with our own code. */
  | { readonly kind: 'reply'; readonly reply: SmtpReply }
  | { readonly kind: 'DEFER_IF_PERMIT'; readonly text: string }
  | { readonly kind: 'DISCARD'; readonly text?: string }
  | { readonly kind: 'HOLD'; readonly text?: string }
  | { readonly kind: 'PREPEND'; readonly header: string }
  | { readonly kind: 'WARN'; readonly text: string };

// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\r\n\0]/;

function optionalText(text: string | undefined): string {
  if (text === undefined || text.length === 0) return '';
  if (FORBIDDEN.test(text)) throw new RangeError('policy action text contains CR, LF or NUL');
  return ` ${text}`;
}

/** formatPolicyAction - the value after `action=`; throws on text we must never send. */
export function formatPolicyAction(action: PolicyAction): string {
  switch (action.kind) {
    case 'DUNNO':
    case 'OK':
      return action.kind;
    case 'reply':
      return formatSmtpReply(action.reply);
    case 'DEFER_IF_PERMIT':
    case 'WARN':
      return action.kind + optionalText(action.text);
    case 'DISCARD':
    case 'HOLD':
      return action.kind + optionalText(action.text);
    case 'PREPEND':
      if (!/^[!-9;-~]+:/.test(action.header)) throw new RangeError('PREPEND needs "Name: value"');
      return `PREPEND${optionalText(action.header)}`;
  }
}

/** encodePolicyReply - `action=...\n\n`, the whole reply, LF only. */
export function encodePolicyReply(action: PolicyAction): Buffer {
  return Buffer.from(`action=${formatPolicyAction(action)}\n\n`, 'utf8');
}
