import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { zipEntryNames } from '../src/zip-names.js';

/** A minimal but valid zip (stored or deflated entries), built here so the vectors are ours. */
function makeZip(files: { name: string; data: Buffer; utf8?: boolean }[], comment = ''): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, f.utf8 === true ? 'utf8' : 'latin1');
    const data = deflateRawSync(f.data);
    const flags = f.utf8 === true ? 0x0800 : 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(f.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(f.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  eocd.writeUInt16LE(Buffer.byteLength(comment), 20);
  return Buffer.concat([...locals, cd, eocd, Buffer.from(comment)]);
}

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
