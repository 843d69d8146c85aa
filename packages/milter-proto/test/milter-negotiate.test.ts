import fc from 'fast-check';
import {
  createMilterCommandDecoder,
  DEFAULT_MILTER_WANTED,
  encodeMilterReply,
  milterExpectsReply,
  milterSendsEvent,
  milterWantedProblem,
  negotiateMilter,
  SMFI_CURR_ACTS,
  SMFI_CURR_PROT,
  SMFI_V1_ACTS,
  SMFI_V1_PROT,
  SMFIF_ADDHDRS,
  SMFIF_CHGHDRS,
  SMFIF_QUARANTINE,
  SMFIF_SETSYMLIST,
  SMFIP_MDS_256K,
  SMFIP_NODATA,
  SMFIP_NOHDRS,
  SMFIP_NOUNKNOWN,
  SMFIP_NR_BODY,
  SMFIP_NR_EOH,
  SMFIP_NR_HDR,
  SMFIP_NR_RCPT,
  SMFIP_SKIP,
  type MilterOffer,
  type MilterWanted,
} from '../src/index.js';

const fromHex = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

/** Decode an MTA OPTNEG packet from B.9 into an offer. */
function offerFrom(hex: string): MilterOffer {
  const [result] = createMilterCommandDecoder().push(fromHex(hex));
  if (result?.kind !== 'command' || result.command.type !== 'OPTNEG') throw new Error('not an OPTNEG');
  const { version, actions, protocol } = result.command;
  return { version, actions, protocol };
}

// B.9: the same bytes come from Postfix milter_protocol=6 and from sendmail 8.14+.
const POSTFIX_V6 = offerFrom('00 00 00 0d 4f 00 00 00 06 00 00 01 ff 00 1f ff ff');
const SENDMAIL_814 = offerFrom('00 00 00 0d 4f 00 00 00 06 00 00 01 ff 00 1f ff ff');
const POSTFIX_V2 = offerFrom('00 00 00 0d 4f 00 00 00 02 00 00 01 ff 00 00 00 7f');
const POSTFIX_V4 = offerFrom('00 00 00 0d 4f 00 00 00 04 00 00 01 ff 00 00 03 7f');

const HEADERS_AND_QUARANTINE = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE; // 0x31
const QUIET = SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP | SMFIP_NR_EOH | SMFIP_NR_BODY; // 0xC0780

function agreedReplyHex(offer: MilterOffer, wanted: MilterWanted): string {
  const result = negotiateMilter(offer, wanted);
  if (result.kind !== 'agreed') throw new Error(result.detail);
  return encodeMilterReply(result.reply).toString('hex');
}

describe('negotiateMilter against the B.9 OPTNEG packets', () => {
  test('Postfix v6: ADDHDRS|QUARANTINE, NOUNKNOWN|NODATA gives the B.9 reply', () => {
    const hex = agreedReplyHex(POSTFIX_V6, { actions: SMFIF_ADDHDRS | SMFIF_QUARANTINE, protocol: SMFIP_NOUNKNOWN | SMFIP_NODATA });
    expect(hex).toBe(fromHex('00 00 00 0d 4f 00 00 00 06 00 00 00 21 00 00 03 00').toString('hex'));
  });

  test('Postfix v6: NR_* and SKIP are kept because they were offered (B.9 0xC0780 reply)', () => {
    const hex = agreedReplyHex(POSTFIX_V6, { actions: HEADERS_AND_QUARANTINE, protocol: QUIET });
    expect(hex).toBe(fromHex('00 00 00 0d 4f 00 00 00 06 00 00 00 31 00 0c 07 80').toString('hex'));
  });

  test('sendmail 8.14: symbol lists per stage and SMFIF_SETSYMLIST (B.9 0x131 reply)', () => {
    const wanted: MilterWanted = { actions: HEADERS_AND_QUARANTINE, protocol: QUIET, macros: { helo: ['{tls_version}'], envfrom: ['i', '{auth_authen}'] } };
    const hex = agreedReplyHex(SENDMAIL_814, wanted);
    expect(hex).toBe(
      fromHex(
        `00 00 00 33 4f 00 00 00 06 00 00 01 31 00 0c 07 80 00 00 00 01 7b 74 6c 73 5f 76 65 72 73 69
         6f 6e 7d 00 00 00 00 02 69 20 7b 61 75 74 68 5f 61 75 74 68 65 6e 7d 00`,
      ).toString('hex'),
    );
  });

  test('Postfix v2 (proto 0x7F): version 2, no NR_*/SKIP, no symbol lists, SETSYMLIST cleared', () => {
    const result = negotiateMilter(POSTFIX_V2, { actions: HEADERS_AND_QUARANTINE | SMFIF_SETSYMLIST, protocol: QUIET, macros: { envfrom: ['i'] } });
    if (result.kind !== 'agreed') throw new Error('refused');
    expect(result.agreed).toEqual({ version: 2, actions: 0x31, protocol: 0, symbolLists: [], offer: POSTFIX_V2 });
    // Postfix offers all actions whatever the version; a v2 MTA never sends DATA or UNKNOWN.
    expect(milterSendsEvent(result.agreed, 'DATA')).toBe(false);
    expect(milterSendsEvent(result.agreed, 'UNKNOWN')).toBe(false);
    expect(milterExpectsReply(result.agreed, 'HEADER')).toBe(true);
  });

  test('Postfix v4 (proto 0x37F, no NR_HDR without no_header_reply): NOUNKNOWN, NODATA kept; the rest dropped', () => {
    const result = negotiateMilter(POSTFIX_V4, { actions: HEADERS_AND_QUARANTINE, protocol: QUIET });
    if (result.kind !== 'agreed') throw new Error('refused');
    expect(result.reply).toEqual({ type: 'OPTNEG', version: 4, actions: 0x31, protocol: SMFIP_NOUNKNOWN | SMFIP_NODATA, symbolLists: [] });
    // With Postfix's `no_header_reply` the offer gains NR_HDR, and we keep it.
    const withNrHdr = negotiateMilter({ ...POSTFIX_V4, protocol: POSTFIX_V4.protocol | SMFIP_NR_HDR }, { actions: HEADERS_AND_QUARANTINE, protocol: QUIET });
    expect(withNrHdr.kind === 'agreed' && withNrHdr.reply.protocol).toBe(SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA);
  });

  test('versions 2, 3, 4 and 6 are answered with min(offer, 6); 0, 1, 5 and 7 are refused', () => {
    for (const version of [2, 3, 4, 6]) {
      const result = negotiateMilter({ ...POSTFIX_V6, version }, DEFAULT_MILTER_WANTED);
      expect(result.kind === 'agreed' && result.reply.version).toBe(version);
    }
    for (const version of [0, 1, 5, 7, 0xffffffff]) {
      expect(negotiateMilter({ ...POSTFIX_V6, version }, DEFAULT_MILTER_WANTED)).toEqual({
        kind: 'refused',
        code: 'unsupported-version',
        detail: expect.stringContaining(String(version)),
      });
    }
  });

  test('actions 0 and protocol 0 in an offer mean the V1 sets (libmilter)', () => {
    const result = negotiateMilter({ version: 2, actions: 0, protocol: 0 }, { actions: SMFI_CURR_ACTS, protocol: SMFI_CURR_PROT });
    if (result.kind !== 'agreed') throw new Error('refused');
    expect(result.reply.actions).toBe(SMFI_V1_ACTS);
    expect(result.reply.protocol).toBe(SMFI_V1_PROT);
  });

  test('MDS bits are never requested, even when offered and wanted', () => {
    const result = negotiateMilter({ ...SENDMAIL_814, protocol: SMFI_CURR_PROT | SMFIP_MDS_256K }, { actions: 0, protocol: SMFIP_MDS_256K | SMFIP_NOHDRS });
    expect(result.kind === 'agreed' && result.reply.protocol).toBe(SMFIP_NOHDRS);
  });

  test('the default asks for header edits and quarantine, no UNKNOWN, SKIP', () => {
    const result = negotiateMilter(POSTFIX_V6, DEFAULT_MILTER_WANTED);
    expect(result.kind === 'agreed' && result.reply).toEqual({ type: 'OPTNEG', version: 6, actions: 0x31, protocol: SMFIP_NOUNKNOWN | SMFIP_SKIP, symbolLists: [] });
  });

  test('property: the answer never exceeds the offer (Postfix and sendmail would drop the filter)', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(
        fc.record({ version: fc.constantFrom(2, 3, 4, 6), actions: u32, protocol: u32 }),
        fc.record({ actions: u32, protocol: u32 }),
        fc.boolean(),
        (offer, wanted, withMacros) => {
          const result = negotiateMilter(offer, withMacros ? { ...wanted, macros: { connect: ['j'] } } : wanted);
          if (result.kind !== 'agreed') throw new Error('refused');
          const offeredActions = offer.actions === 0 ? SMFI_V1_ACTS : offer.actions;
          const offeredProtocol = offer.protocol === 0 ? SMFI_V1_PROT : offer.protocol;
          expect(result.reply.version).toBeLessThanOrEqual(offer.version);
          expect((result.reply.actions & ~offeredActions) >>> 0).toBe(0);
          expect((result.reply.protocol & ~offeredProtocol) >>> 0).toBe(0);
          const lists = result.reply.symbolLists.length > 0;
          expect(lists).toBe(withMacros && offer.version === 6 && (offeredActions & SMFIF_SETSYMLIST) !== 0);
          expect((result.reply.actions & SMFIF_SETSYMLIST) !== 0).toBe(lists);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('event and reply expectations', () => {
  const agreed = { version: 6, protocol: SMFIP_NR_RCPT | SMFIP_NOHDRS | SMFIP_NR_HDR };
  test('NR_* silences replies; MACRO, ABORT, QUIT, QUIT_NC never get one; OPTNEG and BODYEOB always do', () => {
    expect(milterExpectsReply(agreed, 'RCPT')).toBe(false);
    expect(milterExpectsReply(agreed, 'MAIL')).toBe(true);
    expect(milterExpectsReply(agreed, 'DATA')).toBe(true);
    expect(milterExpectsReply(agreed, 'UNKNOWN')).toBe(true);
    for (const type of ['MACRO', 'ABORT', 'QUIT', 'QUIT_NC'] as const) expect(milterExpectsReply({ protocol: 0 }, type)).toBe(false);
    for (const type of ['OPTNEG', 'BODYEOB'] as const) expect(milterExpectsReply({ protocol: 0xffffffff }, type)).toBe(true);
  });
  test('NO* bits stop events; there is no flag for BODYEOB, ABORT, QUIT or MACRO', () => {
    expect(milterSendsEvent(agreed, 'HEADER')).toBe(false);
    expect(milterSendsEvent(agreed, 'RCPT')).toBe(true);
    for (const type of ['BODYEOB', 'ABORT', 'QUIT', 'MACRO'] as const) expect(milterSendsEvent({ version: 6, protocol: 0xffffffff }, type)).toBe(true);
  });
});

describe('milterWantedProblem', () => {
  test('accepts the default and reasonable lists', () => {
    expect(milterWantedProblem(DEFAULT_MILTER_WANTED)).toBeUndefined();
    expect(milterWantedProblem({ ...DEFAULT_MILTER_WANTED, macros: { connect: ['j', '{daemon_name}'], eom: ['i'] } })).toBeUndefined();
  });
  test.each([
    ['a macro name with a space', { connect: ['a b'] }],
    ['an empty macro name', { helo: [''] }],
    ['an unknown stage', { quit: ['j'] }],
    ['more than 50 macros', { envrcpt: Array.from({ length: 51 }, (_, i) => `m${i}`) }],
  ])('refuses %s', (_name, macros) => {
    expect(milterWantedProblem({ ...DEFAULT_MILTER_WANTED, macros } as MilterWanted)).toEqual(expect.any(String));
  });
  test('refuses flags that are not u32', () => {
    expect(milterWantedProblem({ actions: -1, protocol: 0 })).toEqual(expect.any(String));
    expect(milterWantedProblem({ actions: 0, protocol: 2 ** 32 })).toEqual(expect.any(String));
  });
});
