// Test harness: a private, throw-away Postfix instance on a loopback port.
//
// Every instance lives in its own temp dir (mkdtemp under os.tmpdir()):
//   conf/            main.cf + master.cf (back-dated, see below)
//   queue/           queue_directory (Postfix creates the subdirectories)
//   data/            data_directory (must be owned by the postfix user)
//   sink/            one maildir; every accepted message is delivered here
//   etc/             private /etc/hosts, nsswitch.conf ("hosts: files"), resolv.conf (127.0.0.1)
//   maillog          Postfix's own log (there is no syslog on these machines)
//   run.sh, run.log  the namespace script and its output
//
// The whole instance (master and every child) runs inside
// `unshare --mount --uts`: run.sh bind-mounts the private hosts, nsswitch.conf
// and resolv.conf over /etc, sets the host name to postfix.test.invalid, runs
// `postfix -c conf start` and then stays alive as a bounded watchdog. It stops
// Postfix (SIGTERM to the master, as `postfix stop` does) when the harness asks (stop file), when the owning Node process is
// gone, when the master died, or after a maximum lifetime. Nothing in the
// instance can therefore ask the DNS server in /etc/resolv.conf; in addition
// main.cf disables DNS for the SMTP/LMTP clients and smtpd's peer-name lookup,
// and mail never leaves through smtp (default/relay transport = error).
//
// postqueue/postsuper/postcat run outside the namespace with `-c conf`: traced
// with strace they read main.cf, passwd/group and talk to the queue's UNIX
// sockets only (no /etc/hosts, no resolv.conf, no inet sockets).
//
// Must run as root (private queue directories, bind mounts, namespaces).
import { readMaildir, waitForMaildir } from './mail-sink.js';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
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
} from './process-tools.js';

export { ipv6LoopbackAvailable };

export interface PostfixOptions {
  /** main.cf overrides/additions, e.g. { smtpd_recipient_restrictions: 'reject_unauth_destination, check_policy_service inet:127.0.0.1:PORT' } */
  readonly mainCf?: Readonly<Record<string, string>>;
  /** Also listen on [::1] (only if ::1 exists on lo; see PostfixInstance.ipv6). */
  readonly ipv6?: boolean;
  /** The instance stops itself after this many seconds even if nobody calls stop(). Default 900. */
  readonly maxLifetimeSec?: number;
  /** How long startPostfix waits for `postfix start`. Default 20000. */
  readonly startTimeoutMs?: number;
  /**
   * SMTP AUTH (PLAIN, LOGIN) for these users -> passwords, through Cyrus SASL
   * with a private sasldb (needs sasl2-bin and libsasl2-modules, which
   * scripts/install-test-deps.sh installs). Postfix then reports
   * sasl_username to policy services and {auth_authen} to milters.
   */
  readonly saslUsers?: Readonly<Record<string, string>>;
}

export interface PostfixInstance {
  /** Loopback address and port the smtpd listens on (IPv4). */
  readonly smtpHost: string;
  readonly smtpPort: number;
  /** True if the instance also listens on [::1]:smtpPort. */
  readonly ipv6: boolean;
  readonly configDir: string;
  readonly queueDir: string;
  /** Maildir where all accepted mail is delivered (new/ and cur/). */
  readonly sinkDir: string;
  /** The instance's temp dir (removed by stop()). */
  readonly baseDir: string;
  /** Contents of Postfix's own log file. */
  maillog(): string;
  /** Queue ids in the hold queue. */
  holdQueue(): Promise<string[]>;
  /** Everything in the queue (postqueue -j): maildrop, incoming, active, deferred, hold. */
  queueIds(): Promise<{ id: string; queue: string }[]>;
  /** Raw texts of the messages delivered into the sink maildir, oldest first. */
  deliveredMessages(): string[];
  /**
   * The delivered messages whose To: header is `recipient` (as swaks writes it).
   * Tests that check a message was NOT delivered use this, not a count of the
   * whole sink, which an earlier test's late delivery can change.
   */
  deliveredTo(recipient: string): string[];
  /** Waits until a message to `recipient` is in the sink (see deliveredTo); rejects after timeoutMs with diagnostics. */
  waitForDeliveryTo(recipient: string, timeoutMs: number): Promise<string[]>;
  /** Waits until at least `count` messages are in the sink; rejects after timeoutMs with diagnostics. */
  waitForDelivery(count: number, timeoutMs: number): Promise<string[]>;
  /** postqueue -f */
  flush(): Promise<void>;
  /** Runs a Postfix command (postqueue, postsuper, postcat, postconf, ...) with `-c configDir` prepended to args. */
  command(cmd: string, args: readonly string[]): Promise<string>;
  /** postfix stop, kill leftovers by PID, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const POSTFIX = '/usr/sbin/postfix';
const POSTQUEUE = '/usr/sbin/postqueue';
const COMMAND_DIR = '/usr/sbin';
const HOSTNAME = 'postfix.test.invalid';
const PRIVATE_RESOLV_CONF = 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n';

const INSTALL_HINT = 'run `bash scripts/install-test-deps.sh` (as root) to install postfix and swaks';

/** True if the Postfix binaries (and unshare, which the harness needs) are installed. */
export function postfixAvailable(): boolean {
  return [POSTFIX, POSTQUEUE, join(COMMAND_DIR, 'postsuper'), '/usr/lib/postfix/sbin/master', unshareBinary()].every((p) =>
    existsSync(p),
  );
}

function lookupUser(name: string): { uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`user ${name} not found in /etc/passwd; ${INSTALL_HINT}`);
}

/** Number of sockets listening on 127.0.0.1:port (from /proc/net/tcp); undefined if unreadable. */
function listenersOn127(port: number): number | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return undefined;
  }
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return text.split('\n').filter((line) => {
    const f = line.trim().split(/\s+/);
    return f[1] === local && f[3] === '0A';
  }).length;
}

function formatValue(v: string): string {
  // main.cf continuation lines start with whitespace.
  return v
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join('\n    ');
}

interface Layout {
  base: string;
  conf: string;
  queue: string;
  data: string;
  sink: string;
  etc: string;
  maillog: string;
}

function mainCfText(l: Layout, inetProtocols: string, postfixUser: { uid: number; gid: number }, overrides: Readonly<Record<string, string>>): string {
  const settings = new Map<string, string>([
    ['compatibility_level', '3.6'],
    ['config_directory', l.conf],
    ['queue_directory', l.queue],
    ['data_directory', l.data],
    ['meta_directory', '/etc/postfix'],
    ['maillog_file', l.maillog],
    ['maillog_file_prefixes', l.base],
    ['myhostname', HOSTNAME],
    ['mydomain', 'test.invalid'],
    ['myorigin', '$myhostname'],
    ['mydestination', ''],
    // Nobody is trusted by address; the caller's restrictions decide.
    ['mynetworks', ''],
    ['inet_interfaces', 'loopback-only'],
    ['inet_protocols', inetProtocols],
    // No DNS, ever.
    ['smtp_dns_support_level', 'disabled'],
    ['lmtp_dns_support_level', 'disabled'],
    ['smtp_host_lookup', 'native'],
    ['lmtp_host_lookup', 'native'],
    ['smtpd_peername_lookup', 'no'],
    ['default_transport', 'error:5.3.0 the test instance sends no mail out'],
    ['relay_transport', 'error:5.3.0 the test instance sends no mail out'],
    // Every recipient domain goes to one maildir.
    ['virtual_mailbox_domains', 'static:ALL'],
    ['virtual_mailbox_base', l.base],
    ['virtual_mailbox_maps', 'static:sink/'],
    ['virtual_uid_maps', `static:${postfixUser.uid}`],
    ['virtual_gid_maps', `static:${postfixUser.gid}`],
    ['alias_maps', ''],
    ['alias_database', ''],
    ['local_recipient_maps', ''],
    // Test speed and stage-by-stage policy.
    ['smtpd_error_sleep_time', '0'],
    ['smtpd_soft_error_limit', '100'],
    ['smtpd_hard_error_limit', '200'],
    ['smtpd_delay_reject', 'no'],
    ['smtpd_client_restrictions', ''],
    ['smtpd_helo_restrictions', ''],
    ['smtpd_sender_restrictions', ''],
    ['smtpd_recipient_restrictions', ''],
    ['smtpd_data_restrictions', ''],
    ['smtpd_end_of_data_restrictions', ''],
    ['smtpd_relay_restrictions', 'permit_mynetworks, reject_unauth_destination'],
    ['smtpd_banner', '$myhostname ESMTP levee-test'],
    ['biff', 'no'],
    ['append_dot_mydomain', 'no'],
    ['queue_run_delay', '300s'],
    ['minimal_backoff_time', '300s'],
    ['maximal_backoff_time', '600s'],
    ['delay_warning_time', '0h'],
    ['smtpd_tls_security_level', 'none'],
    ['smtp_tls_security_level', 'none'],
  ]);
  for (const [k, v] of Object.entries(overrides)) settings.set(k, v);
  const lines = ['# Written by packages/policy-daemon/test/support/postfix.ts (private test instance).'];
  for (const [k, v] of settings) lines.push(`${k} = ${formatValue(v)}`);
  return lines.join('\n') + '\n';
}

function masterCfText(port: number, ipv6: boolean): string {
  // chroot (5th column) = n everywhere: a private queue directory has no chroot jail.
  const rows = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    ...(ipv6 ? [`[::1]:${port} inet n - n - - smtpd`] : []),
    'pickup    unix  n       -       n       60      1       pickup',
    'cleanup   unix  n       -       n       -       0       cleanup',
    'qmgr      unix  n       -       n       300     1       qmgr',
    'tlsmgr    unix  -       -       n       1000?   1       tlsmgr',
    'rewrite   unix  -       -       n       -       -       trivial-rewrite',
    'bounce    unix  -       -       n       -       0       bounce',
    'defer     unix  -       -       n       -       0       bounce',
    'trace     unix  -       -       n       -       0       bounce',
    'verify    unix  -       -       n       -       1       verify',
    'flush     unix  n       -       n       1000?   0       flush',
    'proxymap  unix  -       -       n       -       -       proxymap',
    'proxywrite unix -       -       n       -       1       proxymap',
    'smtp      unix  -       -       n       -       -       smtp',
    'relay     unix  -       -       n       -       -       smtp',
    'showq     unix  n       -       n       -       -       showq',
    'error     unix  -       -       n       -       -       error',
    'retry     unix  -       -       n       -       -       error',
    'discard   unix  -       -       n       -       -       discard',
    'local     unix  -       n       n       -       -       local',
    'virtual   unix  -       n       n       -       -       virtual',
    'lmtp      unix  -       -       n       -       -       lmtp',
    'anvil     unix  -       -       n       -       1       anvil',
    'scache    unix  -       -       n       -       1       scache',
    'postlog   unix-dgram n  -       n       -       1       postlogd',
  ];
  return '# Written by packages/policy-daemon/test/support/postfix.ts (private test instance).\n' + rows.join('\n') + '\n';
}

function runScript(l: Layout, port: number, ownerPid: number, maxLifetimeSec: number): string {
  const D = shQuote(l.base);
  return `#!/bin/sh
# Runs inside: unshare --mount --uts /bin/sh run.sh   (written by test/support/postfix.ts)
# Private /etc/hosts + nsswitch.conf (hosts: files) and host name, then Postfix,
# then a bounded watchdog that stops Postfix when asked (stop file), when the
# owning Node process (${ownerPid}) is gone, when the master died, or after ${maxLifetimeSec} s.
set -u
D=${D}
OWNER=${ownerPid}
# A daemonized master is reparented to PID 1 and stays a zombie until PID 1
# reaps it (here that takes 1-2 s), so "kill -0" is not enough.
running() { case "$(cat "/proc/$1/stat" 2>/dev/null)" in "" | *") Z "* | *") X "*) return 1 ;; *) return 0 ;; esac; }
setstate() { echo "$1" > "$D/state.tmp" && mv -f "$D/state.tmp" "$D/state"; }
fail() { echo "run.sh: $1" >&2; setstate "failed $1"; exit 1; }
mount --make-rprivate / 2>/dev/null || true
mount --bind "$D/etc/hosts" /etc/hosts || fail "bind-mount /etc/hosts"
mount --bind "$D/etc/nsswitch.conf" /etc/nsswitch.conf || fail "bind-mount /etc/nsswitch.conf"
mount --bind "$D/etc/resolv.conf" /etc/resolv.conf || fail "bind-mount /etc/resolv.conf"
hostname ${HOSTNAME} || fail "hostname"
# Postfix prints its errors only to a terminal (there is no syslog here), so
# start it under script(1) to get them into run.log.
script -qec "${POSTFIX} -c '$D/conf' start" /dev/null >&2 || fail "postfix start exited $?"
MPID=$(tr -dc 0-9 < "$D/queue/pid/master.pid")
[ -n "$MPID" ] || fail "no master.pid"
setstate "ready $MPID"
end=$(( $(date +%s) + ${maxLifetimeSec} ))
reason="max lifetime reached"
while [ "$(date +%s)" -lt "$end" ]; do
  if [ -e "$D/stop" ]; then reason="stop requested"; break; fi
  if ! kill -0 "$OWNER" 2>/dev/null; then reason="owner process $OWNER gone"; break; fi
  if ! running "$MPID"; then reason="master $MPID died"; break; fi
  sleep 0.1
done
echo "run.sh: stopping ($reason)" >&2
# What \`postfix stop\` does, minus its 1 s polling: SIGTERM the master (it
# terminates its process group, i.e. all Postfix children, then exits).
kill -TERM "$MPID" 2>/dev/null || true
i=0
while [ $i -lt 200 ] && running "$MPID"; do sleep 0.05; i=$((i + 1)); done
if running "$MPID"; then echo "run.sh: master $MPID still alive, SIGKILL" >&2; kill -KILL "$MPID"; fi
setstate "stopped"
# Nobody else will clean up after a vanished owner.
if ! kill -0 "$OWNER" 2>/dev/null; then cd / && rm -rf -- "$D" && rm -f -- ${shQuote(portLockPath('postfix', port))}; fi
exit 0
`;
}

// No smtpd_sasl_local_domain: Cyrus's realm is then myhostname and Postfix reports plain user names ("alice").
const SASL_REALM = HOSTNAME;
const SASLPASSWD2 = '/usr/sbin/saslpasswd2';

/** What main.cf needs for SMTP AUTH through Cyrus SASL (smtpd.conf: see writeSaslDb). */
const SASL_MAIN_CF: Readonly<Record<string, string>> = {
  smtpd_sasl_auth_enable: 'yes',
  smtpd_sasl_type: 'cyrus',
  smtpd_sasl_path: 'smtpd',
  // Plain-text AUTH without TLS: loopback only, test passwords.
  smtpd_sasl_security_options: 'noanonymous',
  smtpd_tls_auth_only: 'no',
};

/**
 * The private Cyrus SASL config (smtpd.conf) and sasldb for `users`, in
 * CONFIG_DIR/sasl: Debian's Postfix has Cyrus read `$config_directory/sasl/smtpd.conf`
 * (seen with strace; cyrus_sasl_config_path is not needed).
 */
async function writeSaslDb(configDir: string, users: Readonly<Record<string, string>>, postfixUser: { uid: number; gid: number }): Promise<void> {
  if (!existsSync(SASLPASSWD2)) throw new Error(`${SASLPASSWD2} is missing; ${INSTALL_HINT}`);
  const dir = join(configDir, 'sasl');
  mkdirSync(dir, { mode: 0o755 });
  const db = join(dir, 'sasldb2');
  writeFileSync(join(dir, 'smtpd.conf'), `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: ${db}\n`);
  for (const [user, password] of Object.entries(users)) {
    await execCapture(SASLPASSWD2, ['-p', '-c', '-f', db, '-u', SASL_REALM, user], 10_000, password);
  }
  chownSync(db, postfixUser.uid, postfixUser.gid);
}

/** Starts a private Postfix instance. Call stop() when done (also in afterAll). */
export async function startPostfix(opts: PostfixOptions = {}): Promise<PostfixInstance> {
  if (!postfixAvailable()) {
    throw new Error(`Postfix is not installed (need ${POSTFIX}, ${POSTQUEUE}, ${unshareBinary()}); ${INSTALL_HINT}`);
  }
  if (process.getuid?.() !== 0) throw new Error('the Postfix test harness must run as root (private queue, namespaces)');
  const postfixUser = lookupUser('postfix');
  const hasV6 = ipv6LoopbackAvailable();
  const ipv6 = opts.ipv6 === true && hasV6;
  const maxLifetimeSec = Math.max(5, Math.floor(opts.maxLifetimeSec ?? 900));
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;

  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await reservePort('postfix', { ipv6 });
    let instance: PostfixInstance;
    try {
      const mainCf = opts.saslUsers === undefined ? (opts.mainCf ?? {}) : { ...SASL_MAIN_CF, ...opts.mainCf };
      instance = await startOnce(port, ipv6, hasV6, postfixUser, maxLifetimeSec, startTimeoutMs, mainCf, opts.saslUsers);
    } catch (e) {
      releasePort('postfix', port);
      throw e;
    }
    // Someone else may have bound the port between our probe and Postfix's bind (SO_REUSEPORT lets both listen).
    const listeners = listenersOn127(port);
    if (listeners === undefined || listeners === 1) return instance;
    await instance.stop();
    lastError = new Error(`port ${port} had ${listeners} listeners after start`);
  }
  throw lastError ?? new Error('startPostfix failed');
}

async function startOnce(
  port: number,
  ipv6: boolean,
  hasV6: boolean,
  postfixUser: { uid: number; gid: number },
  maxLifetimeSec: number,
  startTimeoutMs: number,
  overrides: Readonly<Record<string, string>>,
  saslUsers: Readonly<Record<string, string>> | undefined,
): Promise<PostfixInstance> {
  const base = mkdtempSync(join(tmpdir(), 'levee-postfix-'));
  chmodSync(base, 0o755); // postfix-owned daemons must traverse it
  const l: Layout = {
    base,
    conf: join(base, 'conf'),
    queue: join(base, 'queue'),
    data: join(base, 'data'),
    sink: join(base, 'sink'),
    etc: join(base, 'etc'),
    maillog: join(base, 'maillog'),
  };
  for (const d of [l.conf, l.queue, l.data, l.etc]) mkdirSync(d, { mode: 0o755 });
  chownSync(l.data, postfixUser.uid, postfixUser.gid);
  mkdirSync(l.sink, { mode: 0o700 });
  for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(l.sink, sub), { mode: 0o700 });
  for (const d of [l.sink, join(l.sink, 'tmp'), join(l.sink, 'new'), join(l.sink, 'cur')]) {
    chownSync(d, postfixUser.uid, postfixUser.gid);
  }
  writeFileSync(
    join(l.etc, 'hosts'),
    `127.0.0.1\tlocalhost ${HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback ${HOSTNAME}\n`,
  );
  writeFileSync(
    join(l.etc, 'nsswitch.conf'),
    'passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nservices: files\nprotocols: files\n',
  );
  // Anything that bypasses NSS (a resolver library reading resolv.conf itself) may only ask loopback.
  writeFileSync(join(l.etc, 'resolv.conf'), PRIVATE_RESOLV_CONF);
  if (saslUsers !== undefined) await writeSaslDb(l.conf, saslUsers, postfixUser);
  writeFileSync(join(l.conf, 'main.cf'), mainCfText(l, hasV6 ? 'all' : 'ipv4', postfixUser, overrides));
  writeFileSync(join(l.conf, 'master.cf'), masterCfText(port, ipv6));
  // Postfix waits for a config file modified within the last ~2 s to settle; back-date them.
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(l.conf, 'main.cf'), past, past);
  utimesSync(join(l.conf, 'master.cf'), past, past);
  const runSh = join(base, 'run.sh');
  writeFileSync(runSh, runScript(l, port, process.pid, maxLifetimeSec), { mode: 0o755 });

  const child = spawnInPrivateNamespace(runSh, base, join(base, 'run.log'));

  const diagnostics = (): string =>
    `\n--- run.log ---\n${readIfExists(join(base, 'run.log'))}\n--- maillog ---\n${readIfExists(l.maillog)}`;

  // Wait for run.sh to report "ready <masterpid>" (or failure).
  const deadline = Date.now() + startTimeoutMs;
  let masterPid: number | undefined;
  for (;;) {
    const state = readIfExists(join(base, 'state')).trim();
    if (state.startsWith('ready ')) {
      masterPid = Number(state.slice(6));
      break;
    }
    if (state.startsWith('failed') || (child.exited() && state === '') || Date.now() > deadline) {
      const why = state.startsWith('failed') ? state : child.exited() ? 'run.sh exited early' : `not ready after ${startTimeoutMs} ms`;
      const diag = diagnostics();
      await teardownNamespaceInstance({ base, child, daemonPid: undefined, pin: undefined, lockFile: undefined });
      throw new Error(`private Postfix did not start (${why})${diag}`);
    }
    await sleep(20);
  }
  // Pin the namespace: while this fd is open its inode cannot be reused by a
  // new namespace, so the teardown (which kills by namespace identity) can
  // never hit another instance's processes, e.g. in a parallel jest worker.
  // Taken from run.sh (our unreaped child, so certainly still ours), which
  // shares its namespace with the master.
  const pin = pinChildNamespace(child);

  const command = (cmd: string, args: readonly string[]): Promise<string> =>
    execCapture(cmd.includes('/') ? cmd : join(COMMAND_DIR, cmd), ['-c', l.conf, ...args], 30_000);

  const queueIds = async (): Promise<{ id: string; queue: string }[]> => {
    const out = await command('postqueue', ['-j']);
    const result: { id: string; queue: string }[] = [];
    for (const line of out.split('\n')) {
      if (line.trim() === '') continue;
      const j = JSON.parse(line) as { queue_id?: unknown; queue_name?: unknown };
      if (typeof j.queue_id === 'string' && typeof j.queue_name === 'string') {
        result.push({ id: j.queue_id, queue: j.queue_name });
      }
    }
    return result;
  };

  const deliveredMessages = (): string[] => readMaildir(l.sink);
  const deliveredTo = (recipient: string): string[] => deliveredMessages().filter((m) => m.split(/\r?\n/).includes(`To: ${recipient}`));

  let stopped: Promise<void> | undefined;
  const instance: PostfixInstance = {
    smtpHost: '127.0.0.1',
    smtpPort: port,
    ipv6,
    configDir: l.conf,
    queueDir: l.queue,
    sinkDir: l.sink,
    baseDir: base,
    maillog: () => readIfExists(l.maillog),
    queueIds,
    holdQueue: async () => (await queueIds()).filter((q) => q.queue === 'hold').map((q) => q.id),
    deliveredMessages,
    deliveredTo,
    waitForDeliveryTo: (recipient: string, timeoutMs: number): Promise<string[]> =>
      waitForMaildir(() => deliveredTo(recipient), queueIds, () => readIfExists(l.maillog), 1, timeoutMs),
    waitForDelivery: (count: number, timeoutMs: number): Promise<string[]> =>
      waitForMaildir(deliveredMessages, queueIds, () => readIfExists(l.maillog), count, timeoutMs),

    async flush(): Promise<void> {
      await command('postqueue', ['-f']);
    },
    command,
    stop(): Promise<void> {
      stopped ??= teardownNamespaceInstance({ base, child, daemonPid: masterPid, pin, lockFile: portLockPath('postfix', port) });
      return stopped;
    },
  };
  return instance;
}
