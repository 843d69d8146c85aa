import { encodePolicyReply, formatPolicyAction, smtpReplyProblem, type PolicyAction } from '../src/index.js';

const cases: [PolicyAction, string][] = [
  [{ kind: 'DUNNO' }, 'action=DUNNO\n\n'],
  [{ kind: 'OK' }, 'action=OK\n\n'],
  [{ kind: 'reply', reply: { code: 550, enhancedCode: '5.7.1', text: 'Blocked by policy' } }, 'action=550 5.7.1 Blocked by policy\n\n'],
  [{ kind: 'reply', reply: { code: 450, enhancedCode: '4.7.1', text: 'Slow down' } }, 'action=450 4.7.1 Slow down\n\n'],
  [{ kind: 'reply', reply: { code: 421, enhancedCode: '4.3.2', text: 'Busy' } }, 'action=421 4.3.2 Busy\n\n'],
  [{ kind: 'DEFER_IF_PERMIT', text: '4.7.1 Greylisted' }, 'action=DEFER_IF_PERMIT 4.7.1 Greylisted\n\n'],
  [{ kind: 'DISCARD' }, 'action=DISCARD\n\n'],
  [{ kind: 'DISCARD', text: 'worm' }, 'action=DISCARD worm\n\n'],
  [{ kind: 'HOLD', text: 'quarantined by levee' }, 'action=HOLD quarantined by levee\n\n'],
  [{ kind: 'PREPEND', header: 'X-Levee: checked' }, 'action=PREPEND X-Levee: checked\n\n'],
  [{ kind: 'WARN', text: 'would reject' }, 'action=WARN would reject\n\n'],
];

describe('policy replies', () => {
  test.each(cases)('%j encodes as %j', (action, wire) => {
    expect(encodePolicyReply(action).toString('utf8')).toBe(wire);
  });

  test('never a bare status code, never a code without text', () => {
    expect(() => formatPolicyAction({ kind: 'reply', reply: { code: 550, enhancedCode: '5.7.1', text: '' } })).toThrow(/empty/);
  });

  test('reply validation: class, range, characters, length', () => {
    expect(smtpReplyProblem({ code: 550, enhancedCode: '4.7.1', text: 'x' })).toMatch(/class/);
    expect(smtpReplyProblem({ code: 250, enhancedCode: '2.0.0', text: 'x' })).toMatch(/4xx or 5xx/);
    expect(smtpReplyProblem({ code: 600, enhancedCode: '5.0.0', text: 'x' })).toMatch(/4xx or 5xx/);
    expect(smtpReplyProblem({ code: 550, enhancedCode: '5.7', text: 'x' })).toMatch(/class\.subject\.detail/);
    expect(smtpReplyProblem({ code: 550, enhancedCode: '5.7.1', text: 'a\r\nb' })).toMatch(/CR, LF or NUL/);
    expect(smtpReplyProblem({ code: 550, enhancedCode: '5.7.1', text: 'x'.repeat(401) })).toMatch(/401 bytes, at most 400/);
    // The bound is in wire bytes: 200 two-byte characters fit, 201 do not.
    expect(smtpReplyProblem({ code: 550, enhancedCode: '5.7.1', text: '\u00e9'.repeat(200) })).toBeUndefined();
    expect(smtpReplyProblem({ code: 550, enhancedCode: '5.7.1', text: '\u00e9'.repeat(201) })).toMatch(/402 bytes/);
    expect(smtpReplyProblem({ code: 550, enhancedCode: '5.7.1', text: 'bell\u0007' })).toMatch(/control characters/);
    expect(smtpReplyProblem({ code: 451, enhancedCode: '4.3.2', text: 'System busy' })).toBeUndefined();
  });

  test('text with a newline is refused for every kind that carries text', () => {
    expect(() => formatPolicyAction({ kind: 'HOLD', text: 'a\nb' })).toThrow(RangeError);
    expect(() => formatPolicyAction({ kind: 'DEFER_IF_PERMIT', text: 'a\rb' })).toThrow(RangeError);
    expect(() => formatPolicyAction({ kind: 'PREPEND', header: 'no colon here' })).toThrow(RangeError);
  });
});
