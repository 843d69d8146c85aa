/**
 * milter-constants - the numbers of the Sendmail milter protocol (libmilter
 * mfdef.h / mfapi.h, protocols.md B.1-B.5), under their spec names.
 *
 * Command and reply bytes are ASCII letters; flags are u32 bit masks. `[vN]`
 * marks the milter protocol version that introduced a value; `[8.14]` the
 * sendmail release. Code -> name tables exist for log lines only.
 *
 * LIMITATIONS: SMFIR_SETSYMLIST, SMFIR_CONN_FAIL and the MDS_* flags are
 * defined for completeness; no MTA we target uses them on the wire.
 */

// --- framing (mfdef.h) --------------------------------------------------------

/** Bytes of the big-endian length that precedes every packet. */
export const MILTER_LEN_BYTES = 4;
/** Payload size of SMFIC_OPTNEG: u32 version, u32 actions, u32 protocol. */
export const MILTER_OPTLEN = 12;
/** Largest BODY / REPLBODY chunk libmilter-compatible peers send or accept. */
export const MILTER_CHUNK_SIZE = 65535;
/** libmilter's default data limit (we accept more: Postfix does not chunk headers). */
export const MILTER_MAX_DATA_SIZE = 65535;
/** Highest protocol version we speak; there is no version 5. */
export const MILTER_MAX_VERSION = 6;

// --- MTA -> filter commands (SMFIC_*) -------------------------------------------

export const SMFIC_ABORT = 0x41; /* 'A' abort current message, no reply */
export const SMFIC_BODY = 0x42; /* 'B' body chunk */
export const SMFIC_CONNECT = 0x43; /* 'C' connection information */
export const SMFIC_MACRO = 0x44; /* 'D' define macros, no reply */
export const SMFIC_BODYEOB = 0x45; /* 'E' end of body */
export const SMFIC_HELO = 0x48; /* 'H' HELO/EHLO name */
export const SMFIC_QUIT_NC = 0x4b; /* 'K' [8.14] quit, new connection follows on this socket */
export const SMFIC_HEADER = 0x4c; /* 'L' one header */
export const SMFIC_MAIL = 0x4d; /* 'M' MAIL FROM argv */
export const SMFIC_EOH = 0x4e; /* 'N' end of headers */
export const SMFIC_OPTNEG = 0x4f; /* 'O' option negotiation */
export const SMFIC_QUIT = 0x51; /* 'Q' quit, close */
export const SMFIC_RCPT = 0x52; /* 'R' RCPT TO argv */
export const SMFIC_DATA = 0x54; /* 'T' [v4] DATA */
export const SMFIC_UNKNOWN = 0x55; /* 'U' [v3] unknown SMTP command */

/** SMFIC code -> name, for logs. */
export const SMFIC_NAMES: Readonly<Record<number, string>> = {
  [SMFIC_ABORT]: 'SMFIC_ABORT',
  [SMFIC_BODY]: 'SMFIC_BODY',
  [SMFIC_CONNECT]: 'SMFIC_CONNECT',
  [SMFIC_MACRO]: 'SMFIC_MACRO',
  [SMFIC_BODYEOB]: 'SMFIC_BODYEOB',
  [SMFIC_HELO]: 'SMFIC_HELO',
  [SMFIC_QUIT_NC]: 'SMFIC_QUIT_NC',
  [SMFIC_HEADER]: 'SMFIC_HEADER',
  [SMFIC_MAIL]: 'SMFIC_MAIL',
  [SMFIC_EOH]: 'SMFIC_EOH',
  [SMFIC_OPTNEG]: 'SMFIC_OPTNEG',
  [SMFIC_QUIT]: 'SMFIC_QUIT',
  [SMFIC_RCPT]: 'SMFIC_RCPT',
  [SMFIC_DATA]: 'SMFIC_DATA',
  [SMFIC_UNKNOWN]: 'SMFIC_UNKNOWN',
};

// --- filter -> MTA replies (SMFIR_*) --------------------------------------------

export const SMFIR_ADDRCPT = 0x2b; /* '+' add recipient (SMFIF_ADDRCPT) */
export const SMFIR_DELRCPT = 0x2d; /* '-' delete recipient (SMFIF_DELRCPT) */
export const SMFIR_ADDRCPT_PAR = 0x32; /* '2' [8.14] add recipient with ESMTP args (SMFIF_ADDRCPT_PAR) */
export const SMFIR_SHUTDOWN = 0x34; /* '4' 421 and close (Postfix only) */
export const SMFIR_ACCEPT = 0x61; /* 'a' accept */
export const SMFIR_REPLBODY = 0x62; /* 'b' replace body chunk (SMFIF_CHGBODY) */
export const SMFIR_CONTINUE = 0x63; /* 'c' continue */
export const SMFIR_DISCARD = 0x64; /* 'd' discard message */
export const SMFIR_CHGFROM = 0x65; /* 'e' [8.14] change sender (SMFIF_CHGFROM) */
export const SMFIR_CONN_FAIL = 0x66; /* 'f' defined only; MTAs treat it as a protocol error */
export const SMFIR_ADDHEADER = 0x68; /* 'h' add header (SMFIF_ADDHDRS) */
export const SMFIR_INSHEADER = 0x69; /* 'i' insert header at index (SMFIF_ADDHDRS) */
export const SMFIR_SETSYMLIST = 0x6c; /* 'l' [v6] defined only; lists travel in the OPTNEG reply */
export const SMFIR_CHGHEADER = 0x6d; /* 'm' change / delete header (SMFIF_CHGHDRS) */
export const SMFIR_PROGRESS = 0x70; /* 'p' still working, not final */
export const SMFIR_QUARANTINE = 0x71; /* 'q' quarantine (hold) message (SMFIF_QUARANTINE), not final */
export const SMFIR_REJECT = 0x72; /* 'r' reject (5xx) */
export const SMFIR_SKIP = 0x73; /* 's' [v6] skip further BODY chunks (SMFIP_SKIP) */
export const SMFIR_TEMPFAIL = 0x74; /* 't' tempfail (4xx) */
export const SMFIR_REPLYCODE = 0x79; /* 'y' explicit SMTP reply */
export const SMFIR_OPTNEG = 0x4f; /* 'O' reply to SMFIC_OPTNEG (same byte) */

/** SMFIR code -> name, for logs. */
export const SMFIR_NAMES: Readonly<Record<number, string>> = {
  [SMFIR_ADDRCPT]: 'SMFIR_ADDRCPT',
  [SMFIR_DELRCPT]: 'SMFIR_DELRCPT',
  [SMFIR_ADDRCPT_PAR]: 'SMFIR_ADDRCPT_PAR',
  [SMFIR_SHUTDOWN]: 'SMFIR_SHUTDOWN',
  [SMFIR_ACCEPT]: 'SMFIR_ACCEPT',
  [SMFIR_REPLBODY]: 'SMFIR_REPLBODY',
  [SMFIR_CONTINUE]: 'SMFIR_CONTINUE',
  [SMFIR_DISCARD]: 'SMFIR_DISCARD',
  [SMFIR_CHGFROM]: 'SMFIR_CHGFROM',
  [SMFIR_CONN_FAIL]: 'SMFIR_CONN_FAIL',
  [SMFIR_ADDHEADER]: 'SMFIR_ADDHEADER',
  [SMFIR_INSHEADER]: 'SMFIR_INSHEADER',
  [SMFIR_SETSYMLIST]: 'SMFIR_SETSYMLIST',
  [SMFIR_CHGHEADER]: 'SMFIR_CHGHEADER',
  [SMFIR_PROGRESS]: 'SMFIR_PROGRESS',
  [SMFIR_QUARANTINE]: 'SMFIR_QUARANTINE',
  [SMFIR_REJECT]: 'SMFIR_REJECT',
  [SMFIR_SKIP]: 'SMFIR_SKIP',
  [SMFIR_TEMPFAIL]: 'SMFIR_TEMPFAIL',
  [SMFIR_REPLYCODE]: 'SMFIR_REPLYCODE',
  [SMFIR_OPTNEG]: 'SMFIR_OPTNEG',
};

// --- SMFIC_CONNECT address families (SMFIA_*) ----------------------------------

export const SMFIA_UNKNOWN = 0x55; /* 'U' no port, no address follow */
export const SMFIA_UNIX = 0x4c; /* 'L' port 0, address = socket path */
export const SMFIA_INET = 0x34; /* '4' */
export const SMFIA_INET6 = 0x36; /* '6' address may carry sendmail's "IPv6:" tag */

// --- action flags (SMFIF_*): filter "I may do this", MTA "you may" ---------------

export const SMFIF_NONE = 0x000;
export const SMFIF_ADDHDRS = 0x001; /* SMFIR_ADDHEADER, SMFIR_INSHEADER */
export const SMFIF_CHGBODY = 0x002; /* SMFIR_REPLBODY */
export const SMFIF_MODBODY = SMFIF_CHGBODY; /* old alias */
export const SMFIF_ADDRCPT = 0x004; /* SMFIR_ADDRCPT */
export const SMFIF_DELRCPT = 0x008; /* SMFIR_DELRCPT */
export const SMFIF_CHGHDRS = 0x010; /* SMFIR_CHGHEADER */
export const SMFIF_QUARANTINE = 0x020; /* [v2 acts] SMFIR_QUARANTINE */
export const SMFIF_CHGFROM = 0x040; /* [v6, 8.14] SMFIR_CHGFROM */
export const SMFIF_ADDRCPT_PAR = 0x080; /* [v6, 8.14] SMFIR_ADDRCPT_PAR */
export const SMFIF_SETSYMLIST = 0x100; /* [v6, 8.14] symbol lists in the OPTNEG reply */

export const SMFI_V1_ACTS = 0x0f;
export const SMFI_V2_ACTS = 0x3f;
export const SMFI_CURR_ACTS = 0x1ff;

/** SMFIF bit -> name, for logs (see describeMilterFlags). */
export const SMFIF_NAMES: Readonly<Record<number, string>> = {
  [SMFIF_ADDHDRS]: 'SMFIF_ADDHDRS',
  [SMFIF_CHGBODY]: 'SMFIF_CHGBODY',
  [SMFIF_ADDRCPT]: 'SMFIF_ADDRCPT',
  [SMFIF_DELRCPT]: 'SMFIF_DELRCPT',
  [SMFIF_CHGHDRS]: 'SMFIF_CHGHDRS',
  [SMFIF_QUARANTINE]: 'SMFIF_QUARANTINE',
  [SMFIF_CHGFROM]: 'SMFIF_CHGFROM',
  [SMFIF_ADDRCPT_PAR]: 'SMFIF_ADDRCPT_PAR',
  [SMFIF_SETSYMLIST]: 'SMFIF_SETSYMLIST',
};

// --- protocol flags (SMFIP_*): mostly negative ("don't send", "won't reply") ----

export const SMFIP_NOCONNECT = 0x00000001; /* MTA should not send CONNECT */
export const SMFIP_NOHELO = 0x00000002; /* ... HELO */
export const SMFIP_NOMAIL = 0x00000004; /* ... MAIL */
export const SMFIP_NORCPT = 0x00000008; /* ... RCPT */
export const SMFIP_NOBODY = 0x00000010; /* ... BODY */
export const SMFIP_NOHDRS = 0x00000020; /* ... HEADER */
export const SMFIP_NOEOH = 0x00000040; /* ... EOH */
export const SMFIP_NR_HDR = 0x00000080; /* no reply to HEADER */
export const SMFIP_NOHREPL = SMFIP_NR_HDR; /* old alias */
export const SMFIP_NOUNKNOWN = 0x00000100; /* [v3] MTA should not send UNKNOWN */
export const SMFIP_NODATA = 0x00000200; /* [v4] MTA should not send DATA */
export const SMFIP_SKIP = 0x00000400; /* [v6] MTA understands SMFIR_SKIP */
export const SMFIP_RCPT_REJ = 0x00000800; /* [v6] MTA also sends rejected RCPTs */
export const SMFIP_NR_CONN = 0x00001000; /* [v6] no reply to CONNECT */
export const SMFIP_NR_HELO = 0x00002000; /* [v6] no reply to HELO */
export const SMFIP_NR_MAIL = 0x00004000; /* [v6] no reply to MAIL */
export const SMFIP_NR_RCPT = 0x00008000; /* [v6] no reply to RCPT */
export const SMFIP_NR_DATA = 0x00010000; /* [v6] no reply to DATA */
export const SMFIP_NR_UNKN = 0x00020000; /* [v6] no reply to UNKNOWN */
export const SMFIP_NR_EOH = 0x00040000; /* [v6] no reply to EOH */
export const SMFIP_NR_BODY = 0x00080000; /* [v6] no reply to BODY */
export const SMFIP_HDR_LEADSPC = 0x00100000; /* [v6] header values keep their leading space */
export const SMFIP_MDS_256K = 0x10000000; /* [FFR] max data size 256K */
export const SMFIP_MDS_1M = 0x20000000; /* [FFR] max data size 1M */

export const SMFI_V1_PROT = 0x3f;
export const SMFI_V2_PROT = 0x7f;
export const SMFI_CURR_PROT = 0x1fffff;

/** Every "don't send event X" bit. */
export const SMFIP_NO_EVENTS =
  SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
/** Every "no reply to event X" bit. */
export const SMFIP_NR_EVENTS =
  SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY;

/** SMFIP bit -> name, for logs (see describeMilterFlags). */
export const SMFIP_NAMES: Readonly<Record<number, string>> = {
  [SMFIP_NOCONNECT]: 'SMFIP_NOCONNECT',
  [SMFIP_NOHELO]: 'SMFIP_NOHELO',
  [SMFIP_NOMAIL]: 'SMFIP_NOMAIL',
  [SMFIP_NORCPT]: 'SMFIP_NORCPT',
  [SMFIP_NOBODY]: 'SMFIP_NOBODY',
  [SMFIP_NOHDRS]: 'SMFIP_NOHDRS',
  [SMFIP_NOEOH]: 'SMFIP_NOEOH',
  [SMFIP_NR_HDR]: 'SMFIP_NR_HDR',
  [SMFIP_NOUNKNOWN]: 'SMFIP_NOUNKNOWN',
  [SMFIP_NODATA]: 'SMFIP_NODATA',
  [SMFIP_SKIP]: 'SMFIP_SKIP',
  [SMFIP_RCPT_REJ]: 'SMFIP_RCPT_REJ',
  [SMFIP_NR_CONN]: 'SMFIP_NR_CONN',
  [SMFIP_NR_HELO]: 'SMFIP_NR_HELO',
  [SMFIP_NR_MAIL]: 'SMFIP_NR_MAIL',
  [SMFIP_NR_RCPT]: 'SMFIP_NR_RCPT',
  [SMFIP_NR_DATA]: 'SMFIP_NR_DATA',
  [SMFIP_NR_UNKN]: 'SMFIP_NR_UNKN',
  [SMFIP_NR_EOH]: 'SMFIP_NR_EOH',
  [SMFIP_NR_BODY]: 'SMFIP_NR_BODY',
  [SMFIP_HDR_LEADSPC]: 'SMFIP_HDR_LEADSPC',
  [SMFIP_MDS_256K]: 'SMFIP_MDS_256K',
  [SMFIP_MDS_1M]: 'SMFIP_MDS_1M',
};

// --- macro stages for symbol lists (SMFIM_*), used in the OPTNEG reply -----------

export const SMFIM_CONNECT = 0; /* connect */
export const SMFIM_HELO = 1; /* HELO/EHLO */
export const SMFIM_ENVFROM = 2; /* MAIL From */
export const SMFIM_ENVRCPT = 3; /* RCPT To */
export const SMFIM_DATA = 4; /* DATA */
export const SMFIM_EOM = 5; /* end of message (final dot) */
export const SMFIM_EOH = 6; /* end of header */

/** SMFIM stage -> name, for logs. */
export const SMFIM_NAMES: Readonly<Record<number, string>> = {
  [SMFIM_CONNECT]: 'SMFIM_CONNECT',
  [SMFIM_HELO]: 'SMFIM_HELO',
  [SMFIM_ENVFROM]: 'SMFIM_ENVFROM',
  [SMFIM_ENVRCPT]: 'SMFIM_ENVRCPT',
  [SMFIM_DATA]: 'SMFIM_DATA',
  [SMFIM_EOM]: 'SMFIM_EOM',
  [SMFIM_EOH]: 'SMFIM_EOH',
};

/** Most macro names libmilter lets a filter request per stage (MTA-enforced, B.4 rule 5). */
export const MAX_SYMLIST_MACROS = 50;

/** describeMilterFlags - "SMFIF_ADDHDRS|SMFIF_QUARANTINE" (unnamed bits as hex) for logs. */
export function describeMilterFlags(mask: number, names: Readonly<Record<number, string>>): string {
  const parts: string[] = [];
  for (let i = 0; i < 32; i++) {
    if (((mask >>> i) & 1) === 0) continue;
    const bit = (1 << i) >>> 0;
    parts.push(names[bit] ?? `0x${bit.toString(16)}`);
  }
  return parts.length === 0 ? '0' : parts.join('|');
}

/** milterCodeName - "SMFIC_RCPT" / "SMFIR_REJECT" / "0x7a" for a command or reply byte. */
export function milterCodeName(code: number, names: Readonly<Record<number, string>>): string {
  return names[code] ?? `0x${code.toString(16).padStart(2, '0')}`;
}
