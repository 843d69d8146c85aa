/**
 * message-scanner - the MIME structure of a message as it streams past the
 * milter, without keeping the message: headers and body chunks go into
 * mailsplit's Splitter, which reports each MIME node (type, disposition,
 * decoded file name) and passes body bytes through; we keep only the node
 * metadata, so memory is bounded by the limits below, not by message size.
 *
 * Zip attachments are the one exception to "keep nothing": their encoded
 * body is held, up to maxArchiveBytes, so the names inside can be listed
 * (zip-names.ts) and matched like bare attachments (worms hid .pif and .scr
 * files in zips). A larger archive is listed by its own name only.
 *
 * LIMITATIONS: only zip archives, only base64 or unencoded ones, not nested.
 * message/rfc822 parts are descended into (their parts are listed too).
 */

import type { Transform } from 'node:stream';
import { Splitter } from '@zone-eu/mailsplit';
import type { AttachmentFact, HeaderFact, MessageFacts } from '@levee/rules';
import { zipEntryNames } from './zip-names.js';

export interface MessageScannerLimits {
  /** Attachments listed at most; more are counted in `parts` only. */
  readonly maxAttachments: number;
  /** Largest header block of one MIME node (mailsplit's maxHeadSize). */
  readonly maxNodeHeaderBytes: number;
  /** Largest zip attachment (as encoded in the message) whose contents are listed. */
  readonly maxArchiveBytes: number;
}

export const DEFAULT_SCANNER_LIMITS: MessageScannerLimits = {
  maxAttachments: 100,
  maxNodeHeaderBytes: 256 * 1024,
  maxArchiveBytes: 8 * 1024 * 1024,
};

/** Parts that carry the headers of a returned message (bounces, DSNs). */
const RETURNED_HEADER_TYPES: ReadonlySet<string> = new Set(['message/rfc822', 'text/rfc822-headers', 'message/rfc822-headers']);
/** Most bytes of a returned message kept to find its header block. */
const MAX_RETURNED_BYTES = 64 * 1024;
/** Most Received lines kept from returned messages. */
const MAX_RETURNED_RECEIVED = 50;

/** The Received header values of a header block (unfolded, trimmed). */
function receivedLines(text: string): string[] {
  const block = text.split(/\r?\n\r?\n/, 1)[0] ?? '';
  const unfolded = block.replace(/\r?\n[ \t]+/g, ' ');
  const out: string[] = [];
  for (const line of unfolded.split(/\r?\n/)) {
    const m = /^received:\s*(.*)$/i.exec(line);
    if (m !== null) out.push((m[1] ?? '').trim());
  }
  return out;
}

/** A zip attachment being collected. */
interface PendingArchive {
  readonly name: string;
  readonly base64: boolean;
  readonly chunks: Buffer[];
  bytes: number;
  tooLarge: boolean;
}

function isZip(filename: string | undefined, contentType: string): boolean {
  return (filename !== undefined && filename.toLowerCase().endsWith('.zip')) || /^application\/(x-)?zip(-compressed)?$/.test(contentType);
}

/** A field name as RFC 5322 has it: printable ASCII, no colon, no white space. */
const FIELD_NAME = /^[!-9;-~]+$/;
/** A CR, or an LF that does not fold (is not followed by white space): it would start a line of its own. */
const LINE_BREAK = /\r|\n(?![ \t])/;

/**
 * A top-level header that cannot change how the splitter reads the others: a
 * plain field name and a value whose only line breaks are folds. While every
 * header of a block is plain, leaving out those that are not Content-* gives
 * the splitter the same Content-Type, Content-Disposition and
 * Content-Transfer-Encoding (it reads headers by lower-cased name, first one
 * first) and no other header changes what it reports; a header that is not
 * plain (a bare line break could end the block or add a line, a name with a
 * space could read as an mbox "From " line or a fold) sends the whole block
 * through as before.
 */
function plainHeader(name: string, value: string): boolean {
  return FIELD_NAME.test(name) && !LINE_BREAK.test(value);
}

function isContentHeader(name: string): boolean {
  return name.length > 8 && name.slice(0, 8).toLowerCase() === 'content-';
}

/** What a header's lines count for against mailsplit's maxHeadSize, at most (64 bytes at least per line). */
function headerLineCost(line: string): number {
  let lines = 0;
  for (let i = line.indexOf('\n'); i >= 0; i = line.indexOf('\n', i + 1)) lines++;
  return Buffer.byteLength(line) + 64 * lines;
}

export interface MessageScanner {
  /** One top-level header, as the milter passed it (folds as "\n" + white space). */
  header(name: string, value: string): void;
  endOfHeaders(): void;
  body(chunk: Uint8Array): void;
  /** End of message: the facts. Never rejects: a parse problem yields what was seen. */
  finish(headers: readonly HeaderFact[]): Promise<MessageFacts>;
  /** The message was abandoned. */
  abort(): void;
}

/** createMessageScanner - a scanner for one message. */
export function createMessageScanner(limits: MessageScannerLimits = DEFAULT_SCANNER_LIMITS): MessageScanner {
  const splitter = new Splitter({ maxHeadSize: limits.maxNodeHeaderBytes });
  // mailsplit's typings declare only 'data'; its lifecycle events are Transform's.
  const stream = splitter as unknown as Transform;
  const attachments: AttachmentFact[] = [];
  let parts = 0;
  let bodyBytes = 0;
  let broken = false;
  let headersEnded = false;
  let archive: PendingArchive | undefined;
  let returned: { chunks: Buffer[]; bytes: number } | undefined;
  let returnedReceived: string[] | undefined;
  let report: string | undefined;

  const closeReturned = (): void => {
    const r = returned;
    returned = undefined;
    if (r === undefined) return;
    returnedReceived ??= [];
    for (const line of receivedLines(Buffer.concat(r.chunks).toString('latin1'))) {
      if (returnedReceived.length < MAX_RETURNED_RECEIVED) returnedReceived.push(line);
    }
  };

  /** List the names inside the archive collected so far, if it was small enough. */
  const closeArchive = (): void => {
    const a = archive;
    archive = undefined;
    if (a === undefined || a.tooLarge) return;
    const raw = Buffer.concat(a.chunks);
    const listed = zipEntryNames(a.base64 ? Buffer.from(raw.toString('latin1'), 'base64') : raw, limits.maxAttachments);
    if (!listed.ok) return;
    for (const filename of listed.names) {
      if (attachments.length >= limits.maxAttachments) return;
      if (!filename.endsWith('/')) attachments.push({ filename, contentType: 'application/octet-stream', archive: a.name });
    }
  };

  splitter.on('data', (chunk) => {
    if (chunk.type === 'body') {
      if (returned !== undefined && returned.bytes < MAX_RETURNED_BYTES) {
        const room = MAX_RETURNED_BYTES - returned.bytes;
        returned.chunks.push(chunk.value.length > room ? chunk.value.subarray(0, room) : chunk.value);
        returned.bytes += Math.min(room, chunk.value.length);
      }
      if (archive !== undefined && !archive.tooLarge) {
        archive.bytes += chunk.value.length;
        if (archive.bytes > limits.maxArchiveBytes) {
          archive.tooLarge = true;
          archive.chunks.length = 0;
        } else archive.chunks.push(chunk.value);
      }
      return;
    }
    if (chunk.type !== 'node') return;
    closeArchive();
    closeReturned();
    if (chunk.root && chunk.contentType === 'multipart/report') {
      const type = /report-type\s*=\s*"?([A-Za-z0-9._-]+)/i.exec(chunk.headers === false ? '' : chunk.headers.getFirst('content-type'));
      report = (type?.[1] ?? 'unknown').toLowerCase();
    }
    if (chunk.multipart !== false) return;
    parts++;
    if (chunk.contentType !== false && RETURNED_HEADER_TYPES.has(chunk.contentType.toLowerCase())) returned = { chunks: [], bytes: 0 };
    const filename = chunk.filename === false ? undefined : chunk.filename;
    if (filename === undefined && chunk.disposition !== 'attachment') return;
    if (attachments.length >= limits.maxAttachments) return;
    const contentType = (chunk.contentType === false ? 'application/octet-stream' : chunk.contentType).toLowerCase();
    attachments.push(filename === undefined ? { contentType } : { filename, contentType });
    const encoding = chunk.encoding === false ? '7bit' : chunk.encoding;
    if (isZip(filename, contentType) && ['base64', '7bit', '8bit', 'binary'].includes(encoding)) {
      archive = { name: filename ?? 'unnamed.zip', base64: encoding === 'base64', chunks: [], bytes: 0, tooLarge: false };
    }
  });
  stream.on('error', () => {
    broken = true;
  });

  const write = (data: Uint8Array | string): void => {
    if (!broken) stream.write(data);
  };

  // The top-level header block is held until it ends (see plainHeader), then the
  // splitter is given its Content-* headers only: they are all it reads of that
  // block, and parsing every Received line of every message cost more than the
  // rest of the scan. Held: the lines, which are Content-*, and what the whole
  // block would cost the splitter (bytes, 64 at least per line, as mailsplit counts).
  let held: { lines: string[]; content: boolean[]; cost: number } | undefined = { lines: [], content: [], cost: 0 };
  /** Give the splitter every held line (a header that is not plain, or a large block): the old, whole path. */
  const releaseHeld = (): void => {
    const h = held;
    held = undefined;
    if (h !== undefined && h.lines.length > 0) write(h.lines.join(''));
  };

  return {
    header(name, value) {
      const line = `${name}: ${value.replace(/\r?\n/g, '\r\n')}\r\n`;
      if (held === undefined) {
        write(line);
        return;
      }
      held.lines.push(line);
      held.content.push(isContentHeader(name));
      held.cost += headerLineCost(line);
      if (!plainHeader(name, value) || held.cost > limits.maxNodeHeaderBytes / 2) releaseHeld();
    },
    endOfHeaders() {
      if (headersEnded) return;
      headersEnded = true;
      const h = held;
      held = undefined;
      if (h === undefined) {
        write('\r\n');
        return;
      }
      let block = '';
      for (let i = 0; i < h.lines.length; i++) if (h.content[i] === true) block += h.lines[i] as string;
      write(`${block}\r\n`);
    },
    body(chunk) {
      if (!headersEnded) this.endOfHeaders();
      bodyBytes += chunk.byteLength;
      write(chunk);
    },
    finish(headers) {
      if (!headersEnded) this.endOfHeaders();
      return new Promise<MessageFacts>((resolve) => {
        const done = (): void => {
          closeArchive();
          closeReturned();
          resolve({
            headers,
            attachments,
            parts,
            bodyBytes,
            ...(report === undefined ? {} : { report }),
            ...(returnedReceived === undefined ? {} : { returnedReceived }),
          });
        };
        if (broken) {
          done();
          return;
        }
        stream.once('end', done);
        stream.once('error', done);
        stream.end();
      });
    },
    abort() {
      broken = true;
      stream.destroy();
    },
  };
}
