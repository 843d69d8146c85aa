/**
 * reply - SMTP reply validation and the default replies of each action.
 *
 * Every tempfail/reject verdict carries a code, an RFC 3463 enhanced code and
 * a text: Postfix reads a bare `action=550` as OK (the all-digits test runs
 * before the status-code test), so a code without text would let mail through.
 * The same checks run on config (as errors) and may run again at the edge.
 *
 * The checks themselves live in milter-proto's smtp-reply.ts, so config and
 * the wire edge can never disagree about what a valid reply is.
 */

import { enhancedCodeProblem, replyCodeProblem, replyTextProblem, type SmtpReply } from '@levee/milter-proto';
import type { Action } from './verdict.js';

export { MAX_REPLY_TEXT_BYTES as MAX_REPLY_TEXT } from '@levee/milter-proto';

export type Reply = SmtpReply;

/** The reply class an action needs: 4 for tempfail, 5 for reject, undefined for actions without a reply code. */
export function replyClassForAction(action: Action): 4 | 5 | undefined {
  if (action === 'tempfail') return 4;
  if (action === 'reject') return 5;
  return undefined;
}

/** Why `text` cannot be a reply text, or undefined when it can (the check every emitted reply passes). */
export function validateReplyText(text: string): string | undefined {
  return replyTextProblem(text);
}

/**
 * Why (code, enhanced code, text) is not a valid 4xx/5xx reply, or undefined
 * when it is; the parts not given are not checked (config may omit them).
 */
export function validateReply(code: number, enhancedCode: string | undefined, text: string | undefined): string | undefined {
  return (
    replyCodeProblem(code) ??
    (enhancedCode === undefined ? undefined : enhancedCodeProblem(code, enhancedCode)) ??
    (text === undefined ? undefined : replyTextProblem(text))
  );
}

/** Default text, by action and by whether a rate limit decided. */
function defaultText(action: Action, isLimit: boolean): string {
  switch (action) {
    case 'tempfail':
      return isLimit ? 'Rate limit exceeded, try again later' : 'Service temporarily unavailable, try again later';
    case 'reject':
      return isLimit ? 'Rate limit exceeded' : 'Rejected by policy';
    case 'quarantine':
      return isLimit ? 'Held: rate limit exceeded' : 'Held by policy';
    case 'continue':
    case 'accept':
    case 'discard':
      return '';
  }
}

/**
 * The complete reply for an action: configured parts, with defaults filled in
 * (tempfail 450 4.7.1, reject 550 5.7.1; the enhanced code's class follows the
 * code). Undefined for actions that send no SMTP reply. Quarantine gets only a
 * text (the milter quarantine reason), see `defaultReasonText`.
 */
export function completeReply(
  action: Action,
  isLimit: boolean,
  code: number | undefined,
  enhancedCode: string | undefined,
  text: string | undefined,
): Reply | undefined {
  const cls = replyClassForAction(action);
  if (cls === undefined) return undefined;
  const c = code ?? cls * 100 + 50;
  return {
    code: c,
    enhancedCode: enhancedCode ?? `${Math.floor(c / 100)}.7.1`,
    text: text ?? defaultText(action, isLimit),
  };
}

/**
 * Text for actions that carry only a reason: quarantine (default text given)
 * and discard (only if configured; Postfix logs it with the DISCARD).
 */
export function defaultReasonText(action: Action, isLimit: boolean, text: string | undefined): string | undefined {
  if (action === 'discard') return text;
  if (action !== 'quarantine') return undefined;
  return text ?? defaultText(action, isLimit);
}
