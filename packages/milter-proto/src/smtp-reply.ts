/**
 * smtp-reply - validation of the SMTP replies we hand to an MTA; the one
 * validator both protocol paths and the config loader use.
 *
 * We validate what we emit as strictly as Postfix validates what milters send
 * (milter8_valid_smtp_reply): a 4xx or 5xx code, an RFC 3463 enhanced code
 * whose class matches the reply class, and a single line of text. CR, LF and
 * NUL would break the policy line or the milter frame; other control
 * characters have no business in a reply either. A bare code without text is
 * refused: Postfix reads `action=550` as OK.
 */

/** Longest reply text we emit, in UTF-8 bytes; Postfix truncates the whole reply at 510 bytes. */
export const MAX_REPLY_TEXT_BYTES = 400;

export interface SmtpReply {
  readonly code: number;
  readonly enhancedCode: string;
  readonly text: string;
}

const ENHANCED_CODE = /^([245])\.(\d{1,3})\.(\d{1,3})$/;

/** replyCodeProblem - why `code` is not a 4xx/5xx reply code, or undefined. */
export function replyCodeProblem(code: number): string | undefined {
  return Number.isInteger(code) && code >= 400 && code <= 599 ? undefined : `reply code ${code} is not a 4xx or 5xx code`;
}

/** enhancedCodeProblem - why `enhancedCode` is not an RFC 3463 code of `code`'s class, or undefined. */
export function enhancedCodeProblem(code: number, enhancedCode: string): string | undefined {
  const m = ENHANCED_CODE.exec(enhancedCode);
  if (m === null) return `enhanced code "${enhancedCode}" is not of the form class.subject.detail (RFC 3463)`;
  if (Number(m[1]) !== Math.floor(code / 100)) return `enhanced code ${enhancedCode} does not match the class of reply code ${code}`;
  return undefined;
}

/** replyTextProblem - why `text` cannot be reply text, or undefined. */
export function replyTextProblem(text: string): string | undefined {
  if (text.length === 0) return 'reply text must not be empty';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0d || c === 0x0a || c === 0x00) return 'reply text must not contain CR, LF or NUL';
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return 'reply text must not contain control characters';
  }
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_REPLY_TEXT_BYTES) return `reply text is ${bytes} bytes, at most ${MAX_REPLY_TEXT_BYTES} allowed`;
  return undefined;
}

/** smtpReplyProblem - why a whole reply is not valid to emit, or undefined when it is. */
export function smtpReplyProblem(reply: SmtpReply): string | undefined {
  return replyCodeProblem(reply.code) ?? enhancedCodeProblem(reply.code, reply.enhancedCode) ?? replyTextProblem(reply.text);
}

/** formatSmtpReply - "NNN X.Y.Z text"; throws on an invalid reply (a bug on our side). */
export function formatSmtpReply(reply: SmtpReply): string {
  const problem = smtpReplyProblem(reply);
  if (problem !== undefined) throw new RangeError(`invalid SMTP reply: ${problem}`);
  return `${reply.code} ${reply.enhancedCode} ${reply.text}`;
}
