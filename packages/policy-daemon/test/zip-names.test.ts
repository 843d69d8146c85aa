import fc from 'fast-check';
import { zipEntryNames } from '../src/zip-names.js';
import { makeZip } from './support/zip.js';

describe('zipEntryNames', () => {
  test('lists every entry, including nested paths, with a trailing comment', () => {
    const zip = makeZip(
      [
        { name: 'readme.txt', data: Buffer.from('hello') },
        { name: 'docs/invoice.pdf.pif', data: Buffer.alloc(1000, 1) },
        { name: 'bücher.scr', data: Buffer.from('x'), utf8: true },
      ],
      'a comment',
    );
    expect(zipEntryNames(zip)).toEqual({ ok: true, names: ['readme.txt', 'docs/invoice.pdf.pif', 'bücher.scr'], truncated: false });
  });

  test('stops at maxNames', () => {
    const zip = makeZip(Array.from({ length: 5 }, (_, i) => ({ name: `f${i}.txt`, data: Buffer.from('x') })));
    expect(zipEntryNames(zip, 2)).toEqual({ ok: true, names: ['f0.txt', 'f1.txt'], truncated: true });
  });

  test('damage is an error result, not an exception', () => {
    const zip = makeZip([{ name: 'a.exe', data: Buffer.from('MZ') }]);
    expect(zipEntryNames(Buffer.from('not a zip at all, just text'))).toEqual({ ok: false, error: 'no end-of-central-directory record' });
    expect(zipEntryNames(Buffer.alloc(5))).toEqual({ ok: false, error: 'too short to be a zip archive' });
    const cut = zip.subarray(zip.length - 40); // EOCD kept, directory gone
    expect(zipEntryNames(cut).ok).toBe(false);
    const lying = Buffer.from(zip);
    lying.writeUInt16LE(60000, zip.length - 22 + 10); // claims 60000 entries
    expect(zipEntryNames(lying)).toMatchObject({ ok: false });
  });

  test('never throws and never invents names on random or mutated archives', () => {
    const base = makeZip([
      { name: 'one.txt', data: Buffer.from('1') },
      { name: 'two.pif', data: Buffer.from('2') },
    ]);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (edits) => {
        const z = Buffer.from(base);
        for (const [at, value] of edits) z[at] = value;
        const r = zipEntryNames(z);
        if (r.ok) expect(r.names.length).toBeLessThanOrEqual(1000);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        expect(() => zipEntryNames(bytes)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });
});
