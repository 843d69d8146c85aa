#!/usr/bin/env node
// Policy load generator: K persistent connections to a Levee policy listener,
// one request outstanding per connection (as Postfix smtpd does), RCPT-stage
// requests with the attributes Postfix 3.x sends, client addresses drawn from
// a population of `--distinct` values.
//
// Two clients: `--client lean` (the default) writes each request from a
// template of the request's bytes and reads only the `action=` line of each
// reply, so that the generator, which shares the machine's cores with the
// daemon, takes as little of them as it can; it checks at start that its bytes
// equal the project's encoder's. `--client project` uses the project's own
// createPolicyClient (packages/milter-proto/dist), which decodes every reply in
// full and keeps a timer per request (~1.5x the generator's CPU per request).
//
//   node bench/policy-load.mjs --port 10031 [--connections 8] [--duration 10]
//        [--warmup 2] [--distinct 1M|1k|1|sequential|random] [--max-requests N]
//        [--client lean|project] [--pid DAEMON_PID] [--other-pid PID]
//
// Prints one JSON object on stdout. Bounded by --duration (and --max-requests);
// it always stops by itself. It reports its own CPU per request
// (loadCpuUsPerRequest): on one machine the generator takes its share of the
// cores too. With --pid it also reads the daemon's CPU time
// over the measured window and samples its RSS once a second; with
// --other-pid, the CPU time of that process too (redis-server).
import net from 'node:net';
import { parseArgs } from 'node:util';
import { createPolicyClient, encodePolicyAttributes } from '../packages/milter-proto/dist/index.js';
import { addressPicker, cpuSeconds, createSamples, latencySummary, memoryKiB, parseCount, pick, RECIPIENTS, SENDERS } from './lib/common.mjs';

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    connections: { type: 'string', default: '8' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    distinct: { type: 'string', default: '1M' },
    'max-requests': { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '5000' },
    pid: { type: 'string' },
    'other-pid': { type: 'string' },
    client: { type: 'string', default: 'lean' },
  },
});
if (opt.client !== 'lean' && opt.client !== 'project') throw new Error('--client is lean or project');
if (opt.port === undefined) throw new Error('--port is required');
const port = Number(opt.port);
const connections = Number(opt.connections);
const durationMs = Number(opt.duration) * 1000;
const warmupMs = Number(opt.warmup) * 1000;
const maxRequests = parseCount(opt['max-requests']) || Infinity;
const timeoutMs = Number(opt['timeout-ms']);
const pid = opt.pid === undefined ? undefined : Number(opt.pid);
const otherPid = opt['other-pid'] === undefined ? undefined : Number(opt['other-pid']);
let otherCpuStart = 0;
const nextAddress = addressPicker(opt.distinct);

const latencies = createSamples();
const actions = Object.create(null);
let measuring = warmupMs === 0;
let stopped = false;
let sent = 0; // every request sent, warm-up included (for --max-requests)
let completed = 0; // measured
let errors = 0; // measured
const errorKinds = Object.create(null);
let rssSamples = [];
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

let queueSeq = 0;

/** The RCPT-stage request Postfix 3.7 sends (31 attributes, in its order); the per-request fields are filled in. */
function baseRequest() {
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: '',
    client_name: 'mail.sender.example.org',
    client_port: '41234',
    reverse_client_name: 'mail.sender.example.org',
    server_address: '127.0.0.1',
    server_port: '25',
    helo_name: 'mail.sender.example.org',
    sender: '',
    recipient: '',
    recipient_count: '0',
    queue_id: '',
    instance: '',
    size: '12345',
    etrn_domain: '',
    stress: '',
    sasl_method: '',
    sasl_username: '',
    sasl_sender: '',
    ccert_subject: '',
    ccert_issuer: '',
    ccert_fingerprint: '',
    ccert_pubkey_fingerprint: '',
    encryption_protocol: 'TLSv1.3',
    encryption_cipher: 'TLS_AES_256_GCM_SHA384',
    encryption_keysize: '256',
    policy_context: '',
    compatibility_level: '3.6',
    mail_version: '3.7.11',
  };
}

/** Fill in the fields that change per request: client address, sender, recipient, queue id, instance. */
function nextFields(request, n) {
  const q = (queueSeq++ & 0xfffff).toString(16).toUpperCase().padStart(10, '4');
  request.client_address = nextAddress();
  request.sender = pick(SENDERS);
  request.recipient = pick(RECIPIENTS);
  request.queue_id = q;
  request.instance = `${n}.${q}`;
  return request;
}

const VARIABLE = ['client_address', 'sender', 'recipient', 'queue_id', 'instance'];

/**
 * The lean encoder: the request's text as constant pieces between the variable
 * fields, joined per request. Checked against the project's encoder here.
 */
function leanEncoder() {
  const marker = (i) => `\u0001${i}\u0001`;
  const template = baseRequest();
  VARIABLE.forEach((name, i) => {
    template[name] = marker(i);
  });
  const text = encodePolicyAttributes(template).toString('latin1');
  const pieces = text.split(/\u0001\d\u0001/);
  const order = [...text.matchAll(/\u0001(\d)\u0001/g)].map((m) => VARIABLE[Number(m[1])]);
  if (pieces.length !== order.length + 1) throw new Error('lean encoder: template does not hold every field once');
  const encode = (request) => {
    let out = pieces[0];
    for (let i = 0; i < order.length; i++) out += request[order[i]] + pieces[i + 1];
    return out;
  };
  const sample = nextFields(baseRequest(), 0);
  if (!Buffer.from(encode(sample), 'latin1').equals(encodePolicyAttributes(sample))) throw new Error('lean encoder: bytes differ from encodePolicyAttributes');
  return encode;
}

/** A connected socket, or undefined after a failed attempt (counted, then a 50 ms pause). */
async function connectCounted() {
  try {
    return await connect();
  } catch (error) {
    countError(`connect: ${error.code ?? error.message}`);
    await new Promise((r) => setTimeout(r, 50));
    return undefined;
  }
}

function countError(kind) {
  if (!measuring || stopped) return;
  errors++;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
}

function recordReply(action, t0, wasMeasuring) {
  if (!wasMeasuring || !measuring) return;
  latencies.push(performance.now() - t0);
  completed++;
  const word = action.split(' ', 1)[0];
  actions[word] = (actions[word] ?? 0) + 1;
}

/** The `action=` value of one reply (the text before its blank line), or undefined. */
function actionOf(reply) {
  const at = reply.startsWith('action=') ? 0 : reply.indexOf('\naction=') + 1;
  if (at === 0 && !reply.startsWith('action=')) return undefined;
  const end = reply.indexOf('\n', at);
  return reply.slice(at + 7, end === -1 ? reply.length : end);
}

/**
 * One lean connection at a time for worker `n`: one request outstanding, the
 * next written when the reply's blank line arrives. Resolves when stopped.
 */
async function leanWorker(n, encode) {
  const request = baseRequest();
  while (!stopped) {
    const socket = await connectCounted();
    if (socket === undefined) continue;
    await new Promise((resolve) => {
      let received = '';
      let t0 = 0;
      let wasMeasuring = false;
      let done = false;
      const finish = (kind) => {
        if (done) return;
        done = true;
        clearInterval(watchdog);
        if (kind !== undefined) countError(kind);
        socket.destroy();
        resolve();
      };
      const send = () => {
        if (stopped || sent >= maxRequests) {
          if (sent >= maxRequests) stopped = true;
          finish();
          return;
        }
        sent++;
        wasMeasuring = measuring;
        t0 = performance.now();
        socket.write(encode(nextFields(request, n)), 'latin1');
      };
      // One check a second instead of a timer per request.
      const watchdog = setInterval(() => {
        if (performance.now() - t0 > timeoutMs) finish(`policy request timed out after ${timeoutMs} ms`);
      }, 1000);
      socket.on('data', (chunk) => {
        received += chunk.toString('latin1');
        let end;
        while ((end = received.indexOf('\n\n')) !== -1) {
          const action = actionOf(received.slice(0, end + 1));
          received = received.slice(end + 2);
          if (action === undefined) {
            finish('policy reply without action attribute');
            return;
          }
          recordReply(action, t0, wasMeasuring);
          send();
        }
      });
      socket.on('error', (error) => finish(error.message));
      socket.on('close', () => finish(stopped ? undefined : 'policy connection closed'));
      send();
    });
  }
}

async function worker(n) {
  const base = baseRequest();
  while (!stopped) {
    const socket = await connectCounted();
    if (socket === undefined) continue;
    const client = createPolicyClient(socket, { timeoutMs });
    try {
      while (!stopped && sent < maxRequests) {
        sent++;
        nextFields(base, n);
        const wasMeasuring = measuring;
        const t0 = performance.now();
        const reply = await client.request(base);
        recordReply(reply.action, t0, wasMeasuring);
      }
      if (sent >= maxRequests) stopped = true;
    } catch (error) {
      countError(error.message);
    } finally {
      client.close();
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

const encode = opt.client === 'lean' ? leanEncoder() : undefined;
const workers = Array.from({ length: connections }, (_, i) => (encode === undefined ? worker(i) : leanWorker(i, encode)));
await Promise.all(workers);
const seconds = (performance.now() - measureStart) / 1000;
const loadCpu = process.cpuUsage(loadCpuStart);
clearTimeout(hardStop);
if (rssTimer !== undefined) clearInterval(rssTimer);

const result = {
  protocol: 'policy',
  connections,
  distinct: opt.distinct,
  seconds,
  requests: completed,
  errors,
  errorKinds,
  throughput: completed / seconds,
  latencyMs: latencySummary(latencies),
  actions,
  client: opt.client,
  loadCpuUsPerRequest: (loadCpu.user + loadCpu.system) / completed,
};
if (pid !== undefined) {
  const cpu = cpuSeconds(pid) - cpuStart;
  Object.assign(result, { daemonCpuSeconds: cpu, daemonCpuUsPerRequest: (cpu / completed) * 1e6, daemonMemory: memoryKiB(pid), rssSamples });
}
if (otherPid !== undefined) {
  const cpu = cpuSeconds(otherPid) - otherCpuStart;
  Object.assign(result, { otherCpuSeconds: cpu, otherCpuUsPerRequest: (cpu / completed) * 1e6 });
}
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
