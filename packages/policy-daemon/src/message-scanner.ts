/**
 * message-scanner - the MIME structure of a message as it streams past the
 * milter, without keeping the message: headers and body chunks go into
 * mailsplit's Splitter, which reports each MIME node (type, disposition,
 * decoded file name) and passes body bytes through; we keep only the node
 * metadata, so memory is bounded by the limits below, not by message size.
 *
 * LIMITATIONS: attachments inside archives (zip) are not opened here.
 * message/rfc822 parts are descended into (their parts are listed too).
 */

import type { Transform } from 'node:stream';
import { Splitter } from '@zone-eu/mailsplit';
import type { AttachmentFact, HeaderFact, MessageFacts } from '@levee/rules';

export interface MessageScannerLimits {
  /** Attachments listed at most; more are counted in `parts` only. */
  readonly maxAttachments: number;
  /** Largest header block of one MIME node (mailsplit's maxHeadSize). */
  readonly maxNodeHeaderBytes: number;
}

export const DEFAULT_SCANNER_LIMITS: MessageScannerLimits = { maxAttachments: 100, maxNodeHeaderBytes: 256 * 1024 };

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

  splitter.on('data', (chunk) => {
    if (chunk.type !== 'node' || chunk.multipart !== false) return;
    parts++;
    const filename = chunk.filename === false ? undefined : chunk.filename;
    if (filename === undefined && chunk.disposition !== 'attachment') return;
    if (attachments.length >= limits.maxAttachments) return;
    const contentType = (chunk.contentType === false ? 'application/octet-stream' : chunk.contentType).toLowerCase();
    attachments.push(filename === undefined ? { contentType } : { filename, contentType });
  });
  stream.on('error', () => {
    broken = true;
  });

  const write = (data: Uint8Array | string): void => {
    if (!broken) stream.write(data);
  };

  return {
    header(name, value) {
      write(`${name}: ${value.replace(/\r?\n/g, '\r\n')}\r\n`);
    },
    endOfHeaders() {
      if (headersEnded) return;
      headersEnded = true;
      write('\r\n');
    },
    body(chunk) {
      if (!headersEnded) this.endOfHeaders();
      bodyBytes += chunk.byteLength;
      write(chunk);
    },
    finish(headers) {
      if (!headersEnded) this.endOfHeaders();
      return new Promise<MessageFacts>((resolve) => {
        const done = (): void => resolve({ headers, attachments, parts, bodyBytes });
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
