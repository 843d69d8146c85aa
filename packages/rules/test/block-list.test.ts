import { blockAdd, blockedBy, blockRemove, liveBlocks, normaliseNetwork, type BlockList } from '../src/block-list.js';

describe('block list', () => {
  test('addresses and networks are normalised to canonical CIDRs', () => {
    expect(normaliseNetwork('192.0.2.7')).toBe('192.0.2.7/32');
    expect(normaliseNetwork(' 2001:DB8::1 ')).toBe('2001:db8::1/128');
    expect(normaliseNetwork('198.51.100.0/24')).toBe('198.51.100.0/24');
    expect(normaliseNetwork('not an address')).toBeUndefined();
  });

  test('blocks by address and network, until a time or for good; replaces and removes', () => {
    let list: BlockList = [];
    list = blockAdd(list, { network: '192.0.2.7/32', until: 1000, reason: 'worm', since: 0 }, 0);
    list = blockAdd(list, { network: '2001:db8::/48', until: undefined, reason: 'spam run', since: 0 }, 0);
    expect(blockedBy(list, '192.0.2.7', 500)?.reason).toBe('worm');
    expect(blockedBy(list, '192.0.2.7', 1000)).toBeUndefined();
    expect(blockedBy(list, '2001:db8:0:5::25', 5000)?.network).toBe('2001:db8::/48');
    expect(blockedBy(list, '198.51.100.1', 0)).toBeUndefined();
    expect(blockedBy(list, undefined, 0)).toBeUndefined();
    list = blockAdd(list, { network: '192.0.2.7/32', until: undefined, reason: 'again', since: 10 }, 10);
    expect(list.filter((e) => e.network === '192.0.2.7/32')).toHaveLength(1);
    const removed = blockRemove(list, '192.0.2.7/32', 20);
    expect(removed.removed).toBe(true);
    expect(blockRemove(removed.list, '192.0.2.7/32', 20).removed).toBe(false);
  });

  test('expired entries are dropped at the next change', () => {
    const list = blockAdd([], { network: '192.0.2.1/32', until: 100, reason: 'x', since: 0 }, 0);
    expect(liveBlocks(list, 200)).toEqual([]);
    expect(blockAdd(list, { network: '192.0.2.2/32', until: undefined, reason: 'y', since: 200 }, 200).map((e) => e.network)).toEqual(['192.0.2.2/32']);
  });
});
