/**
 * smtp-reply - validation of the SMTP replies we hand to an MTA.
 *
 * We validate what we emit as strictly as Postfix validates what milters send
 * (milter8_valid_smtp_reply): a 4xx or 5xx code, an optional RFC 3463 enhanced
 * code whose class matches the reply class, and text free of CR, LF and NUL.
 * A bare code without text is refused: Postfix reads `action=550` as OK.
 */

/** Longest reply text we emit; Postfix truncates the whole reply at 510 bytes. */
export const MAX_REPLY_TEXT_BYTES = 400;

export interface SmtpReply {
  readonly code: number;
  readonly enhancedCode: string;
  readonly text: string;
}

const ENHANCED_CODE = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
// eslint-disable-next-line no-control-regex
const FORBIDDEN_TEXT = /[\r\n\0]/;

/** smtpReplyProblem - why a reply is not valid to emit, or undefined when it is. */
export function smtpReplyProblem(reply: SmtpReply): string | undefined {
  const { code, enhancedCode, text } = reply;
  if (!Number.isInteger(code) || code < 400 || code > 599) return `reply code ${code} is not 4xx or 5xx`;
  const m = ENHANCED_CODE.exec(enhancedCode);
  if (m === null) return `enhanced status code "${enhancedCode}" is not of the form C.S.D`;
  if (m[1] !== String(code)[0]) return `enhanced status code ${enhancedCode} does not match the class of ${code}`;
  if (text.length === 0) return 'reply text is empty';
  if (FORBIDDEN_TEXT.test(text)) return 'reply text contains CR, LF or NUL';
  if (Buffer.byteLength(text, 'utf8') > MAX_REPLY_TEXT_BYTES) return `reply text is longer than ${MAX_REPLY_TEXT_BYTES} bytes`;
  return undefined;
}

/** formatSmtpReply - "NNN X.Y.Z text"; throws on an invalid reply (a bug on our side). */
export function formatSmtpReply(reply: SmtpReply): string {
  const problem = smtpReplyProblem(reply);
  if (problem !== undefined) throw new RangeError(`invalid SMTP reply: ${problem}`);
  return `${reply.code} ${reply.enhancedCode} ${reply.text}`;
}
