/**
 * zip-names - the file names inside a zip archive, read from its central
 * directory (PKWARE APPNOTE 4.3.12, 4.3.16), so worms that hide a .pif or
 * .scr in a zip are caught like bare ones. Pure, bounds-checked on every
 * read: a hostile archive yields an error result, never an exception or a
 * read past the buffer.
 *
 * LIMITATIONS: zip64 archives and archives with a comment longer than the
 * search window are reported as unreadable; names in encrypted archives are
 * still listed (they are not encrypted); nested archives are not opened.
 */

const EOCD_SIGNATURE = 0x06054b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const EOCD_SIZE = 22;
/** EOCD is within the last 22 + 65535 (max comment) bytes. */
const EOCD_SEARCH = EOCD_SIZE + 0xffff;
const CENTRAL_HEADER_SIZE = 46;

export type ZipNamesResult =
  | { readonly ok: true; readonly names: readonly string[]; readonly truncated: boolean }
  | { readonly ok: false; readonly error: string };

/** zipEntryNames - up to `maxNames` entry names of the archive in `zip`. */
export function zipEntryNames(zip: Uint8Array, maxNames = 1000): ZipNamesResult {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const size = zip.byteLength;
  if (size < EOCD_SIZE) return { ok: false, error: 'too short to be a zip archive' };
  let eocd = -1;
  for (let i = size - EOCD_SIZE; i >= Math.max(0, size - EOCD_SEARCH); i--) {
    if (view.getUint32(i, true) === EOCD_SIGNATURE) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return { ok: false, error: 'no end-of-central-directory record' };
  const entries = view.getUint16(eocd + 10, true);
  const cdSize = view.getUint32(eocd + 12, true);
  const cdOffset = view.getUint32(eocd + 16, true);
  if (entries === 0xffff || cdOffset === 0xffffffff) return { ok: false, error: 'zip64 archives are not read' };
  if (cdOffset + cdSize > eocd) return { ok: false, error: 'central directory outside the archive' };
  const names: string[] = [];
  let at = cdOffset;
  for (let n = 0; n < entries; n++) {
    if (names.length >= maxNames) return { ok: true, names, truncated: true };
    if (at + CENTRAL_HEADER_SIZE > eocd || view.getUint32(at, true) !== CENTRAL_SIGNATURE) {
      return { ok: false, error: `central directory entry ${n + 1} is damaged` };
    }
    const flags = view.getUint16(at + 8, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const nameStart = at + CENTRAL_HEADER_SIZE;
    if (nameStart + nameLength > eocd) return { ok: false, error: `central directory entry ${n + 1} runs past the directory` };
    // Bit 11: the name is UTF-8; otherwise it is CP437, whose ASCII part is what matters for extensions.
    const bytes = zip.subarray(nameStart, nameStart + nameLength);
    names.push(Buffer.from(bytes).toString((flags & 0x0800) !== 0 ? 'utf8' : 'latin1'));
    at = nameStart + nameLength + extraLength + commentLength;
  }
  return { ok: true, names, truncated: false };
}
