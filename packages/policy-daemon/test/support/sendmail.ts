// Test harness: a private, throw-away sendmail 8.17 instance on a loopback port.
//
// sendmail is never installed (sendmail-bin conflicts with the installed
// postfix): scripts/install-test-deps.sh downloads the Debian packages and
// extracts them into SENDMAIL_DIR (default /opt/levee-test/sendmail, override
// with LEVEE_SENDMAIL_DIR): the binary is root/usr/libexec/sendmail/sendmail,
// the m4 cf files are root/usr/share/sendmail/cf.
//
// Every instance lives in its own temp dir (mkdtemp under os.tmpdir()):
//   sendmail.mc      written by mcText() below; sendmail.cf is built from it with
//                    m4 -D_CF_DIR_=<root>/usr/share/sendmail/cf/
//   queue/           QueueDirectory (qfID, dfID; quarantined: hfID)
//   sink/            one maildir (tmp/ new/ cur/); every accepted message is
//                    delivered here, one file per recipient, by deliver.sh (the
//                    "sink" mailer; LOCAL_RULE_0 sends every address to it)
//   etc/             private /etc/hosts, nsswitch.conf ("hosts: files"), resolv.conf (127.0.0.1)
//   service.switch   sendmail's own ServiceSwitchFile (hosts files)
//   maillog          sendmail's syslog output (see below)
//   traffic          the -X traffic log (every SMTP session, both directions)
//   run.sh, run.log  the namespace script and its output (and sendmail's stdout/stderr)
//
// The whole instance runs inside `unshare --mount --uts`: run.sh bind-mounts the
// private hosts, nsswitch.conf and resolv.conf over /etc and sets the host name
// to sendmail.test.invalid. Without that, sendmail resolves its own (here
// unqualified) host name before it reads the .cf, asks the DNS server in
// /etc/resolv.conf and sleeps 60 s. There is no syslog on these machines, so
// run.sh also mounts a private /dev (a tmpfs with null, zero, random, urandom,
// full, tty bound in) whose /dev/log is a tiny perl datagram receiver writing to
// maillog. Then it runs `sendmail -bD` (foreground daemon, so its PID is known)
// and stays alive as a bounded watchdog: it stops sendmail when the harness
// asks (stop file), when the owning Node process is gone, when sendmail died,
// or after a maximum lifetime, and then kills whatever else is left in the
// instance's mount namespace, by PID.
//
// Commands against the instance (-bp, -q, ...) run inside the same namespace
// (nsenter into run.sh), never as a bare binary.
//
// Must run as root (namespaces, bind mounts, sendmail's queue).
import { readMaildir, waitForMaildir } from './mail-sink.js';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  alive,
  execCapture,
  ipv6LoopbackAvailable,
  pinChildNamespace,
  portLockPath,
  readIfExists,
  releasePort,
  reservePort,
  shQuote,
  sleep,
  spawnInPrivateNamespace,
  teardownNamespaceInstance,
  unshareBinary,
  type NamespaceChild,
} from './process-tools.js';

export { ipv6LoopbackAvailable };

export interface SendmailMilterOptions {
  /** Milter socket for INPUT_MAIL_FILTER, sendmail syntax: 'inet:8891@127.0.0.1', 'inet6:8891@::1' or 'local:/path'. Loopback only. */
  readonly socket: string;
  /** F= flag: 'T' temp-fail, 'R' reject, '' (default) continue without the filter when it cannot be reached. */
  readonly flags?: 'T' | 'R' | '';
  /** T= timeouts. Default 'C:10s;S:20s;R:20s;E:1m'. */
  readonly timeouts?: string;
}

export interface SendmailOptions {
  /** Milter for INPUT_MAIL_FILTER(`levee', ...); omit for no milter. */
  readonly milter?: SendmailMilterOptions;
  /** Also listen on [::1] (only if ::1 exists on lo; see SendmailInstance.ipv6). */
  readonly ipv6?: boolean;
  /** Extra m4 lines for sendmail.mc, appended after the harness's own settings and before the MAILER lines (a later define() wins). */
  readonly extraMc?: string;
  /** The instance stops itself after this many seconds even if nobody calls stop(). Default 900. */
  readonly maxLifetimeSec?: number;
  /** How long startSendmail waits for the daemon to listen. Default 20000. */
  readonly startTimeoutMs?: number;
  /** The instance stops itself (and removes its temp dir) when this process is gone. Default: this Node process. */
  readonly ownerPid?: number;
}

export interface SendmailQueueEntry {
  readonly id: string;
  readonly quarantined: boolean;
  /** Quarantine reason (hfID), or the deferral reason shown by -bp, if any. */
  readonly reason?: string;
}

export interface SendmailInstance {
  /** Loopback address and port sendmail listens on (IPv4). */
  readonly smtpHost: string;
  readonly smtpPort: number;
  /** True if the instance also listens on [::1]:smtpPort. */
  readonly ipv6: boolean;
  /** The instance's temp dir (removed by stop()). */
  readonly baseDir: string;
  readonly queueDir: string;
  /** Maildir where all accepted mail is delivered (new/), one file per recipient. */
  readonly sinkDir: string;
  /** The generated sendmail.mc and sendmail.cf. */
  readonly mcFile: string;
  readonly cfFile: string;
  /** What sendmail logged (its syslog messages, LogLevel 14), one line per message. */
  log(): string;
  /** The -X traffic log: every SMTP session, both directions. */
  traffic(): string;
  /** Waits until log() matches (sendmail logs "stat=Sent" after the sink file exists); rejects after timeoutMs with the log. */
  waitForLog(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Queue entries: `-bp` (normal queue) and `-bp -qQ` (quarantined, hfID). */
  queueIds(): Promise<SendmailQueueEntry[]>;
  /** Queue ids of quarantined messages. */
  quarantined(): Promise<string[]>;
  /** Raw texts of the messages delivered into the sink, oldest first ("Delivered-To: <rcpt>" prepended). */
  deliveredMessages(): string[];
  /** Waits until at least `count` messages are in the sink; rejects after timeoutMs with diagnostics. */
  waitForDelivery(count: number, timeoutMs: number): Promise<string[]>;
  /** Runs the sendmail binary with `-C sendmail.cf` and args inside the instance's namespace; resolves with stdout. */
  command(args: readonly string[], input?: string): Promise<string>;
  /** One queue run now (sendmail -q). */
  flush(): Promise<void>;
  /** Releases a quarantined message (sendmail -Q -qQ -qI<id>) and runs the queue for it. */
  release(id: string): Promise<void>;
  /** Stops sendmail (SIGTERM by PID), kills leftovers in its namespace by PID, removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export const SENDMAIL_DIR = process.env['LEVEE_SENDMAIL_DIR'] ?? '/opt/levee-test/sendmail';
const ROOT = join(SENDMAIL_DIR, 'root');
export const SENDMAIL_BIN = join(ROOT, 'usr/libexec/sendmail/sendmail');
const CF_DIR = join(ROOT, 'usr/share/sendmail/cf');
const M4 = '/usr/bin/m4';
const PERL = '/usr/bin/perl';
const NSENTER = '/usr/bin/nsenter';
const HOSTNAME = 'sendmail.test.invalid';
const DEFAULT_MILTER_TIMEOUTS = 'C:10s;S:20s;R:20s;E:1m';

const INSTALL_HINT = 'run `bash scripts/install-test-deps.sh` (as root) to download and extract sendmail';

/** True if the extracted sendmail, its cf files, m4, perl, unshare and nsenter are present. */
export function sendmailAvailable(): boolean {
  return [join(SENDMAIL_DIR, '.complete'), SENDMAIL_BIN, join(CF_DIR, 'm4/cf.m4'), M4, PERL, unshareBinary(), NSENTER].every((p) =>
    existsSync(p),
  );
}

/** Socket inodes of LISTEN sockets on the given local address (hex, as in /proc/net/tcp{,6}) and port. */
function listeningInodes(file: '/proc/net/tcp' | '/proc/net/tcp6', hexAddr: string, port: number): string[] {
  const local = `${hexAddr}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes: string[] = [];
  for (const line of readIfExists(file).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A' && f[9] !== undefined) inodes.push(f[9]);
  }
  return inodes;
}

function socketInodesOf(pid: number): Set<string> {
  const result = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return result;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) result.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return result;
}

const V4_LOOPBACK_HEX = '0100007F';
const V6_LOOPBACK_HEX = '00000000000000000000000001000000';

/** True once the sendmail daemon (pid) itself holds the listening socket(s) on the port. */
function daemonListening(pid: number, port: number, ipv6: boolean): boolean {
  const mine = socketInodesOf(pid);
  const v4 = listeningInodes('/proc/net/tcp', V4_LOOPBACK_HEX, port).some((i) => mine.has(i));
  if (!v4) return false;
  return !ipv6 || listeningInodes('/proc/net/tcp6', V6_LOOPBACK_HEX, port).some((i) => mine.has(i));
}

/** Milter sockets may only point at loopback (or a local socket). */
function checkMilterSocket(socket: string): void {
  if (/^(?:local|unix):\//.test(socket)) return;
  const m = /^(inet|inet6):(\d{1,5})@(.+)$/.exec(socket);
  const host = m?.[3];
  const ok = m !== null && host !== undefined && (m[1] === 'inet' ? /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) : host === '::1');
  if (!ok) {
    throw new Error(`milter socket ${JSON.stringify(socket)}: use inet:PORT@127.x.y.z, inet6:PORT@::1 or local:/path (loopback only)`);
  }
}

interface Layout {
  base: string;
  queue: string;
  sink: string;
  etc: string;
  mc: string;
  cf: string;
  maillog: string;
  traffic: string;
  runLog: string;
}

/** The sendmail.mc the harness writes. */
function mcText(l: Layout, port: number, ipv6: boolean, opts: SendmailOptions): string {
  const lines: string[] = [
    'divert(-1)',
    '# Written by packages/policy-daemon/test/support/sendmail.ts (private test instance).',
    'divert(0)dnl',
    "VERSIONID(`levee private test instance')dnl",
    "OSTYPE(`linux')dnl",
    "define(`confDOMAIN_NAME', `" + HOSTNAME + "')dnl",
    'dnl State lives under /tmp (world-writable, sticky bit): trust the sticky bit.',
    "define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl",
    "define(`QUEUE_DIR', `" + l.queue + "')dnl",
    "define(`STATUS_FILE', `" + join(l.base, 'statistics') + "')dnl",
    "define(`ALIAS_FILE', `" + join(l.base, 'aliases') + "')dnl",
    "define(`HELP_FILE', `" + join(ROOT, 'etc/mail/helpfile') + "')dnl",
    "define(`confPID_FILE', `" + join(l.base, 'sendmail.pid') + "')dnl",
    "define(`confDEAD_LETTER_DROP', `" + join(l.base, 'dead.letter') + "')dnl",
    "define(`confEBINDIR', `" + join(ROOT, 'usr/libexec/sendmail') + "')dnl",
    'dnl No DNS, ever (the namespace also gives it a private /etc/hosts and resolv.conf).',
    "define(`confSERVICE_SWITCH_FILE', `" + join(l.base, 'service.switch') + "')dnl",
    "define(`confHOSTS_FILE', `" + join(l.etc, 'hosts') + "')dnl",
    "define(`confDONT_PROBE_INTERFACES', `True')dnl",
    "define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl",
    "FEATURE(`nocanonify')dnl",
    "FEATURE(`accept_unresolvable_domains')dnl",
    "FEATURE(`accept_unqualified_senders')dnl",
    'dnl No ident callback to the client.',
    "define(`confTO_IDENT', `0s')dnl",
    'dnl Never queue or refuse because of load; no connection limits.',
    "define(`confQUEUE_LA', `10000')dnl",
    "define(`confREFUSE_LA', `10000')dnl",
    "define(`confDELAY_LA', `0')dnl",
    "define(`confMAX_DAEMON_CHILDREN', `0')dnl",
    "define(`confCONNECTION_RATE_THROTTLE', `0')dnl",
    "define(`confLOG_LEVEL', `14')dnl",
    'dnl Greeting "220 sendmail.test.invalid ESMTP levee-test" (sendmail inserts the ESMTP itself).',
    "define(`confSMTP_LOGIN_MSG', `$j levee-test')dnl",
    "define(`confDELIVERY_MODE', `background')dnl",
    'dnl Only the loopback port(s) below; no MSA on :587.',
    "FEATURE(`no_default_msa')dnl",
    `DAEMON_OPTIONS(\`Port=${port}, Addr=127.0.0.1, Name=MTA-v4, Family=inet')dnl`,
    ...(ipv6 ? [`DAEMON_OPTIONS(\`Port=${port}, Addr=::1, Name=MTA-v6, Family=inet6')dnl`] : []),
    'dnl Any 127/8 client may relay (default: only exactly 127.0.0.1 and ::1).',
    "RELAY_DOMAIN(`127')dnl",
  ];
  if (opts.milter !== undefined) {
    const m = opts.milter;
    const equates = [`S=${m.socket}`];
    if (m.flags !== undefined && m.flags !== '') equates.push(`F=${m.flags}`);
    equates.push(`T=${m.timeouts ?? DEFAULT_MILTER_TIMEOUTS}`);
    lines.push(
      'dnl The milter, and the macros deploy/sendmail/sendmail.mc-levee asks for.',
      `INPUT_MAIL_FILTER(\`levee', \`${equates.join(', ')}')dnl`,
      "define(`confMILTER_MACROS_CONNECT', `j, _, {daemon_name}, {if_name}, {if_addr}, {client_addr}')dnl",
      "define(`confMILTER_MACROS_ENVFROM', `i, {auth_type}, {auth_authen}, {auth_ssf}, {auth_author}, {mail_mailer}, {mail_host}, {mail_addr}')dnl",
      "define(`confMILTER_MACROS_ENVRCPT', `{rcpt_mailer}, {rcpt_host}, {rcpt_addr}, i')dnl",
      "define(`confMILTER_MACROS_EOM', `{msg_id}, i')dnl",
    );
  }
  if (opts.extraMc !== undefined && opts.extraMc.trim() !== '') {
    lines.push('dnl --- extraMc ---', ...opts.extraMc.replace(/\r\n/g, '\n').replace(/\n+$/, '').split('\n'), 'dnl --- end extraMc ---');
  }
  lines.push(
    'dnl The local mailer is defined but unused; its w flag would need a real Unix user.',
    "MODIFY_MAILER_FLAGS(`LOCAL', `-w')dnl",
    "MAILER(`local')dnl",
    'dnl Every address, whatever the domain, goes to the sink mailer: one call per recipient,',
    'dnl as root (S), no From_ line (n), Return-Path (P), Date/From/Message-Id if missing (DFM).',
    'MAILER_DEFINITIONS',
    `Msink,\tP=${join(l.base, 'deliver.sh')}, F=lsDFMPhun9S, T=DNS/RFC822/X-Unix, A=deliver.sh $u`,
    'LOCAL_RULE_0',
    'R$* < @ $* > $*\t$#sink $@ sink $: $1 < @ $2 > $3',
    'R$+\t$#sink $@ sink $: $1',
  );
  return lines.join('\n') + '\n';
}

function deliverScript(l: Layout): string {
  return `#!/bin/sh
# The "sink" mailer (written by test/support/sendmail.ts): stores the message
# sendmail pipes in as one maildir file, with "Delivered-To: <recipient>" on top.
umask 077
S=${shQuote(l.sink)}
n="$(date +%s%N).$$.sendmail"
{ printf 'Delivered-To: %s\\n' "$1" && cat; } > "$S/tmp/$n" && mv "$S/tmp/$n" "$S/new/$n" || exit 75
exit 0
`;
}

// A minimal syslog receiver on /dev/log (a unix datagram socket). Exits when its
// parent (run.sh) is gone or after the maximum lifetime.
const SYSLOG_PL = `use strict; use warnings;
use Socket; use IO::Socket::UNIX; use IO::Select; use IO::Handle;
my ($path, $out, $parent, $maxsec) = @ARGV;
unlink $path;
my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path) or die "syslog.pl: bind $path: $!\\n";
chmod 0666, $path;
open(my $fh, '>>', $out) or die "syslog.pl: open $out: $!\\n";
$fh->autoflush(1);
my $sel = IO::Select->new($s);
my $end = time + $maxsec;
while (time < $end && kill(0, $parent)) {
  next unless $sel->can_read(0.25);
  my $msg = '';
  defined($s->recv($msg, 65536)) or next;
  $msg =~ s/^<\\d+>//; $msg =~ s/\\s+\\z//;
  print $fh "$msg\\n";
}
`;

function runScript(l: Layout, port: number, ownerPid: number, maxLifetimeSec: number): string {
  return `#!/bin/sh
# Runs inside: unshare --mount --uts /bin/sh run.sh   (written by test/support/sendmail.ts)
# Private /etc/hosts, nsswitch.conf (hosts: files), resolv.conf, host name and
# /dev (with a /dev/log receiver), then sendmail -bD, then a bounded watchdog
# that stops sendmail when asked (stop file), when the owning Node process
# (${ownerPid}) is gone, when sendmail died, or after ${maxLifetimeSec} s.
set -u
D=${shQuote(l.base)}
OWNER=${ownerPid}
running() { case "$(cat "/proc/$1/stat" 2>/dev/null)" in "" | *") Z "* | *") X "*) return 1 ;; *) return 0 ;; esac; }
setstate() { echo "$1" > "$D/state.tmp" && mv -f "$D/state.tmp" "$D/state"; }
fail() { echo "run.sh: $1" >&2; setstate "failed $1"; sweep; exit 1; }
# Kill every other process in this mount namespace (only this instance's), by PID.
sweep() {
  for p in /proc/[0-9]*; do
    pid=\${p#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$p/ns/mnt" -ef "/proc/$$/ns/mnt" ] && kill -KILL "$pid" 2>/dev/null
  done
  return 0
}
mount --make-rprivate / 2>/dev/null || true
mount --bind "$D/etc/hosts" /etc/hosts || fail "bind-mount /etc/hosts"
mount --bind "$D/etc/nsswitch.conf" /etc/nsswitch.conf || fail "bind-mount /etc/nsswitch.conf"
mount --bind "$D/etc/resolv.conf" /etc/resolv.conf || fail "bind-mount /etc/resolv.conf"
hostname ${HOSTNAME} || fail "hostname"
# Private /dev: a tmpfs (visible in this namespace only) with the few devices
# sendmail needs and a /dev/log that writes to $D/maillog.
mount -t tmpfs -o size=1m,mode=755 levee-dev "$D/dev" || fail "mount tmpfs on $D/dev"
for n in null zero full random urandom tty; do
  : > "$D/dev/$n" && mount --bind "/dev/$n" "$D/dev/$n" || fail "bind /dev/$n"
done
ln -s /proc/self/fd "$D/dev/fd" && ln -s /proc/self/fd/0 "$D/dev/stdin" &&
  ln -s /proc/self/fd/1 "$D/dev/stdout" && ln -s /proc/self/fd/2 "$D/dev/stderr" || fail "dev symlinks"
${PERL} "$D/syslog.pl" "$D/dev/log" "$D/maillog" $$ ${maxLifetimeSec + 30} &
i=0
while [ $i -lt 200 ] && [ ! -S "$D/dev/log" ]; do sleep 0.01; i=$((i + 1)); done
[ -S "$D/dev/log" ] || fail "no /dev/log receiver"
mount --rbind "$D/dev" /dev || fail "mount private /dev"
${shQuote(SENDMAIL_BIN)} -C "$D/sendmail.cf" -bD -X "$D/traffic" >> "$D/run.log" 2>&1 < /dev/null &
SMPID=$!
setstate "started $SMPID"
end=$(( $(date +%s) + ${maxLifetimeSec} ))
reason="max lifetime reached"
while [ "$(date +%s)" -lt "$end" ]; do
  if [ -e "$D/stop" ]; then reason="stop requested"; break; fi
  if ! kill -0 "$OWNER" 2>/dev/null; then reason="owner process $OWNER gone"; break; fi
  if ! running "$SMPID"; then reason="sendmail $SMPID died"; break; fi
  sleep 0.1
done
echo "run.sh: stopping ($reason)" >&2
kill -TERM "$SMPID" 2>/dev/null || true
i=0
while [ $i -lt 200 ] && running "$SMPID"; do sleep 0.05; i=$((i + 1)); done
if running "$SMPID"; then echo "run.sh: sendmail $SMPID still alive, SIGKILL" >&2; kill -KILL "$SMPID" 2>/dev/null; fi
wait "$SMPID" 2>/dev/null
# SMTP session and delivery children, the /dev/log receiver, stray commands.
sweep
setstate "stopped"
# Nobody else will clean up after a vanished owner.
if ! kill -0 "$OWNER" 2>/dev/null; then
  cd / && umount -l /dev 2>/dev/null; umount -l "$D/dev" 2>/dev/null
  rm -rf -- "$D" && rm -f -- ${shQuote(portLockPath('sendmail', port))}
fi
exit 0
`;
}

/** Parses `sendmail -bp` output into queue entries (the reason is a QUARANTINE: line or a "(...)" deferral line). */
export function parseMailq(out: string, quarantined: boolean): SendmailQueueEntry[] {
  const result: { id: string; quarantined: boolean; reason?: string }[] = [];
  let current: { id: string; quarantined: boolean; reason?: string } | undefined;
  for (const line of out.split('\n')) {
    const head = /^([0-9A-Za-z]{8,})[*X-]?\s+\d+\s/.exec(line);
    if (head?.[1] !== undefined) {
      current = { id: head[1], quarantined };
      result.push(current);
      continue;
    }
    if (current === undefined || current.reason !== undefined) continue;
    const q = /^\s+QUARANTINE:\s*(.*?)\s*$/.exec(line);
    const d = /^\s+\((.*)\)\s*$/.exec(line);
    if (q?.[1] !== undefined) current.reason = q[1];
    else if (d?.[1] !== undefined) current.reason = d[1];
  }
  return result;
}

/** Starts a private sendmail instance. Call stop() when done (also in afterAll). */
export async function startSendmail(opts: SendmailOptions = {}): Promise<SendmailInstance> {
  if (!sendmailAvailable()) {
    throw new Error(`sendmail is not available (need ${SENDMAIL_BIN}, ${CF_DIR}, ${M4}, ${PERL}, ${unshareBinary()}, ${NSENTER}); ${INSTALL_HINT}`);
  }
  if (process.getuid?.() !== 0) throw new Error('the sendmail test harness must run as root (namespaces, private /dev, queue)');
  if (opts.milter !== undefined) checkMilterSocket(opts.milter.socket);
  const ipv6 = opts.ipv6 === true && ipv6LoopbackAvailable();
  const maxLifetimeSec = Math.max(5, Math.floor(opts.maxLifetimeSec ?? 900));
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const ownerPid = opts.ownerPid ?? process.pid;
  if (!Number.isInteger(ownerPid) || ownerPid <= 0) throw new Error(`bad ownerPid ${String(ownerPid)}`);

  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await reservePort('sendmail', { ipv6 });
    try {
      return await startOnce(port, ipv6, ownerPid, maxLifetimeSec, startTimeoutMs, opts);
    } catch (e) {
      releasePort('sendmail', port);
      if (!(e instanceof PortInUseError)) throw e;
      lastError = e;
    }
  }
  throw lastError ?? new Error('startSendmail failed');
}

class PortInUseError extends Error {}

async function startOnce(
  port: number,
  ipv6: boolean,
  ownerPid: number,
  maxLifetimeSec: number,
  startTimeoutMs: number,
  opts: SendmailOptions,
): Promise<SendmailInstance> {
  const base = mkdtempSync(join(tmpdir(), 'levee-sendmail-'));
  const l: Layout = {
    base,
    queue: join(base, 'queue'),
    sink: join(base, 'sink'),
    etc: join(base, 'etc'),
    mc: join(base, 'sendmail.mc'),
    cf: join(base, 'sendmail.cf'),
    maillog: join(base, 'maillog'),
    traffic: join(base, 'traffic'),
    runLog: join(base, 'run.log'),
  };
  const diagnostics = (): string =>
    `\n--- run.log ---\n${readIfExists(l.runLog)}\n--- maillog ---\n${readIfExists(l.maillog)}`;
  let child: NamespaceChild | undefined;
  try {
    mkdirSync(l.queue, { mode: 0o700 });
    mkdirSync(l.etc, { mode: 0o755 });
    mkdirSync(join(base, 'dev'), { mode: 0o755 });
    mkdirSync(l.sink, { mode: 0o700 });
    for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(l.sink, sub), { mode: 0o700 });
    writeFileSync(join(l.etc, 'hosts'), `127.0.0.1\tlocalhost ${HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback ${HOSTNAME}\n`);
    writeFileSync(
      join(l.etc, 'nsswitch.conf'),
      'passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nservices: files\nprotocols: files\naliases: files\n',
    );
    writeFileSync(join(l.etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    writeFileSync(join(base, 'service.switch'), 'hosts\tfiles\naliases\tfiles\npasswd\tfiles\n');
    writeFileSync(join(base, 'statistics'), '', { mode: 0o600 });
    writeFileSync(join(base, 'deliver.sh'), deliverScript(l), { mode: 0o755 });
    writeFileSync(join(base, 'syslog.pl'), SYSLOG_PL, { mode: 0o644 });
    writeFileSync(l.mc, mcText(l, port, ipv6, opts));
    const cf = await execCapture(M4, [`-D_CF_DIR_=${CF_DIR}/`, join(CF_DIR, 'm4/cf.m4'), l.mc], 20_000);
    if (!/^O DaemonPortOptions=Port=\d+/m.test(cf)) throw new Error(`m4 produced no usable sendmail.cf from ${l.mc}`);
    writeFileSync(l.cf, cf);
    const runSh = join(base, 'run.sh');
    writeFileSync(runSh, runScript(l, port, ownerPid, maxLifetimeSec), { mode: 0o755 });

    // Does not keep the test process alive for the instance; run.sh stops it when we are gone.
    child = spawnInPrivateNamespace(runSh, base, l.runLog);
  } catch (e) {
    await teardownNamespaceInstance({ base, child, daemonPid: undefined, pin: undefined, lockFile: undefined });
    throw e;
  }

  // Wait for run.sh to start sendmail, then for the daemon to hold the listening socket(s).
  const deadline = Date.now() + startTimeoutMs;
  let smPid: number | undefined;
  for (;;) {
    const state = readIfExists(join(base, 'state')).trim();
    if (smPid === undefined && state.startsWith('started ')) smPid = Number(state.slice(8));
    if (smPid !== undefined && daemonListening(smPid, port, ipv6)) break;
    const bindFailed = /cannot bind: Address already in use/.test(readIfExists(l.maillog));
    const dead = smPid !== undefined && !alive(smPid);
    if (state.startsWith('failed') || bindFailed || dead || (child.exited() && smPid === undefined) || Date.now() > deadline) {
      const why = state.startsWith('failed')
        ? state
        : bindFailed
          ? `port ${port} already in use`
          : dead
            ? `sendmail ${smPid} exited`
            : child.exited()
              ? 'run.sh exited early'
              : `not listening after ${startTimeoutMs} ms`;
      const diag = diagnostics();
      await teardownNamespaceInstance({ base, child, daemonPid: smPid, pin: undefined, lockFile: undefined });
      if (bindFailed) throw new PortInUseError(`private sendmail: ${why}`);
      throw new Error(`private sendmail did not start (${why})${diag}`);
    }
    await sleep(20);
  }
  // Pin the namespace: while this fd is open its inode cannot be reused by a
  // new namespace, so the teardown (which kills by namespace identity) can
  // never hit another instance's processes (or swaks), e.g. in a parallel jest
  // worker. Taken from run.sh, our unreaped child.
  const pin = pinChildNamespace(child);
  const nsChild = child;

  const command = (args: readonly string[], input?: string): Promise<string> => {
    if (nsChild.pid === undefined || nsChild.exited() || !alive(nsChild.pid)) {
      return Promise.reject(new Error('the private sendmail instance is not running'));
    }
    // Inside the instance's namespace: the bare binary would stall 60 s and ask DNS.
    return execCapture(NSENTER, ['-t', String(nsChild.pid), '-m', '-u', '--', SENDMAIL_BIN, '-C', l.cf, ...args], 30_000, input);
  };

  const queueIds = async (): Promise<SendmailQueueEntry[]> => [
    ...parseMailq(await command(['-bp']), false),
    ...parseMailq(await command(['-bp', '-qQ']), true),
  ];

  const deliveredMessages = (): string[] => readMaildir(l.sink);

  let stopped: Promise<void> | undefined;
  const instance: SendmailInstance = {
    smtpHost: '127.0.0.1',
    smtpPort: port,
    ipv6,
    baseDir: base,
    queueDir: l.queue,
    sinkDir: l.sink,
    mcFile: l.mc,
    cfFile: l.cf,
    log: () => readIfExists(l.maillog),
    traffic: () => readIfExists(l.traffic),
    async waitForLog(pattern: RegExp, timeoutMs: number): Promise<string> {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const text = readIfExists(l.maillog);
        if (pattern.test(text)) return text;
        if (Date.now() > end) throw new Error(`sendmail log did not match ${String(pattern)} within ${timeoutMs} ms\n--- maillog ---\n${text}`);
        await sleep(25);
      }
    },
    queueIds,
    quarantined: async () => (await queueIds()).filter((q) => q.quarantined).map((q) => q.id),
    deliveredMessages,
    waitForDelivery: (count: number, timeoutMs: number): Promise<string[]> =>
      waitForMaildir(deliveredMessages, queueIds, () => readIfExists(l.maillog), count, timeoutMs),

    command,
    async flush(): Promise<void> {
      await command(['-q']);
    },
    async release(id: string): Promise<void> {
      if (!/^[0-9A-Za-z]+$/.test(id)) throw new Error(`bad queue id ${JSON.stringify(id)}`);
      await command(['-Q', '-qQ', `-qI${id}`]);
      await command([`-qI${id}`]);
    },
    stop(): Promise<void> {
      stopped ??= teardownNamespaceInstance({ base, child: nsChild, daemonPid: smPid, pin, lockFile: portLockPath('sendmail', port) });
      return stopped;
    },
  };
  return instance;
}
