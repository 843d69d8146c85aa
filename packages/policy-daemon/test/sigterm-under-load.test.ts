// SIGTERM under load, against the real binary (dist/cli.js) as systemd stops it.
// A Postfix-like client holds many persistent policy connections, half of them
// with one request outstanding (held back by a tarpit rule, so it is surely in
// flight), half idle; milter sessions are mid-transaction. Then SIGTERM:
// every request in flight gets its answer, idle policy connections are closed
// at once, new connections are refused, open milter sessions may finish their
// message, one that never finishes is cut at the end of the grace period, and
// the process exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMilterClient, createPolicyClient, type MilterClient, type PolicyClient } from '@levee/milter-proto';
import { rcptRequest } from './support/daemon.js';
import { CLI } from './support/cli.js';
import { alive, freeLoopbackPortPair, waitUntil } from './support/process-tools.js';

jest.setTimeout(60_000);

const BUSY = 20;
const IDLE = 20;
/** The tarpit that keeps a request in flight: longer than it takes to send SIGTERM, shorter than the 5 s grace. */
const HOLD = '3s';
/** The daemon's grace period (daemon.ts close()) plus room for a loaded machine. */
const EXIT_BOUND_MS = 5000 + 7000;

let dir: string;
let child: ChildProcess | undefined;
let output = '';
const sockets: Socket[] = [];

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "tsc -b" first`);
  dir = mkdtempSync(join(tmpdir(), 'levee-sigterm-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  // Only the daemon this test started, by its PID.
  if (child?.pid !== undefined && child.exitCode === null && alive(child.pid)) child.kill('SIGKILL');
  child = undefined;
  output = '';
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      sockets.push(socket);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** The error code of a connection attempt, or "connected". */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Resolves when the peer has ended or closed the connection. */
function closedByPeer(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.readableEnded || socket.destroyed) resolve();
    socket.once('end', () => resolve());
    socket.once('close', () => resolve());
  });
}

async function start(configFile: string): Promise<void> {
  const proc = spawn(process.execPath, [CLI, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`levee did not start:\n${output}`)), 15_000);
    const onData = (d: Buffer): void => {
      output += d.toString();
      if (output.includes('"levee started"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`levee exited:\n${output}`));
    });
  });
}

const count = (re: RegExp): number => output.split('\n').filter((line) => re.test(line)).length;

async function milterSession(port: number, sender: string): Promise<{ client: MilterClient; socket: Socket }> {
  const socket = await open(port);
  const client = createMilterClient(socket, { timeoutMs: 15_000 });
  await client.negotiate();
  await client.connect({ hostname: '[198.51.100.9]', family: '4', port: 40000, address: '198.51.100.9' });
  await client.helo('client.example.net');
  await client.mail(`<${sender}>`);
  return { client, socket };
}

test('SIGTERM under load: in-flight requests answered, idle connections closed, new ones refused, exit 0', async () => {
  const [policyPort, milterPort] = await freeLoopbackPortPair();
  const file = join(dir, 'levee.yaml');
  writeFileSync(
    file,
    [
      `listen: { policy: ["inet:127.0.0.1:${policyPort}"], milter: ["inet:127.0.0.1:${milterPort}"] }`,
      'metrics: { listen: false }',
      'admin: { listen: false }',
      // Unbuffered, so a line is on our side of the pipe as soon as it is logged.
      'log: { buffered: false }',
      'rules:',
      '  - name: slow',
      '    stage: rcpt',
      '    match: { sender: ["@slow.example"] }',
      '    action: reject',
      '    text: "Slowly refused"',
      `    delay: ${HOLD}`,
      '',
    ].join('\n'),
  );
  await start(file);

  // Idle: one request answered, then the connection stays open as Postfix keeps it.
  const idle: { socket: Socket; client: PolicyClient }[] = [];
  for (let i = 0; i < IDLE; i++) {
    const socket = await open(policyPort);
    const client = createPolicyClient(socket, { timeoutMs: 15_000 });
    expect((await client.request(rcptRequest({ client_address: `198.51.100.${i + 1}` }))).action).toBe('DUNNO');
    idle.push({ socket, client });
  }

  // Milter: one transaction between RCPT and DATA, one RCPT held by the tarpit,
  // and one connection that will never finish its SMTP session.
  const midTransaction = await milterSession(milterPort, 'alice@example.net');
  expect((await midTransaction.client.rcpt('<bob@example.org>')).reply?.type).toBe('CONTINUE');
  const heldRcpt = await milterSession(milterPort, 'x@slow.example');
  const stuck = await milterSession(milterPort, 'carol@example.net');

  // Busy: one request outstanding per connection, all held by the tarpit.
  let sigtermSent = false;
  const events: string[] = [];
  const busy = await Promise.all(
    Array.from({ length: BUSY }, async (_, i) => {
      const socket = await open(policyPort);
      const client = createPolicyClient(socket, { timeoutMs: 15_000 });
      const answer = client.request(rcptRequest({ client_address: `203.0.113.${i + 1}`, sender: `u${i}@slow.example` })).then((r) => {
        events.push('busy answered');
        return { action: r.action, afterSigterm: sigtermSent };
      });
      return { socket, answer };
    }),
  );
  const heldReply = heldRcpt.client.rcpt('<bob@example.org>').then((r) => ({ reply: r.reply, afterSigterm: sigtermSent }));
  const idleClosed = idle.map(({ socket }) => closedByPeer(socket).then(() => events.push('idle closed')));

  // Every held request has been decided (and logged) and is waiting out its tarpit.
  expect(await waitUntil(() => count(/"rule":"slow"/) === BUSY + 1, 10_000)).toBe(true);
  const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
  sigtermSent = true;
  child?.kill('SIGTERM');
  expect(await waitUntil(() => output.includes('"stopping"'), 5000)).toBe(true);

  // New connections are refused: the daemon closes its listeners right after logging "stopping",
  // in the same turn of its event loop, so by the time the line has reached us both ports refuse.
  expect(await tryConnect(policyPort)).toBe('ECONNREFUSED');
  expect(await tryConnect(milterPort)).toBe('ECONNREFUSED');

  // Every request in flight is answered, after SIGTERM, with the rule's reply; then its connection ends.
  const answers = await Promise.all(busy.map((b) => b.answer));
  expect(answers).toEqual(Array(BUSY).fill({ action: '550 5.7.1 Slowly refused', afterSigterm: true }));
  await Promise.all(busy.map((b) => closedByPeer(b.socket)));
  const held = await heldReply;
  expect(held.afterSigterm).toBe(true);
  expect(held.reply?.type === 'REPLYCODE' ? held.reply.text : held.reply?.type).toBe('550 5.7.1 Slowly refused');

  // Idle policy connections were ended at once: before any held answer went out.
  await Promise.all(idleClosed);
  expect(events.slice(0, IDLE)).toEqual(Array(IDLE).fill('idle closed'));

  // The open milter transaction finishes its message within the grace period.
  await midTransaction.client.data();
  await midTransaction.client.header('Subject', 'hello');
  await midTransaction.client.eoh();
  await midTransaction.client.body(Buffer.from('text\r\n'));
  expect((await midTransaction.client.eom()).reply.type).toBe('CONTINUE');
  midTransaction.client.quit();
  heldRcpt.client.quit();

  // The session that never ends is cut at the end of the grace period, and the daemon exits 0.
  const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), EXIT_BOUND_MS).unref());
  expect(await Promise.race([exited, deadline])).toBe(0);
  await closedByPeer(stuck.socket);
  expect(output).toContain('levee stopped');
  expect(output).not.toMatch(/"level":(50|60)/); // no error or fatal line
});
