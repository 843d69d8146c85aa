// Test helper: run swaks against a loopback SMTP server and parse its transcript.
//
// swaks always gets --server (so it never looks up MX records) and --helo. It
// runs inside `unshare --mount --uts` with a private /etc/hosts,
// nsswitch.conf ("hosts: files"), resolv.conf (nameserver 127.0.0.1) and host
// name swaks.test.invalid: traced, a
// plain swaks reads /etc/resolv.conf and resolves the local host name, which on
// a host without a matching /etc/hosts entry would ask the DNS server.
// The run is bounded: after timeoutMs the process is killed by its PID.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SwaksReply {
  readonly code: number;
  /** Text of the reply; lines of a multi-line reply joined with "\n" (without the code). */
  readonly text: string;
}

export interface SwaksResult {
  /** swaks' exit code (0 ok, 2 connect error, 21 banner, 22 HELO, 23 MAIL, 24 no RCPT accepted, 25 DATA, 26 end of data, ...); -1 if killed on timeout. */
  readonly exitCode: number;
  /** stdout and stderr of swaks, in order. */
  readonly transcript: string;
  /** The last SMTP reply code the server sent. */
  readonly lastCode: number | undefined;
  /** All server replies, in order. */
  readonly replies: SwaksReply[];
  /** True if swaks did not finish within timeoutMs and was killed. */
  readonly timedOut: boolean;
}

export interface SwaksOptions {
  readonly server: string;
  readonly port: number;
  readonly from: string;
  readonly to: string | readonly string[];
  /** Default: client.test.invalid */
  readonly helo?: string;
  /** Local address to connect from, e.g. 127.0.0.9 (all of 127/8 is on lo). */
  readonly localInterface?: string;
  readonly body?: string;
  /** The whole message (headers, blank line, body) instead of swaks' own; CRLF line ends. */
  readonly data?: string;
  readonly header?: Readonly<Record<string, string>>;
  readonly attach?: readonly { readonly name: string; readonly content: Buffer | string }[];
  /** swaks --quit-after: CONNECT, FIRST-HELO, HELO, AUTH, MAIL, RCPT, ... */
  readonly quitAfter?: string;
  /** Hard limit for the whole run. Default 30000. */
  readonly timeoutMs?: number;
  readonly authUser?: string;
  readonly authPassword?: string;
}

const SWAKS = '/usr/bin/swaks';
const UNSHARE = '/usr/bin/unshare';
const HOSTNAME = 'swaks.test.invalid';
const INET6_PM = '/usr/share/perl5/IO/Socket/INET6.pm';

export function swaksAvailable(): boolean {
  return existsSync(SWAKS) && existsSync(UNSHARE);
}

/** Parses swaks' transcript into the server's replies (`<-  250 ...`, `<** 550 ...`, `<~  ...` for TLS). */
export function parseSwaksReplies(transcript: string): SwaksReply[] {
  const replies: SwaksReply[] = [];
  let pending: string[] = [];
  for (const line of transcript.split(/\r?\n/)) {
    const m = /^<(?:-|~|\*\*|~\*\*?)\s+(\d{3})([- ]?)(.*)$/.exec(line);
    if (!m) continue;
    const code = Number(m[1]);
    pending.push(m[3] ?? '');
    if (m[2] !== '-') {
      replies.push({ code, text: pending.join('\n') });
      pending = [];
    }
  }
  return replies;
}

export function swaks(opts: SwaksOptions): Promise<SwaksResult> {
  if (!swaksAvailable()) {
    return Promise.reject(
      new Error(`swaks is not installed (need ${SWAKS}); run \`bash scripts/install-test-deps.sh\` (as root)`),
    );
  }
  if (opts.server.includes(':') && !existsSync(INET6_PM)) {
    return Promise.reject(
      new Error(`swaks needs IO::Socket::INET6 for IPv6 (${INET6_PM}); run \`bash scripts/install-test-deps.sh\` (as root)`),
    );
  }
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const dir = mkdtempSync(join(tmpdir(), 'levee-swaks-'));
  writeFileSync(join(dir, 'hosts'), `127.0.0.1\tlocalhost ${HOSTNAME}\n::1\tlocalhost ip6-localhost ${HOSTNAME}\n`);
  writeFileSync(join(dir, 'nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\n');
  // Net::DNS and the like read resolv.conf themselves: point them at loopback.
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');

  const to = typeof opts.to === 'string' ? opts.to : opts.to.join(',');
  const args: string[] = [
    '--server', opts.server,
    '--port', String(opts.port),
    '--helo', opts.helo ?? 'client.test.invalid',
    '--from', opts.from,
    '--to', to,
    '--timeout', `${Math.max(1, Math.ceil(timeoutMs / 1000))}s`,
  ];
  if (opts.localInterface !== undefined) args.push('--local-interface', opts.localInterface);
  if (opts.data !== undefined) {
    const p = join(dir, 'data');
    writeFileSync(p, opts.data);
    args.push('--data', `@${p}`);
  }
  if (opts.body !== undefined) {
    const p = join(dir, 'body');
    writeFileSync(p, opts.body);
    args.push('--body', `@${p}`);
  }
  for (const [name, value] of Object.entries(opts.header ?? {})) args.push('--header', `${name}: ${value}`);
  (opts.attach ?? []).forEach((a, i) => {
    const p = join(dir, `attach-${i}`);
    writeFileSync(p, a.content);
    args.push('--attach-name', a.name, '--attach', `@${p}`);
  });
  if (opts.quitAfter !== undefined) args.push('--quit-after', opts.quitAfter);
  if (opts.authUser !== undefined) args.push('--auth-user', opts.authUser);
  if (opts.authPassword !== undefined) args.push('--auth-password', opts.authPassword);

  const script =
    'mount --bind "$0/hosts" /etc/hosts && mount --bind "$0/nsswitch.conf" /etc/nsswitch.conf && ' +
    'mount --bind "$0/resolv.conf" /etc/resolv.conf && ' +
    `hostname ${HOSTNAME} || exit 97; exec ${SWAKS} "$@" 2>&1`;
  const nsArgs = process.getuid?.() === 0 ? ['--mount', '--uts'] : ['--map-root-user', '--mount', '--uts'];

  return new Promise((resolve, reject) => {
    const child = spawn(UNSHARE, [...nsArgs, '/bin/sh', '-c', script, dir, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
    });
    const chunks: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => chunks.push(d));
    child.stderr?.on('data', (d: Buffer) => chunks.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      const transcript = Buffer.concat(chunks).toString('utf8');
      const replies = parseSwaksReplies(transcript);
      resolve({
        exitCode: timedOut ? -1 : (code ?? -1),
        transcript,
        lastCode: replies.at(-1)?.code,
        replies,
        timedOut,
      });
    });
  });
}
