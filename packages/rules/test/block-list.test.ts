import { blockedBy, compileBlockList, liveBlocks, normaliseNetwork, type BlockList } from '../src/block-list.js';
import { cidrContains, parseCidr, parseIp } from '../src/ip.js';

describe('block list', () => {
  test('addresses and networks are normalised to canonical CIDRs', () => {
    expect(normaliseNetwork('192.0.2.7')).toBe('192.0.2.7/32');
    expect(normaliseNetwork(' 2001:DB8::1 ')).toBe('2001:db8::1/128');
    expect(normaliseNetwork('198.51.100.0/24')).toBe('198.51.100.0/24');
    expect(normaliseNetwork('not an address')).toBeUndefined();
  });

  const list: BlockList = [
    { network: '192.0.2.7/32', until: 1000, reason: 'worm', since: 0 },
    { network: '2001:db8::/48', until: undefined, reason: 'spam run', since: 0 },
    { network: '192.0.2.0/24', until: 5000, reason: 'whole net', since: 0 },
  ];

  test('blocks by address and network, until a time or for good', () => {
    expect(blockedBy(list, '192.0.2.7', 500)?.reason).toBe('worm');
    // The host entry expired: the network entry still holds, until it expires too.
    expect(blockedBy(list, '192.0.2.7', 1000)?.reason).toBe('whole net');
    expect(blockedBy(list, '192.0.2.7', 5000)).toBeUndefined();
    expect(blockedBy(list, '2001:db8:0:5::25', 5000)?.network).toBe('2001:db8::/48');
    expect(blockedBy(list, '198.51.100.1', 0)).toBeUndefined();
    expect(blockedBy(list, undefined, 0)).toBeUndefined();
    expect(blockedBy(list, 'not an address', 0)).toBeUndefined();
    expect(blockedBy([], '192.0.2.7', 0)).toBeUndefined();
  });

  test('a compiled list answers like a scan of every entry, for addresses in and around each network', () => {
    const lookup = compileBlockList(list);
    const probes = ['192.0.2.6', '192.0.2.7', '192.0.2.8', '192.0.2.255', '192.0.3.0', '192.0.1.255', '2001:db8::1', '2001:db8:1::1', '2001:db7:ffff::1', '::ffff:192.0.2.7'];
    for (const now of [0, 999, 1000, 4999, 5000]) {
      for (const probe of probes) {
        const ip = parseIp(probe);
        const scan = list.find((e) => (e.until === undefined || e.until > now) && ip !== undefined && cidrContains(parseCidr(e.network)!, ip));
        expect([probe, now, lookup(ip, now)]).toEqual([probe, now, scan]);
      }
    }
    expect(compileBlockList([])(parseIp('192.0.2.7'), 0)).toBeUndefined();
    expect(compileBlockList([{ network: 'garbage', until: undefined, reason: '', since: 0 }])(parseIp('192.0.2.7'), 0)).toBeUndefined();
  });

  test('liveBlocks drops expired entries, and returns the same list when none expired', () => {
    expect(liveBlocks(list, 200)).toBe(list);
    expect(liveBlocks(list, 1000).map((e) => e.network)).toEqual(['2001:db8::/48', '192.0.2.0/24']);
  });
});
