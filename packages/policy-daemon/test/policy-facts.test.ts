import { formatIp, parseIp } from '@levee/rules';
import type { PolicyRequest } from '@levee/milter-proto';
import { policyRequestToFacts } from '../src/policy-facts.js';

const request = (attributes: Record<string, string>): PolicyRequest => ({
  request: 'smtpd_access_policy',
  ...attributes,
  unknown: {},
});

describe('policyRequestToFacts', () => {
  test.each([
    ['CONNECT', 'connect'],
    ['EHLO', 'helo'],
    ['HELO', 'helo'],
    ['MAIL', 'mail'],
    ['RCPT', 'rcpt'],
    ['DATA', 'data'],
    ['END-OF-MESSAGE', 'eom'],
    ['VRFY', 'vrfy'],
    ['ETRN', 'etrn'],
  ])('protocol_state=%s is stage %s', (state, stage) => {
    const r = policyRequestToFacts(request({ protocol_state: state }));
    expect(r.ok && r.facts.stage).toBe(stage);
  });

  test('empty attributes are absent; numbers are numbers; "unknown" names are absent', () => {
    const r = policyRequestToFacts(
      request({
        protocol_state: 'RCPT',
        client_address: '198.51.100.7',
        client_name: 'unknown',
        reverse_client_name: 'Mail.Example.NET',
        client_port: '41000',
        helo_name: '',
        sender: 'alice@example.net',
        recipient: 'bob@example.org',
        recipient_count: '0',
        size: '1234',
        queue_id: '',
        sasl_username: '',
        stress: '',
      }),
    );
    expect(r).toEqual({
      ok: true,
      facts: {
        protocol: 'policy',
        stage: 'rcpt',
        clientAddress: '198.51.100.7',
        clientIp: { family: 4, bytes: new Uint8Array([198, 51, 100, 7]) },
        clientPort: 41000,
        reverseClientName: 'mail.example.net',
        sender: 'alice@example.net',
        recipient: 'bob@example.org',
        recipientCount: 0,
        size: 1234,
      },
    });
  });

  test('an empty sender is the null sender <> once MAIL FROM was given, and absent before', () => {
    const atRcpt = policyRequestToFacts(request({ protocol_state: 'RCPT', sender: '' }));
    expect(atRcpt.ok && atRcpt.facts.sender).toBe('');
    const atConnect = policyRequestToFacts(request({ protocol_state: 'CONNECT', sender: '' }));
    expect(atConnect.ok && 'sender' in atConnect.facts).toBe(false);
  });

  test('stress=yes, SASL and IPv6 forms', () => {
    const r = policyRequestToFacts(
      request({ protocol_state: 'RCPT', stress: 'yes', sasl_username: 'bob', sasl_method: 'plain', client_address: 'IPv6:2001:DB8::1' }),
    );
    expect(r.ok && r.facts).toMatchObject({ stress: true, saslUsername: 'bob', saslMethod: 'plain', clientAddress: '2001:db8::1' });
    // Parsed once here, for the rules and the block list; text that is no address has no parsed form.
    expect(r.ok && r.facts.clientIp).toEqual(parseIp('2001:db8::1'));
    const odd = policyRequestToFacts(request({ protocol_state: 'RCPT', client_address: 'Not-An-Address' }));
    expect(odd.ok && [odd.facts.clientAddress, 'clientIp' in odd.facts]).toEqual(['not-an-address', false]);
  });

  test('client addresses come out in canonical form, whatever form they came in', () => {
    const client = (address: string): unknown => {
      const r = policyRequestToFacts(request({ protocol_state: 'RCPT', client_address: address }));
      return r.ok ? [r.facts.clientAddress, r.facts.clientIp === undefined ? undefined : formatIp(r.facts.clientIp)] : r.problem;
    };
    expect(client('192.0.2.10')).toEqual(['192.0.2.10', '192.0.2.10']);
    expect(client('0.0.0.0')).toEqual(['0.0.0.0', '0.0.0.0']);
    expect(client('[192.0.2.10]')).toEqual(['192.0.2.10', '192.0.2.10']);
    expect(client('ipv6:2001:DB8:0:0::1')).toEqual(['2001:db8::1', '2001:db8::1']);
    expect(client('IPV6:::ffff:192.0.2.1')).toEqual(['192.0.2.1', '192.0.2.1']);
    // Leading zeros (octal to some resolvers) are not an address: kept as text, never matched as 192.0.2.10.
    expect(client('192.000.2.010')).toEqual(['192.000.2.010', undefined]);
  });

  test('a protocol_state in other cases is the same stage', () => {
    for (const [state, stage] of [['rcpt', 'rcpt'], ['End-Of-Message', 'eom'], ['ehlo', 'helo']] as const) {
      const r = policyRequestToFacts(request({ protocol_state: state }));
      expect(r.ok && r.facts.stage).toBe(stage);
    }
    expect(policyRequestToFacts(request({ protocol_state: '' })).ok).toBe(false);
  });

  test('numbers are 1 to 15 decimal digits', () => {
    const sizeOf = (size: string): number | undefined => {
      const r = policyRequestToFacts(request({ protocol_state: 'RCPT', size }));
      return r.ok ? r.facts.size : undefined;
    };
    expect(sizeOf('0')).toBe(0);
    expect(sizeOf('0012')).toBe(12);
    expect(sizeOf('999999999999999')).toBe(999999999999999);
    for (const bad of ['', '1234567890123456', '1e3', ' 1', '1.5', '+1', '١']) expect(sizeOf(bad)).toBeUndefined();
  });

  test('garbage numbers are absent rather than NaN', () => {
    const r = policyRequestToFacts(request({ protocol_state: 'RCPT', size: '12abc', client_port: '-1' }));
    expect(r.ok && ('size' in r.facts || 'clientPort' in r.facts)).toBe(false);
  });

  test('requests that cannot be decided say why', () => {
    expect(policyRequestToFacts({ unknown: {} })).toEqual({ ok: false, problem: 'request="" is not smtpd_access_policy' });
    expect(policyRequestToFacts(request({ protocol_state: 'BDAT' }))).toEqual({ ok: false, problem: 'unknown protocol_state="BDAT"' });
  });
});
