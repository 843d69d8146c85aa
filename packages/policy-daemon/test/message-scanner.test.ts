import { createMessageScanner, DEFAULT_SCANNER_LIMITS, type MessageScannerLimits } from '../src/message-scanner.js';
import { makeZip } from './support/zip.js';

function mime(parts: { filename: string; contentType: string; content: Buffer }[]): string {
  const lines = ['preamble'];
  for (const p of parts) {
    lines.push('--XX', `Content-Type: ${p.contentType}; name="${p.filename}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${p.filename}"`, '');
    lines.push(p.content.toString('base64').replace(/.{76}/g, '$&\r\n'));
  }
  lines.push('--XX--', '');
  return lines.join('\r\n');
}

async function scan(body: string, limits: MessageScannerLimits = DEFAULT_SCANNER_LIMITS, chunk = 1000) {
  const scanner = createMessageScanner(limits);
  const headers = [
    { name: 'Subject', value: 'test' },
    { name: 'Content-Type', value: 'multipart/mixed;\n\tboundary="XX"' },
  ];
  for (const h of headers) scanner.header(h.name, h.value);
  scanner.endOfHeaders();
  const bytes = Buffer.from(body);
  for (let i = 0; i < bytes.length; i += chunk) scanner.body(bytes.subarray(i, i + chunk));
  return scanner.finish(headers);
}

describe('message scanner', () => {
  test('lists attachments with decoded names and types; counts parts and body bytes; folded headers parse', async () => {
    const body = mime([
      { filename: 'photo.jpg', contentType: 'image/jpeg', content: Buffer.alloc(5000, 1) },
      { filename: '=?UTF-8?B?cmVjaG51bmcucGlm?=', contentType: 'application/octet-stream', content: Buffer.from('MZ') },
    ]);
    const facts = await scan(body);
    expect(facts.attachments).toEqual([
      { filename: 'photo.jpg', contentType: 'image/jpeg' },
      { filename: 'rechnung.pif', contentType: 'application/octet-stream' },
    ]);
    expect(facts.parts).toBe(2); // leaves only: the multipart root is not a part
    expect(facts.bodyBytes).toBe(Buffer.byteLength(body));
  });

  // The splitter finds line ends with Buffer#indexOf (patches/@zone-eu__mailsplit@5.4.30.patch):
  // chunks that end mid-line, on an LF, between CR and LF, or hold no LF at all must give the
  // same facts as one write. The zip's names are read from the bytes passed through, so a
  // line split one byte off would also lose them.
  test('the same facts however the body is cut into chunks', async () => {
    const zip = makeZip([{ name: 'inner.scr', data: Buffer.alloc(300, 7) }]);
    const body = mime([
      { filename: 'photo.jpg', contentType: 'image/jpeg', content: Buffer.alloc(700, 1) },
      { filename: 'files.zip', contentType: 'application/zip', content: zip },
    ]);
    const whole = await scan(body, DEFAULT_SCANNER_LIMITS, Buffer.byteLength(body));
    expect(whole.attachments).toEqual([
      { filename: 'photo.jpg', contentType: 'image/jpeg' },
      { filename: 'files.zip', contentType: 'application/zip' },
      { filename: 'inner.scr', contentType: 'application/octet-stream', archive: 'files.zip' },
    ]);
    for (const chunk of [1, 2, 3, 7, 76, 77, 78, 79, 500]) {
      const facts = await scan(body, DEFAULT_SCANNER_LIMITS, chunk);
      expect({ chunk, facts }).toEqual({ chunk, facts: whole });
    }
  });

  test('the names inside a zip attachment are listed, with the archive they came from', async () => {
    const zip = makeZip([
      { name: 'readme.txt', data: Buffer.from('read me') },
      { name: 'invoice.pdf.pif', data: Buffer.alloc(2000, 9) },
    ]);
    const facts = await scan(mime([{ filename: 'documents.zip', contentType: 'application/zip', content: zip }]), DEFAULT_SCANNER_LIMITS, 333);
    expect(facts.attachments).toEqual([
      { filename: 'documents.zip', contentType: 'application/zip' },
      { filename: 'readme.txt', contentType: 'application/octet-stream', archive: 'documents.zip' },
      { filename: 'invoice.pdf.pif', contentType: 'application/octet-stream', archive: 'documents.zip' },
    ]);
  });

  test('a zip larger than maxArchiveBytes is listed by its own name only (memory stays bounded)', async () => {
    const zip = makeZip([{ name: 'big.scr', data: Buffer.alloc(50_000, 3) }], 'x'.repeat(20_000));
    const facts = await scan(mime([{ filename: 'big.zip', contentType: 'application/zip', content: zip }]), { ...DEFAULT_SCANNER_LIMITS, maxArchiveBytes: 10_000 });
    expect(facts.attachments).toEqual([{ filename: 'big.zip', contentType: 'application/zip' }]);
  });

  test('a damaged zip is listed by its own name and does not fail the scan', async () => {
    const facts = await scan(mime([{ filename: 'broken.zip', contentType: 'application/zip', content: Buffer.from('PK not really') }]));
    expect(facts.attachments).toEqual([{ filename: 'broken.zip', contentType: 'application/zip' }]);
  });

  test('attachments are capped at maxAttachments', async () => {
    const many = Array.from({ length: 20 }, (_, i) => ({ filename: `f${i}.txt`, contentType: 'text/plain', content: Buffer.from('x') }));
    const facts = await scan(mime(many), { ...DEFAULT_SCANNER_LIMITS, maxAttachments: 5 });
    expect(facts.attachments).toHaveLength(5);
    expect(facts.parts).toBe(20);
  });
});

describe('bounces: report type and the returned message', () => {
  const dsn = (returned: string, asHeadersOnly = false): string =>
    [
      'This is a delivery status notification',
      '--B',
      'Content-Type: text/plain',
      '',
      'Your message could not be delivered.',
      '--B',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.other.example',
      '',
      'Final-Recipient: rfc822; x@other.example',
      'Action: failed',
      '--B',
      `Content-Type: ${asHeadersOnly ? 'text/rfc822-headers' : 'message/rfc822'}`,
      '',
      returned,
      '--B--',
      '',
    ].join('\r\n');

  async function scanDsn(body: string) {
    const scanner = createMessageScanner();
    const headers = [{ name: 'Content-Type', value: 'multipart/report; report-type=delivery-status;\n\tboundary="B"' }];
    for (const h of headers) scanner.header(h.name, h.value);
    scanner.endOfHeaders();
    scanner.body(Buffer.from(body));
    return scanner.finish(headers);
  }

  test('a DSN returning the whole message: report type and its Received lines, unfolded', async () => {
    const facts = await scanDsn(
      dsn(['Received: from mx1.example.org (mx1.example.org [192.0.2.10])', '\tby mx.other.example; Mon, 1 Jan 2024', 'Received: from ws by mx1.example.org', 'From: alice@example.org', '', 'Received: not a header, body text'].join('\r\n')),
    );
    expect(facts.report).toBe('delivery-status');
    expect(facts.returnedReceived).toEqual(['from mx1.example.org (mx1.example.org [192.0.2.10]) by mx.other.example; Mon, 1 Jan 2024', 'from ws by mx1.example.org']);
  });

  test('a DSN returning only headers (text/rfc822-headers), forged: no Received line of ours', async () => {
    const facts = await scanDsn(dsn(['Received: from evil.example by mx.other.example', 'From: forged@example.org', ''].join('\r\n'), true));
    expect(facts.returnedReceived).toEqual(['from evil.example by mx.other.example']);
  });

  test('an ordinary message returns no headers and is no report', async () => {
    const scanner = createMessageScanner();
    scanner.header('Subject', 'hi');
    scanner.endOfHeaders();
    scanner.body(Buffer.from('hello\r\n'));
    const facts = await scanner.finish([{ name: 'Subject', value: 'hi' }]);
    expect(facts.report).toBeUndefined();
    expect(facts.returnedReceived).toBeUndefined();
  });

  // The splitter is given only the Content-* headers of the top-level block while every
  // header is plain; these vectors pin what the whole block gave (taken from the build before).
  test.each([
    ['Received lines and a folded Content-Type', [['Received', 'from a\n\tby b'], ['Subject', 'x'], ['Content-Type', 'multipart/mixed;\n\tboundary="XX"']], 1],
    ['a bare line break that ends the header block early', [['Received', 'from a\n\tby b'], ['X-Evil', 'a\n\nb'], ['Content-Type', 'multipart/mixed; boundary="XX"']], 0],
    ['a bare line break that adds a later Content-Type', [['Content-Type', 'multipart/mixed; boundary="XX"'], ['X-Evil', 'a\nContent-Type: text/plain']], 1],
    ['a bare line break that adds an earlier Content-Type', [['X-Evil', 'a\nContent-Type: text/plain'], ['Content-Type', 'multipart/mixed; boundary="XX"']], 0],
    ['a name with a space (an mbox "From " line)', [['From x', 'y'], ['Content-Type', 'multipart/mixed; boundary="XX"']], 1],
    ['a name that starts with a space (a fold)', [['Subject', 'x'], [' Content-Type', 'text/plain'], ['Content-Type', 'multipart/mixed; boundary="XX"']], 1],
    ['a header block larger than half of maxNodeHeaderBytes', [['X-Big', 'y'.repeat(140_000)], ['Content-Type', 'multipart/mixed; boundary="XX"']], 1],
  ])('top-level headers: %s', async (_what, headers, found) => {
    const scanner = createMessageScanner();
    for (const [name, value] of headers as [string, string][]) scanner.header(name, value);
    scanner.endOfHeaders();
    scanner.body(Buffer.from('--XX\r\nContent-Type: application/octet-stream; name="evil.exe"\r\nContent-Disposition: attachment; filename="evil.exe"\r\n\r\nTVo=\r\n--XX--\r\n'));
    const facts = await scanner.finish([]);
    expect(facts.attachments).toEqual(found === 1 ? [{ filename: 'evil.exe', contentType: 'application/octet-stream' }] : []);
    expect(facts.parts).toBe(1);
  });
});
