#!/usr/bin/env node
// Milter load generator: K concurrent MTA-side sessions against a Levee milter
// listener, each sending full transactions one command at a time, waiting for
// each reply (as Postfix and sendmail do): CONNECT, HELO, MAIL, 5 x RCPT, DATA,
// 10 headers, EOH, one 4 KiB body chunk (a multipart message with an
// attachment), end of message.
//
// Two clients: `--client lean` (the default, bench/lib/lean-milter.mjs) writes
// the same bytes in the same write(2) calls as the project's client (one per
// event, MACRO packet and command together; the commands negotiated as
// no-reply, SMFIP_NR_*, back to back without waiting) but builds them from
// latin1 strings and reads only each reply's command byte; it checks at start
// that its packets equal the project's encoder's. `--client project` uses the
// project's own createMilterClient (packages/milter-proto/dist), which decodes
// every reply in full and keeps a timer per request.
//
//   --mode persistent   one milter connection per session, messages separated
//                       by QUIT_NC (the connection is reused, CONNECT again)
//   --mode per-message  a new TCP connection, OPTNEG and QUIT for every message
//
//   node bench/milter-load.mjs --port 8891 [--mode persistent] [--connections 8]
//        [--duration 10] [--warmup 2] [--distinct 1M] [--max-messages N] [--pid PID]
//        [--other-pid PID] [--client lean|project]
//
// With --pid it reads the milter's CPU time (its whole process tree) over the
// measured window and samples its RSS; with --other-pid, the CPU time of that
// process too (redis-server).
//
// The command latency (commandLatencyMs) is per round trip: each command the
// MTA waits for a reply to, from its write to the reply.
//
// A message refused early (a reject/tempfail at CONNECT, HELO, MAIL or every
// RCPT) is ended the way an MTA does (ABORT, QUIT_NC) and counted as
// completed, with its outcome in `outcomes`. Prints one JSON object.
import net from 'node:net';
import { parseArgs } from 'node:util';
import { createMilterClient, SMFI_CURR_ACTS, SMFI_CURR_PROT } from '../packages/milter-proto/dist/index.js';
import { checkLeanPackets, createLeanMilterConnection, leanEventPlan, leanPacket, toBytes } from './lib/lean-milter.mjs';
import { addressPicker, cpuSeconds, createSamples, latencySummary, memoryKiB, parseCount, pick, RECIPIENTS, SENDERS } from './lib/common.mjs';

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    mode: { type: 'string', default: 'persistent' },
    connections: { type: 'string', default: '8' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    distinct: { type: 'string', default: '1M' },
    'max-messages': { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '5000' },
    pid: { type: 'string' },
    'other-pid': { type: 'string' },
    client: { type: 'string', default: 'lean' },
  },
});
if (opt.client !== 'lean' && opt.client !== 'project') throw new Error('--client is lean or project');
if (opt.port === undefined) throw new Error('--port is required');
if (opt.mode !== 'persistent' && opt.mode !== 'per-message') throw new Error('--mode persistent|per-message');
const port = Number(opt.port);
const connections = Number(opt.connections);
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const maxMessages = parseCount(opt['max-messages']) || Infinity;
const timeoutMs = Number(opt['timeout-ms']);
const pid = opt.pid === undefined ? undefined : Number(opt.pid);
const otherPid = opt['other-pid'] === undefined ? undefined : Number(opt['other-pid']);
let otherCpuStart = 0;
const nextAddress = addressPicker(opt.distinct);

// ---- the message: 10 headers, a 4096-byte multipart body with one attachment
const BOUNDARY = '=_levee_bench_boundary_42';
const HEADERS = [
  ['Received', 'from mail.sender.example.org (mail.sender.example.org [10.1.2.3])\n\tby mx.example.com (Postfix) with ESMTPS id 4ABCDEF123\n\tfor <user1@example.com>; Tue, 14 May 2024 10:00:00 +0000 (UTC)'],
  ['Received', 'from [192.168.1.20] (unknown [192.168.1.20])\n\tby mail.sender.example.org (Postfix) with ESMTPSA id 1A2B3C4D5E'],
  ['From', '"A Sender" <user1@sender1.example.org>'],
  ['To', '"User One" <user1@example.com>, "User Two" <user2@example.com>'],
  ['Subject', 'Quarterly report and the figures you asked for'],
  ['Date', 'Tue, 14 May 2024 10:00:00 +0000'],
  ['Message-ID', '<20240514100000.12345@sender1.example.org>'],
  ['MIME-Version', '1.0'],
  ['Content-Type', `multipart/mixed; boundary="${BOUNDARY}"`],
  ['X-Mailer', 'Levee bench 1.0'],
];
const BODY = (() => {
  const attachment = Buffer.alloc(1500, 0x41).toString('base64').replace(/.{76}/g, '$&\r\n');
  const head = `--${BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n`;
  const tail = `\r\n--${BOUNDARY}\r\nContent-Type: application/pdf; name="report.pdf"\r\nContent-Disposition: attachment; filename="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${attachment}\r\n--${BOUNDARY}--\r\n`;
  const fill = 4096 - Buffer.byteLength(head) - Buffer.byteLength(tail);
  const line = 'The figures for the quarter are in the attached report; nothing else here.\r\n';
  const text = line.repeat(Math.ceil(fill / line.length)).slice(0, fill - 2) + '\r\n';
  const body = Buffer.from(head + text + tail);
  if (body.length !== 4096) throw new Error(`body is ${body.length} bytes`);
  return body;
})();

const latencies = createSamples(); // per message, CONNECT to the end-of-message reply
const commandLatencies = createSamples(1 << 18); // per command round trip
const outcomes = Object.create(null);
let measuring = warmupMs === 0;
let stopped = false;
let started = 0;
let completed = 0;
let commands = 0;
let errors = 0;
const errorKinds = Object.create(null);
const rssSamples = [];
let cpuStart = 0;
let loadCpuStart = process.cpuUsage();
let measureStart = performance.now();

function startMeasuring() {
  measuring = true;
  measureStart = performance.now();
  loadCpuStart = process.cpuUsage();
  if (pid !== undefined) cpuStart = cpuSeconds(pid);
  if (otherPid !== undefined) otherCpuStart = cpuSeconds(otherPid);
}

function connect() {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: opt.host, port, noDelay: true });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function noteError(error) {
  if (!measuring || stopped) return;
  errors++;
  const kind = error.code ?? error.message;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
}

let seq = 0;
/** One message on a negotiated client; returns its outcome word. */
async function transaction(client, conn) {
  const timed = async (call) => {
    const t0 = performance.now();
    const result = await call();
    if (measuring && result.reply !== undefined) {
      commandLatencies.push(performance.now() - t0);
      commands++;
    }
    return result;
  };
  const refused = (r) => r.reply !== undefined && r.reply.type !== 'CONTINUE';
  const qid = (seq++ & 0xffffff).toString(16).toUpperCase().padStart(10, '5');
  const address = nextAddress();
  let r = await timed(() => client.connect({ hostname: 'mail.sender.example.org', family: '4', port: 41000 + conn, address }, { j: 'mx.example.com', '{daemon_name}': 'smtpd', _: `mail.sender.example.org [${address}]` }));
  if (refused(r)) return `connect:${r.reply.type}`;
  r = await timed(() => client.helo('mail.sender.example.org'));
  if (refused(r)) return `helo:${r.reply.type}`;
  r = await timed(() => client.mail(`<${pick(SENDERS)}>`, ['BODY=8BITMIME', 'SIZE=5000'], { i: qid, '{mail_addr}': 'x' }));
  if (refused(r)) {
    client.abort();
    return `mail:${r.reply.type}`;
  }
  let accepted = 0;
  const first = Math.floor(Math.random() * (RECIPIENTS.length - 5));
  for (let k = 0; k < 5; k++) {
    r = await timed(() => client.rcpt(`<${RECIPIENTS[first + k]}>`, [], { i: qid }));
    if (!refused(r)) accepted++;
  }
  if (accepted === 0) {
    client.abort();
    return 'rcpt:all-refused';
  }
  r = await timed(() => client.data({ i: qid }));
  if (refused(r)) {
    client.abort();
    return `data:${r.reply.type}`;
  }
  for (const [name, value] of HEADERS) {
    r = await timed(() => client.header(name, value));
    if (refused(r)) {
      client.abort();
      return `header:${r.reply.type}`;
    }
  }
  r = await timed(() => client.eoh());
  r = await timed(() => client.body(BODY));
  const eom = await timed(() => client.eom({ i: qid }));
  return `eom:${eom.reply.type}${eom.modifications.length > 0 ? '+mods' : ''}`;
}

// ---- the lean client's message: the same events, macros and bytes as transaction()
const LEAN_OFFER = toBytes(leanPacket.optneg(6, SMFI_CURR_ACTS, SMFI_CURR_PROT));
const LEAN_HELO = leanPacket.helo('mail.sender.example.org');
const LEAN_HEADERS = HEADERS.map(([name, value]) => leanPacket.header(name, value));
const LEAN_EOH = leanPacket.bare('EOH');
const LEAN_BODY = `B${BODY.toString('latin1')}`;
const LEAN_ABORT = toBytes(leanPacket.bare('ABORT'));
const LEAN_QUIT_NC = toBytes(leanPacket.bare('QUIT_NC'));
const LEAN_QUIT = toBytes(leanPacket.bare('QUIT'));

/** Negotiate on a lean connection; the per-event plan (send it? wait for a reply?). */
async function leanNegotiate(mc) {
  const r = await mc.request(LEAN_OFFER, 'OPTNEG');
  if (r.reply !== 'OPTNEG' || r.payload === undefined || r.payload.length < 12) throw new Error(`milter filter answered OPTNEG with ${r.reply}`);
  return leanEventPlan(r.payload).plan;
}

/** One message on a negotiated lean connection; returns its outcome word, as transaction() does. */
async function leanTransaction(mc, plan, conn) {
  // One event: its MACRO packet and command in one write; wait only where the filter answers.
  const event = async (type, macroPacket, commandPacket) => {
    const p = plan[type];
    if (!p.sends) {
      if (macroPacket !== undefined) mc.send(toBytes(macroPacket));
      return undefined;
    }
    const bytes = macroPacket === undefined ? toBytes(commandPacket) : toBytes(macroPacket, commandPacket);
    if (!p.waits) {
      mc.send(bytes);
      return undefined;
    }
    const t0 = performance.now();
    const r = await mc.request(bytes, type);
    if (measuring) {
      commandLatencies.push(performance.now() - t0);
      commands++;
    }
    return r.reply;
  };
  const refused = (reply) => reply !== undefined && reply !== 'CONTINUE';
  const qid = (seq++ & 0xffffff).toString(16).toUpperCase().padStart(10, '5');
  const address = nextAddress();
  let r = await event(
    'CONNECT',
    leanPacket.macro('C', [['j', 'mx.example.com'], ['{daemon_name}', 'smtpd'], ['_', `mail.sender.example.org [${address}]`]]),
    leanPacket.connect('mail.sender.example.org', 41000 + conn, address),
  );
  if (refused(r)) return `connect:${r}`;
  r = await event('HELO', undefined, LEAN_HELO);
  if (refused(r)) return `helo:${r}`;
  r = await event('MAIL', leanPacket.macro('M', [['i', qid], ['{mail_addr}', 'x']]), leanPacket.mail([`<${pick(SENDERS)}>`, 'BODY=8BITMIME', 'SIZE=5000']));
  if (refused(r)) {
    mc.send(LEAN_ABORT);
    return `mail:${r}`;
  }
  let accepted = 0;
  const first = Math.floor(Math.random() * (RECIPIENTS.length - 5));
  const rcptMacro = leanPacket.macro('R', [['i', qid]]);
  for (let k = 0; k < 5; k++) {
    r = await event('RCPT', rcptMacro, leanPacket.rcpt([`<${RECIPIENTS[first + k]}>`]));
    if (!refused(r)) accepted++;
  }
  if (accepted === 0) {
    mc.send(LEAN_ABORT);
    return 'rcpt:all-refused';
  }
  r = await event('DATA', leanPacket.macro('T', [['i', qid]]), leanPacket.bare('DATA'));
  if (refused(r)) {
    mc.send(LEAN_ABORT);
    return `data:${r}`;
  }
  for (const header of LEAN_HEADERS) {
    r = await event('HEADER', undefined, header);
    if (refused(r)) {
      mc.send(LEAN_ABORT);
      return `header:${r}`;
    }
  }
  await event('EOH', undefined, LEAN_EOH);
  await event('BODY', undefined, LEAN_BODY);
  const t0 = performance.now();
  const eom = await mc.request(toBytes(leanPacket.macro('E', [['i', qid]]), leanPacket.bare('BODYEOB')), 'BODYEOB');
  if (measuring) {
    commandLatencies.push(performance.now() - t0);
    commands++;
  }
  return `eom:${eom.reply}${eom.modifications > 0 ? '+mods' : ''}`;
}

/**
 * A milter session over one connected socket, whichever client drives it:
 * negotiate(), then message(conn) per transaction (its outcome word), endMessage()
 * between messages (QUIT_NC), quit() at the end, destroy() after an error.
 */
const SESSIONS = {
  project(socket) {
    const client = createMilterClient(socket, { timeoutMs });
    return {
      negotiate: () => client.negotiate(),
      message: (conn) => transaction(client, conn),
      endMessage: () => client.quitNc(),
      quit: () => client.quit(),
      destroy: () => client.close(),
    };
  },
  lean(socket) {
    const mc = createLeanMilterConnection(socket, { timeoutMs });
    let plan;
    return {
      negotiate: async () => {
        plan = await leanNegotiate(mc);
      },
      message: (conn) => leanTransaction(mc, plan, conn),
      endMessage: () => mc.send(LEAN_QUIT_NC),
      quit: () => {
        mc.send(LEAN_QUIT);
        mc.close();
      },
      destroy: () => socket.destroy(),
    };
  },
};
const openSession = SESSIONS[opt.client];

/** A connected socket, or undefined after noting the error and a short pause. */
async function connectOrPause() {
  try {
    return await connect();
  } catch (error) {
    noteError(error);
    await new Promise((r) => setTimeout(r, 50));
    return undefined;
  }
}

async function persistentWorker(conn) {
  while (!stopped && started < maxMessages) {
    const socket = await connectOrPause();
    if (socket === undefined) continue;
    const session = openSession(socket);
    try {
      await session.negotiate();
      while (!stopped && started < maxMessages) {
        started++;
        const wasMeasuring = measuring;
        const t0 = performance.now();
        const outcome = await session.message(conn);
        if (wasMeasuring && measuring) {
          latencies.push(performance.now() - t0);
          completed++;
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        }
        session.endMessage();
      }
      session.quit();
    } catch (error) {
      noteError(error);
      session.destroy();
    }
  }
}

async function perMessageWorker(conn) {
  while (!stopped && started < maxMessages) {
    const wasMeasuring = measuring;
    const t0 = performance.now();
    const socket = await connectOrPause();
    if (socket === undefined) continue;
    const session = openSession(socket);
    try {
      const c0 = performance.now();
      await session.negotiate();
      if (measuring) {
        commandLatencies.push(performance.now() - c0);
        commands++;
      }
      started++;
      const outcome = await session.message(conn);
      session.quit();
      if (wasMeasuring && measuring) {
        latencies.push(performance.now() - t0); // TCP connect + OPTNEG included
        completed++;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      }
    } catch (error) {
      noteError(error);
      session.destroy();
    }
  }
}

const rssTimer = pid === undefined ? undefined : setInterval(() => {
  try {
    rssSamples.push({ t: Math.round(performance.now() - measureStart) / 1000, completed, rssKiB: memoryKiB(pid).rssKiB });
  } catch {
    /* daemon gone */
  }
}, 1000);

if (warmupMs > 0) setTimeout(startMeasuring, warmupMs).unref();
else startMeasuring();
const hardStop = setTimeout(() => {
  stopped = true;
}, warmupMs + durationMs);

if (opt.client === 'lean') checkLeanPackets();
const worker = opt.mode === 'persistent' ? persistentWorker : perMessageWorker;
await Promise.all(Array.from({ length: connections }, (_, i) => worker(i)));
const seconds = (performance.now() - measureStart) / 1000;
const loadCpu = process.cpuUsage(loadCpuStart);
clearTimeout(hardStop);
if (rssTimer !== undefined) clearInterval(rssTimer);

const result = {
  protocol: 'milter',
  mode: opt.mode,
  client: opt.client,
  connections,
  distinct: opt.distinct,
  seconds,
  messages: completed,
  commands,
  errors,
  errorKinds,
  throughput: completed / seconds,
  latencyMs: latencySummary(latencies),
  commandLatencyMs: latencySummary(commandLatencies),
  outcomes,
  // The generator's own CPU: on one machine it takes its share of the cores too.
  loadCpuUsPerMessage: (loadCpu.user + loadCpu.system) / completed,
};
if (pid !== undefined) {
  const cpu = cpuSeconds(pid) - cpuStart;
  Object.assign(result, { daemonCpuSeconds: cpu, daemonCpuUsPerMessage: (cpu / completed) * 1e6, daemonMemory: memoryKiB(pid), rssSamples });
}
if (otherPid !== undefined) {
  const cpu = cpuSeconds(otherPid) - otherCpuStart;
  Object.assign(result, { otherCpuSeconds: cpu, otherCpuUsPerMessage: (cpu / completed) * 1e6 });
}
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
