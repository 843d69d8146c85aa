import * as fc from 'fast-check';
import {
  canonicalIp,
  cidrContains,
  cidrHasHostBits,
  compileCidrList,
  formatCidr,
  formatIp,
  networkKey,
  parseCanonicalIp,
  parseCidr,
  parseIp,
  type Cidr,
  type IpAddress,
} from '../src/index.js';

function ip(text: string): IpAddress {
  const a = parseIp(text);
  if (a === undefined) throw new Error(`test setup: ${text} did not parse`);
  return a;
}

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (c === undefined) throw new Error(`test setup: ${text} did not parse`);
  return c;
}

describe('parseIp', () => {
  test('IPv4 bytes', () => {
    const a = ip('192.0.2.1');
    expect(a.family).toBe(4);
    expect([...a.bytes]).toEqual([192, 0, 2, 1]);
    expect([...ip('0.0.0.0').bytes]).toEqual([0, 0, 0, 0]);
    expect([...ip('255.255.255.255').bytes]).toEqual([255, 255, 255, 255]);
  });

  test('IPv6 bytes, with and without compression and embedded IPv4', () => {
    const a = ip('2001:db8::1');
    expect(a.family).toBe(6);
    expect([...a.bytes]).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect([...ip('::').bytes]).toEqual(new Array(16).fill(0));
    expect([...ip('1:2:3:4:5:6:7:8').bytes]).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect([...ip('64:ff9b::192.0.2.33').bytes].slice(12)).toEqual([192, 0, 2, 33]);
    expect(formatIp(ip('1::'))).toBe('1::');
  });

  test('IPv4-mapped IPv6 becomes IPv4', () => {
    const a = ip('::ffff:192.0.2.7');
    expect(a.family).toBe(4);
    expect([...a.bytes]).toEqual([192, 0, 2, 7]);
    expect(canonicalIp('::FFFF:c000:0207')).toBe('192.0.2.7');
    expect(canonicalIp('IPv6:::ffff:192.0.2.7')).toBe('192.0.2.7');
  });

  test('parseCanonicalIp: the parsed address and formatIp of it, whatever form the text had', () => {
    for (const text of ['192.0.2.7', '0.0.0.0', '255.255.255.255', '[192.0.2.7]', '::ffff:192.0.2.7', 'IPv6:::FFFF:192.0.2.7', '2001:DB8::1', '[IPv6:2001:db8::1]']) {
      const parsed = parseCanonicalIp(text);
      const ip = parseIp(text);
      if (ip === undefined) throw new Error(`${text} should parse`);
      expect(parsed).toEqual({ ip, text: formatIp(ip) });
    }
    expect(parseCanonicalIp('192.0.2.07')).toBeUndefined();
    expect(parseCanonicalIp('not an address')).toBeUndefined();
  });

  test('IPv6: prefix and brackets as in SMTP address literals', () => {
    expect(canonicalIp('IPv6:2001:DB8::1')).toBe('2001:db8::1');
    expect(canonicalIp('ipv6:2001:db8::1')).toBe('2001:db8::1');
    expect(canonicalIp('IPV6:2001:db8::1')).toBe('2001:db8::1');
    expect(canonicalIp('iPv6:2001:db8::1')).toBe('2001:db8::1');
    expect(canonicalIp('IPv4:192.0.2.1')).toBeUndefined();
    expect(canonicalIp('IPv6;2001:db8::1')).toBeUndefined();
    expect(canonicalIp('[2001:db8::1]')).toBe('2001:db8::1');
    expect(canonicalIp('[IPv6:2001:db8::1]')).toBe('2001:db8::1');
    expect(canonicalIp('[192.0.2.1]')).toBe('192.0.2.1');
  });

  test.each([
    '',
    'unknown',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '1.2.3.4 ',
    ' 1.2.3.4',
    '1..2.3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1::2::3',
    ':::',
    ':1::',
    '1:',
    '12345::',
    'g::1',
    'fe80::1%eth0',
    '[2001:db8::1',
    'IPv6:192.0.2.1x',
    '1:2:3:4:5:6:7::8:9',
    '::1.2.3.4.5',
    '1.2.3.4::',
    'x'.repeat(100),
  ])('garbage %j -> undefined', (text) => {
    expect(parseIp(text)).toBeUndefined();
    expect(canonicalIp(text)).toBeUndefined();
  });
});

describe('canonical text (RFC 5952)', () => {
  test.each([
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    ['2001:db8::0:1', '2001:db8::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // longest run wins
    ['fe80::', 'fe80::'],
    ['::', '::'],
    ['192.000.2.1'.replace('000', '0'), '192.0.2.1'],
  ])('%s -> %s', (input, expected) => {
    expect(canonicalIp(input)).toBe(expected);
  });
});

describe('networkKey', () => {
  test('IPv4 /24 and /16, /32, /0', () => {
    expect(networkKey('192.0.2.77', 24)).toBe('192.0.2.0/24');
    expect(networkKey(ip('198.51.100.200'), 16)).toBe('198.51.0.0/16');
    expect(networkKey('198.51.100.200', 25)).toBe('198.51.100.128/25');
    expect(networkKey('192.0.2.77', 32)).toBe('192.0.2.77/32');
    expect(networkKey('192.0.2.77', 0)).toBe('0.0.0.0/0');
  });

  test('IPv6 /64 and /48', () => {
    expect(networkKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 64)).toBe('2001:db8:1:2::/64');
    expect(networkKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 48)).toBe('2001:db8:1::/48');
    expect(networkKey('IPv6:2001:DB8:1:2::1', 64)).toBe('2001:db8:1:2::/64');
    expect(networkKey('2001:db8:1:2:8000::', 65)).toBe('2001:db8:1:2:8000::/65');
  });

  test('an IPv4-mapped client gets an IPv4 network', () => {
    expect(networkKey('::ffff:192.0.2.77', 24)).toBe('192.0.2.0/24');
  });

  test('out of range prefix or bad address -> undefined', () => {
    expect(networkKey('192.0.2.1', 33)).toBeUndefined();
    expect(networkKey('2001:db8::1', 129)).toBeUndefined();
    expect(networkKey('192.0.2.1', -1)).toBeUndefined();
    expect(networkKey('192.0.2.1', 1.5)).toBeUndefined();
    expect(networkKey('nope', 24)).toBeUndefined();
  });
});

describe('CIDR', () => {
  test('parse and format', () => {
    expect(formatCidr(cidr('192.0.2.0/24'))).toBe('192.0.2.0/24');
    expect(formatCidr(cidr('198.51.100.7'))).toBe('198.51.100.7/32');
    expect(formatCidr(cidr('2001:DB8::/32'))).toBe('2001:db8::/32');
    expect(formatCidr(cidr('::1'))).toBe('::1/128');
    expect(formatCidr(cidr('::ffff:192.0.2.0/120'))).toBe('192.0.2.0/24');
    expect(formatCidr(cidr('192.0.2.9/24'))).toBe('192.0.2.0/24'); // host bits zeroed...
    expect(cidrHasHostBits('192.0.2.9/24')).toBe(true); // ...but reported
    expect(cidrHasHostBits('192.0.2.0/24')).toBe(false);
    expect(cidrHasHostBits('2001:db8::1/64')).toBe(true);
  });

  test.each(['192.0.2.0/33', '2001:db8::/129', '192.0.2.0/', '192.0.2.0/024', '192.0.2.0/x', 'foo/8', '/8'])(
    'bad CIDR %j -> undefined',
    (text) => {
      expect(parseCidr(text)).toBeUndefined();
    },
  );

  test('cidrContains', () => {
    expect(cidrContains(cidr('192.0.2.0/24'), ip('192.0.2.255'))).toBe(true);
    expect(cidrContains(cidr('192.0.2.0/24'), ip('192.0.3.0'))).toBe(false);
    expect(cidrContains(cidr('192.0.2.128/25'), ip('192.0.2.127'))).toBe(false);
    expect(cidrContains(cidr('192.0.2.128/25'), ip('192.0.2.128'))).toBe(true);
    expect(cidrContains(cidr('0.0.0.0/0'), ip('203.0.113.1'))).toBe(true);
    expect(cidrContains(cidr('2001:db8::/32'), ip('2001:db8:ffff::1'))).toBe(true);
    expect(cidrContains(cidr('2001:db8::/32'), ip('2001:db9::1'))).toBe(false);
    expect(cidrContains(cidr('2001:db8::/32'), ip('192.0.2.1'))).toBe(false); // families never mix
    expect(cidrContains(cidr('::1'), ip('::1'))).toBe(true);
  });

  test('compiled list agrees with cidrContains on mixed, overlapping and adjacent networks', () => {
    const list = ['192.0.2.0/25', '192.0.2.128/25', '10.0.0.0/8', '10.1.0.0/16', '198.51.100.7', '2001:db8::/32', '2001:db8:1::/48', '::1', 'fe80::/10'];
    const m = compileCidrList(list);
    const cidrs = list.map(cidr);
    const probes = [
      '192.0.2.0', '192.0.2.127', '192.0.2.128', '192.0.2.255', '192.0.3.0', '192.0.1.255', '10.255.255.255', '11.0.0.0', '9.255.255.255',
      '198.51.100.7', '198.51.100.8', '198.51.100.6', '0.0.0.0', '255.255.255.255',
      '2001:db8::', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db9::', '2001:db7:ffff::', '::1', '::2', '::', 'fe80::1', 'febf:ffff::1', 'fec0::',
    ];
    for (const p of probes) {
      const a = ip(p);
      expect([p, m(a)]).toEqual([p, cidrs.some((c) => cidrContains(c, a))]);
    }
    expect(m(undefined)).toBe(false);
    expect(compileCidrList([])(ip('192.0.2.1'))).toBe(false);
    expect(compileCidrList(['0.0.0.0/0'])(ip('2001:db8::1'))).toBe(false);
    expect(compileCidrList(['::/0'])(ip('2001:db8::1'))).toBe(true);
  });
});

describe('properties', () => {
  test('parse(format(bytes)) gives the bytes back; format is a fixed point', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.boolean(), (bytes, v4) => {
        const addr: IpAddress = v4 ? { family: 4, bytes: bytes.slice(0, 4) } : { family: 6, bytes };
        const text = formatIp(addr);
        const back = parseIp(text);
        const mapped = !v4 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
        if (mapped) {
          expect(back?.family).toBe(4);
          expect([...(back?.bytes ?? [])]).toEqual([...bytes.slice(12)]);
        } else {
          expect(back?.family).toBe(addr.family);
          expect([...(back?.bytes ?? [])]).toEqual([...addr.bytes]);
          expect(canonicalIp(text)).toBe(text);
        }
      }),
    );
  });

  test('parseIp never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.[]/%IPv6 x'.split('')), maxLength: 50 }), (s) => {
        const a = parseIp(s);
        if (a !== undefined) expect(a.bytes.length).toBe(a.family === 4 ? 4 : 16);
      }),
    );
  });
});
