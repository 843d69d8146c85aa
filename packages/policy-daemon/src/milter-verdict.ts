/**
 * milter-verdict - a Verdict as a milter response (SMFIR_*), the milter's
 * counterpart of policy-verdict.ts.
 *
 * tempfail and reject become SMFIR_REPLYCODE with the rule's full reply, so
 * the SMTP client sees our code and text. Actions the milter protocol cannot
 * give at a stage are carried forward by the caller: quarantine is an
 * end-of-message modification, and discard is not allowed before MAIL.
 */

import type { MilterResponse } from '@levee/milter-proto';
import type { Verdict } from '@levee/rules';

/** verdictToMilterResponse - the immediate response for a verdict (quarantine answers continue: see above). */
export function verdictToMilterResponse(verdict: Verdict): MilterResponse {
  switch (verdict.action) {
    case 'continue':
    case 'quarantine':
      return { action: 'continue' };
    case 'accept':
      return { action: 'accept' };
    case 'discard':
      return { action: 'discard' };
    case 'tempfail':
    case 'reject':
      return {
        action: 'replycode',
        code: verdict.code ?? (verdict.action === 'reject' ? 550 : 450),
        enhancedCode: verdict.enhancedCode ?? (verdict.action === 'reject' ? '5.7.1' : '4.7.1'),
        text: verdict.text ?? (verdict.action === 'reject' ? 'Access denied' : 'Try again later'),
      };
  }
}
