/**
 * Test support: a small SMTP client that sends one message and records the
 * reply that decided it, and a retry loop that behaves like a sending MTA
 * (a 4xx or a lost connection is retried later, a 5xx is final).
 *
 * Loopback only; every step has a deadline and every loop a bound.
 */
import { connect, type Socket } from 'node:net';

export interface SmtpMessage {
  readonly from: string;
  readonly to: string;
  /** Header lines and body, LF line ends; sent with CRLF and dot-stuffed. */
  readonly headers: readonly string[];
  readonly body: string;
}

export type SmtpStage = 'connect' | 'greeting' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'end-of-data';

/** How one SMTP transaction ended. code 0: the connection failed or was lost before a reply. */
export interface SmtpAttempt {
  readonly stage: SmtpStage;
  readonly code: number;
  readonly text: string;
  readonly startedAt: number;
  readonly endedAt: number;
}

export interface SmtpTarget {
  readonly host: string;
  readonly port: number;
  readonly helo: string;
  /** Deadline for each reply. */
  readonly stepTimeoutMs: number;
}

/** The message as it goes on the wire after DATA: CRLF line ends, dot-stuffed, ending with CRLF.CRLF. */
export function dataBytes(message: SmtpMessage): string {
  const lines = [...message.headers, '', ...message.body.replace(/\n$/, '').split('\n')];
  return lines.map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n') + '\r\n.\r\n';
}

/** A reader of SMTP replies (multi-line `250-...` joined) from a socket. */
function replyReader(socket: Socket): (timeoutMs: number) => Promise<{ code: number; text: string }> {
  let buffered = '';
  let waiter: (() => void) | undefined;
  let closed = false;
  socket.on('data', (d: Buffer) => {
    buffered += d.toString('latin1');
    waiter?.();
  });
  socket.on('close', () => {
    closed = true;
    waiter?.();
  });
  const take = (): { code: number; text: string } | undefined => {
    const lines: string[] = [];
    let at = 0;
    for (;;) {
      const end = buffered.indexOf('\r\n', at);
      if (end < 0) return undefined;
      const line = buffered.slice(at, end);
      at = end + 2;
      lines.push(line);
      if (line[3] !== '-') {
        buffered = buffered.slice(at);
        return { code: Number(line.slice(0, 3)) || 0, text: lines.map((l) => l.slice(4)).join('\n') };
      }
    }
  };
  return (timeoutMs) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => finish({ code: 0, text: `no reply within ${timeoutMs} ms` }), timeoutMs);
      const finish = (r: { code: number; text: string }): void => {
        clearTimeout(timer);
        waiter = undefined;
        resolve(r);
      };
      const check = (): void => {
        const r = take();
        if (r !== undefined) finish(r);
        else if (closed) finish({ code: 0, text: 'connection closed' });
      };
      waiter = check;
      check();
    });
}

/** sendOnce - one SMTP session for one message; resolves with the reply that ended it (never rejects). */
export function sendOnce(target: SmtpTarget, message: SmtpMessage): Promise<SmtpAttempt> {
  const startedAt = Date.now();
  return new Promise((resolve) => {
    const socket = connect({ host: target.host, port: target.port });
    const read = replyReader(socket);
    let connected = false;
    let settled = false;
    const end = (stage: SmtpStage, code: number, text: string): void => {
      if (settled) return;
      settled = true;
      if (code !== 0 && !socket.destroyed) socket.end('QUIT\r\n');
      setTimeout(() => socket.destroy(), 1000).unref();
      resolve({ stage, code, text, startedAt, endedAt: Date.now() });
    };
    const steps: readonly { stage: SmtpStage; send?: string; want: number }[] = [
      { stage: 'greeting', want: 220 },
      { stage: 'ehlo', send: `EHLO ${target.helo}\r\n`, want: 250 },
      { stage: 'mail', send: `MAIL FROM:<${message.from}>\r\n`, want: 250 },
      { stage: 'rcpt', send: `RCPT TO:<${message.to}>\r\n`, want: 250 },
      { stage: 'data', send: 'DATA\r\n', want: 354 },
      { stage: 'end-of-data', send: dataBytes(message), want: 250 },
    ];
    const run = async (): Promise<void> => {
      for (const step of steps) {
        if (step.send !== undefined && !socket.destroyed) socket.write(step.send);
        const r = await read(target.stepTimeoutMs);
        if (r.code !== step.want || step.stage === 'end-of-data') {
          end(step.stage, r.code, r.text);
          return;
        }
      }
    };
    // After connecting, errors surface as 'close' through the reader.
    socket.on('error', (e) => {
      if (!connected) end('connect', 0, e.message);
    });
    socket.once('connect', () => {
      connected = true;
      void run();
    });
  });
}

export interface DeliveryRecord {
  readonly message: SmtpMessage;
  readonly attempts: readonly SmtpAttempt[];
  /** 'accepted': 250 at end of data; 'rejected': a 5xx; 'gave-up': still 4xx after the retry bound. */
  readonly outcome: 'accepted' | 'rejected' | 'gave-up';
}

/** sendWithRetries - as a sending MTA would: retry 4xx and lost connections after a pause, stop at 250 or 5xx. */
export async function sendWithRetries(
  target: SmtpTarget,
  message: SmtpMessage,
  retry: { readonly maxAttempts: number; readonly pauseMs: number },
): Promise<DeliveryRecord> {
  const attempts: SmtpAttempt[] = [];
  for (let i = 0; i < retry.maxAttempts; i++) {
    const a = await sendOnce(target, message);
    attempts.push(a);
    if (a.stage === 'end-of-data' && a.code === 250) return { message, attempts, outcome: 'accepted' };
    if (a.code >= 500) return { message, attempts, outcome: 'rejected' };
    await new Promise((r) => setTimeout(r, retry.pauseMs));
  }
  return { message, attempts, outcome: 'gave-up' };
}
