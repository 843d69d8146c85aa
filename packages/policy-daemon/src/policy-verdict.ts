/**
 * policy-verdict - format a Verdict as a policy `action=` reply.
 *
 * The one place where Levee's actions meet access(5) words. quarantine is
 * HOLD (the message waits in Postfix's hold queue for `postsuper -H`);
 * tempfail and reject always carry an explicit `NNN X.Y.Z text`.
 */

import { encodePolicyReply, type PolicyAction } from '@levee/milter-proto';
import type { Verdict } from '@levee/rules';

const DUNNO_REPLY = encodePolicyReply({ kind: 'DUNNO' });
const OK_REPLY = encodePolicyReply({ kind: 'OK' });

/** verdictToPolicyAction - the access(5) action for a verdict. */
export function verdictToPolicyAction(verdict: Verdict): PolicyAction {
  switch (verdict.action) {
    case 'continue':
      return { kind: 'DUNNO' };
    case 'accept':
      return { kind: 'OK' };
    case 'tempfail':
    case 'reject':
      return {
        kind: 'reply',
        reply: {
          code: verdict.code ?? (verdict.action === 'reject' ? 550 : 450),
          enhancedCode: verdict.enhancedCode ?? (verdict.action === 'reject' ? '5.7.1' : '4.7.1'),
          text: verdict.text ?? (verdict.action === 'reject' ? 'Access denied' : 'Try again later'),
        },
      };
    case 'discard':
      return verdict.text === undefined ? { kind: 'DISCARD' } : { kind: 'DISCARD', text: verdict.text };
    case 'quarantine':
      return verdict.text === undefined ? { kind: 'HOLD' } : { kind: 'HOLD', text: verdict.text };
  }
}

/** encodeVerdict - the whole reply on the wire; the two commonest answers are pre-encoded. */
export function encodeVerdict(verdict: Verdict): Buffer {
  if (verdict.action === 'continue') return DUNNO_REPLY;
  if (verdict.action === 'accept') return OK_REPLY;
  return encodePolicyReply(verdictToPolicyAction(verdict));
}
