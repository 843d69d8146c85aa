/**
 * policy-verdict - format a Verdict as a policy `action=` reply.
 *
 * The one place where Levee's actions meet access(5) words. quarantine is
 * HOLD (the message waits in Postfix's hold queue for `postsuper -H`);
 * tempfail and reject always carry an explicit `NNN X.Y.Z text`.
 *
 * LIMITATIONS: a policy reply is one action, so of the headers a `continue`
 * verdict adds only the first is sent (PREPEND), and none at END-OF-MESSAGE,
 * where Postfix refuses PREPEND; headers on other actions are dropped. The
 * milter path adds them all.
 */

import { encodePolicyReply, type PolicyAction } from '@levee/milter-proto';
import type { Stage, Verdict } from '@levee/rules';

const DUNNO_REPLY = encodePolicyReply({ kind: 'DUNNO' });
const OK_REPLY = encodePolicyReply({ kind: 'OK' });

/** verdictToPolicyAction - the access(5) action for a verdict given at `stage`. */
export function verdictToPolicyAction(verdict: Verdict, stage: Stage): PolicyAction {
  switch (verdict.action) {
    case 'continue': {
      const header = verdict.addHeaders?.[0];
      if (header === undefined || stage === 'eom' || header.value.includes('\n')) return { kind: 'DUNNO' };
      return { kind: 'PREPEND', header: `${header.name}: ${header.value}` };
    }
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
export function encodeVerdict(verdict: Verdict, stage: Stage): Buffer {
  if (verdict.action === 'continue' && verdict.addHeaders === undefined) return DUNNO_REPLY;
  if (verdict.action === 'accept') return OK_REPLY;
  return encodePolicyReply(verdictToPolicyAction(verdict, stage));
}
