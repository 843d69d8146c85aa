import fc from 'fast-check';
import { batvSign, batvStrip, batvVerify } from '../src/batv.js';

const key = { id: 3, secret: 'correct horse battery staple' };
const DAY = 86_400_000;
const now = Date.UTC(2026, 10, 24);

describe('BATV prvs', () => {
  test('sign gives prvs=K DDD SSSSSS=local@domain, and verify accepts it until it expires', () => {
    const signed = batvSign('alice@example.org', key, now, 7);
    expect(signed).toMatch(/^prvs=3\d{3}[0-9a-f]{6}=alice@example\.org$/);
    expect(batvVerify(signed, [key], now)).toBe('valid');
    expect(batvVerify(signed, [key], now + 7 * DAY)).toBe('valid');
    expect(batvVerify(signed, [key], now + 8 * DAY)).toBe('expired');
    expect(batvStrip(signed)).toBe('alice@example.org');
  });

  test('a forged or altered tag is refused; a rotated-away key is unknown; plain addresses are unsigned', () => {
    const signed = batvSign('alice@example.org', key, now);
    expect(batvVerify(signed.replace(/=alice@/, '=mallory@'), [key], now)).toBe('bad-signature');
    expect(batvVerify(signed, [{ id: 3, secret: 'another' }], now)).toBe('bad-signature');
    expect(batvVerify(signed, [{ id: 4, secret: key.secret }], now)).toBe('unknown-key');
    expect(batvVerify('alice@example.org', [key], now)).toBe('unsigned');
    expect(batvVerify('prvs=3123zzzzzz=alice@example.org', [key], now)).toBe('unsigned');
  });

  test('the null sender and already signed addresses are left alone', () => {
    expect(batvSign('', key, now)).toBe('');
    const once = batvSign('bob@example.org', key, now);
    expect(batvSign(once, key, now + DAY)).toBe(once);
  });

  test('day numbers wrap mod 1000 correctly around the wrap point', () => {
    // Find a day whose number ends in 998 and sign for 7 days: the tag says 005.
    const day998 = (Math.floor(now / DAY / 1000) * 1000 + 998) * DAY;
    const signed = batvSign('w@example.org', key, day998, 7);
    expect(signed).toMatch(/^prvs=3005/);
    expect(batvVerify(signed, [key], day998 + 6 * DAY)).toBe('valid');
    expect(batvVerify(signed, [key], day998 + 8 * DAY)).toBe('expired');
  });

  test('property: whatever the address and day, sign then verify is valid and strip gives the address back', () => {
    fc.assert(
      fc.property(fc.emailAddress(), fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 1, max: 60 }), (address, day, valid) => {
        const at = day * DAY;
        const signed = batvSign(address, key, at, valid);
        expect(batvVerify(signed, [key], at)).toBe('valid');
        expect(batvStrip(signed)).toBe(address);
      }),
      { numRuns: 300 },
    );
  });
});
