/**
 * milter-negotiate - SMFIC_OPTNEG done right (protocols.md B.4, B.10; pitfalls
 * C.8, C.9), plus the two questions every later step asks of its result: does
 * the MTA send event X, and does it wait for a reply to it.
 *
 * Rules we apply to an MTA offer:
 * - version: MTAs offer 2, 3, 4 or 6 (there is no 5); we answer
 *   min(offer, 6) and refuse anything else (libmilter aborts below 2; Postfix
 *   fails on a filter version above its own).
 * - actions 0 means libmilter's V1 set (0x0F), protocol 0 the V1 set (0x3F).
 * - actions: what we want AND what was offered (Postfix "request mask
 *   conflict" and sendmail "filter abilities" drop a filter asking for more).
 * - protocol: what we want AND what was offered, for every bit: NR_*, SKIP,
 *   RCPT_REJ and HDR_LEADSPC only exist if offered, and sendmail refuses any
 *   bit it did not offer. A NO* bit the MTA cannot honour (NODATA / NOUNKNOWN
 *   from a v2 MTA) is moot: such an MTA never sends that event. MDS_* is never
 *   requested (we accept large packets regardless).
 * - symbol lists (SETSYMLIST): sent only to a v6 MTA that offered
 *   SMFIF_SETSYMLIST and only when we name macros; SMFIF_SETSYMLIST is then set
 *   in our actions, otherwise cleared.
 *
 * LIMITATIONS: an MTA version above 6 is refused rather than answered with 6;
 * no MTA sends one today and its semantics are unknown. Postfix treats an
 * empty symbol list as "use main.cf defaults", so lists can add macros but
 * not suppress them; we omit empty lists.
 */

import {
  MAX_SYMLIST_MACROS,
  MILTER_MAX_VERSION,
  SMFI_V1_ACTS,
  SMFI_V1_PROT,
  SMFIF_ADDHDRS,
  SMFIF_CHGHDRS,
  SMFIF_QUARANTINE,
  SMFIF_SETSYMLIST,
  SMFIM_CONNECT,
  SMFIM_DATA,
  SMFIM_EOH,
  SMFIM_EOM,
  SMFIM_ENVFROM,
  SMFIM_ENVRCPT,
  SMFIM_HELO,
  SMFIP_MDS_1M,
  SMFIP_MDS_256K,
  SMFIP_NOBODY,
  SMFIP_NOCONNECT,
  SMFIP_NODATA,
  SMFIP_NOEOH,
  SMFIP_NOHDRS,
  SMFIP_NOHELO,
  SMFIP_NOMAIL,
  SMFIP_NORCPT,
  SMFIP_NOUNKNOWN,
  SMFIP_NR_BODY,
  SMFIP_NR_CONN,
  SMFIP_NR_DATA,
  SMFIP_NR_EOH,
  SMFIP_NR_HDR,
  SMFIP_NR_HELO,
  SMFIP_NR_MAIL,
  SMFIP_NR_RCPT,
  SMFIP_NR_UNKN,
  SMFIP_SKIP,
} from './milter-constants.js';
import type { MilterCommandType, MilterReply, MilterSymbolList } from './milter-codec.js';

/** What the MTA's SMFIC_OPTNEG offers. */
export interface MilterOffer {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
}

/** SMFIM_* stages by name, for macro requests. */
export type MilterMacroStageName = 'connect' | 'helo' | 'envfrom' | 'envrcpt' | 'data' | 'eoh' | 'eom';

export const MILTER_MACRO_STAGES: Readonly<Record<MilterMacroStageName, number>> = {
  connect: SMFIM_CONNECT,
  helo: SMFIM_HELO,
  envfrom: SMFIM_ENVFROM,
  envrcpt: SMFIM_ENVRCPT,
  data: SMFIM_DATA,
  eom: SMFIM_EOM,
  eoh: SMFIM_EOH,
};

/** What we would like; negotiation trims it to what the MTA offered. */
export interface MilterWanted {
  /** SMFIF_* we may use (modifications we may send at end of message). */
  readonly actions: number;
  /**
   * SMFIP_* we would like: NO* for events we do not need, NR_* for events we
   * never decide on, SKIP if we answer BODY with skip, RCPT_REJ to see
   * rejected recipients, HDR_LEADSPC for byte-exact header values.
   */
  readonly protocol: number;
  /** Macros to request per stage, e.g. `{ envfrom: ['i', '{auth_authen}'] }`. */
  readonly macros?: Readonly<Partial<Record<MilterMacroStageName, readonly string[]>>>;
}

/** Recommended negotiation (B.10): header edits and quarantine; no UNKNOWN; SKIP if offered. */
export const DEFAULT_MILTER_WANTED: MilterWanted = {
  actions: SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
  protocol: SMFIP_NOUNKNOWN | SMFIP_SKIP,
};

/** The result both sides act on. */
export interface MilterAgreement {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
  readonly symbolLists: readonly MilterSymbolList[];
  /** What the MTA offered, as sent. */
  readonly offer: MilterOffer;
}

export type MilterOptnegReply = Extract<MilterReply, { type: 'OPTNEG' }>;

export type MilterNegotiation =
  | { readonly kind: 'agreed'; readonly reply: MilterOptnegReply; readonly agreed: MilterAgreement }
  | { readonly kind: 'refused'; readonly code: 'unsupported-version'; readonly detail: string };

/** MTA versions we talk to. */
export const MILTER_SUPPORTED_VERSIONS: readonly number[] = [2, 3, 4, 6];

const NEVER_REQUESTED = (SMFIP_MDS_256K | SMFIP_MDS_1M | 0x40000000 | 0x80000000) >>> 0;

/** negotiateMilter - answer an MTA's OPTNEG with what we want, trimmed to what it offered. */
export function negotiateMilter(offer: MilterOffer, wanted: MilterWanted): MilterNegotiation {
  if (!MILTER_SUPPORTED_VERSIONS.includes(offer.version)) {
    return { kind: 'refused', code: 'unsupported-version', detail: `MTA offers milter protocol version ${offer.version}; we speak 2, 3, 4 and 6` };
  }
  const version = Math.min(offer.version, MILTER_MAX_VERSION);
  const offeredActions = offer.actions === 0 ? SMFI_V1_ACTS : offer.actions;
  const offeredProtocol = offer.protocol === 0 ? SMFI_V1_PROT : offer.protocol;

  let actions = (wanted.actions & offeredActions & ~SMFIF_SETSYMLIST) >>> 0;
  const protocol = (wanted.protocol & offeredProtocol & ~NEVER_REQUESTED) >>> 0;

  const symbolLists: MilterSymbolList[] = [];
  if (version >= 6 && (offeredActions & SMFIF_SETSYMLIST) !== 0 && wanted.macros !== undefined) {
    for (const [name, stage] of Object.entries(MILTER_MACRO_STAGES).sort((a, b) => a[1] - b[1])) {
      const macros = wanted.macros[name as MilterMacroStageName];
      if (macros !== undefined && macros.length > 0) symbolLists.push({ stage, macros: [...macros] });
    }
    if (symbolLists.length > 0) actions = (actions | SMFIF_SETSYMLIST) >>> 0;
  }

  const agreed: MilterAgreement = { version, actions, protocol, symbolLists, offer: { ...offer } };
  return { kind: 'agreed', reply: { type: 'OPTNEG', version, actions, protocol, symbolLists }, agreed };
}

/** milterWantedProblem - why a MilterWanted cannot be negotiated, or undefined (a config check). */
export function milterWantedProblem(wanted: MilterWanted): string | undefined {
  for (const [what, v] of [
    ['actions', wanted.actions],
    ['protocol', wanted.protocol],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) return `${what} ${v} is not a u32`;
  }
  for (const [stage, macros] of Object.entries(wanted.macros ?? {})) {
    if (!(stage in MILTER_MACRO_STAGES)) return `unknown macro stage ${JSON.stringify(stage)}`;
    if (macros === undefined) continue;
    if (macros.length > MAX_SYMLIST_MACROS) return `more than ${MAX_SYMLIST_MACROS} macros for stage ${stage}`;
    for (const m of macros) if (m.length === 0 || /[ ,\0]/.test(m)) return `invalid macro name ${JSON.stringify(m)} for stage ${stage}`;
  }
  return undefined;
}

/** The NO* bit that suppresses each event, and the NR_* bit that silences our reply to it. */
const EVENT_FLAGS: Partial<Record<MilterCommandType, { readonly no: number; readonly nr: number }>> = {
  CONNECT: { no: SMFIP_NOCONNECT, nr: SMFIP_NR_CONN },
  HELO: { no: SMFIP_NOHELO, nr: SMFIP_NR_HELO },
  MAIL: { no: SMFIP_NOMAIL, nr: SMFIP_NR_MAIL },
  RCPT: { no: SMFIP_NORCPT, nr: SMFIP_NR_RCPT },
  DATA: { no: SMFIP_NODATA, nr: SMFIP_NR_DATA },
  HEADER: { no: SMFIP_NOHDRS, nr: SMFIP_NR_HDR },
  EOH: { no: SMFIP_NOEOH, nr: SMFIP_NR_EOH },
  BODY: { no: SMFIP_NOBODY, nr: SMFIP_NR_BODY },
  UNKNOWN: { no: SMFIP_NOUNKNOWN, nr: SMFIP_NR_UNKN },
};

/** milterSendsEvent - whether an MTA bound by `agreed` sends this command at all. */
export function milterSendsEvent(agreed: Pick<MilterAgreement, 'version' | 'protocol'>, type: MilterCommandType): boolean {
  if (type === 'UNKNOWN' && agreed.version < 3) return false; // UNKNOWN is [v3]
  if (type === 'DATA' && agreed.version < 4) return false; // DATA is [v4]
  const flags = EVENT_FLAGS[type];
  return flags === undefined || (agreed.protocol & flags.no) === 0;
}

/** milterExpectsReply - whether the MTA waits for a reply to this command (never for MACRO, ABORT, QUIT, QUIT_NC). */
export function milterExpectsReply(agreed: Pick<MilterAgreement, 'protocol'>, type: MilterCommandType): boolean {
  switch (type) {
    case 'MACRO':
    case 'ABORT':
    case 'QUIT':
    case 'QUIT_NC':
      return false;
    case 'OPTNEG':
    case 'BODYEOB':
      return true;
    default: {
      const flags = EVENT_FLAGS[type];
      return flags === undefined || (agreed.protocol & flags.nr) === 0;
    }
  }
}
