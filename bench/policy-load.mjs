#!/usr/bin/env node
// Policy load generator: K persistent connections to a Levee policy listener,
// one request outstanding per connection (as Postfix smtpd does), RCPT-stage
// requests with the attributes Postfix 3.x sends, client addresses drawn from
// a population of `--distinct` values. Uses the project's own client
// (createPolicyClient from packages/milter-proto/dist).
//
//   node bench/policy-load.mjs --port 10031 [--connections 8] [--duration 10]
//        [--warmup 2] [--distinct 1M|1k|1|sequential|random] [--max-requests N]
//        [--pid DAEMON_PID] [--other-pid PID]
//
// Prints one JSON object on stdout. Bounded by --duration (and --max-requests);
// it always stops by itself. It reports its own CPU per request
// (loadCpuUsPerRequest): on one machine the generator takes its share of the
// cores too. With --pid it also reads the daemon's CPU time
// over the measured window and samples its RSS once a second; with
// --other-pid, the CPU time of that process too (redis-server).
import net from 'node:net';
import { parseArgs } from 'node:util';
import { createPolicyClient } from '../packages/milter-proto/dist/index.js';
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
  },
});
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
async function worker(n) {
  const base = {
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
  while (!stopped) {
    let socket;
    try {
      socket = await connect();
    } catch (error) {
      if (measuring) {
        errors++;
        errorKinds[`connect: ${error.code ?? error.message}`] = (errorKinds[`connect: ${error.code ?? error.message}`] ?? 0) + 1;
      }
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const client = createPolicyClient(socket, { timeoutMs });
    try {
      while (!stopped && sent < maxRequests) {
        sent++;
        const q = (queueSeq++ & 0xfffff).toString(16).toUpperCase().padStart(10, '4');
        base.client_address = nextAddress();
        base.sender = pick(SENDERS);
        base.recipient = pick(RECIPIENTS);
        base.queue_id = q;
        base.instance = `${n}.${q}`;
        const wasMeasuring = measuring;
        const t0 = performance.now();
        const reply = await client.request(base);
        if (wasMeasuring && measuring) {
          latencies.push(performance.now() - t0);
          completed++;
          const word = reply.action.split(' ', 1)[0];
          actions[word] = (actions[word] ?? 0) + 1;
        }
      }
      if (sent >= maxRequests) stopped = true;
    } catch (error) {
      if (measuring && !stopped) {
        errors++;
        errorKinds[error.message] = (errorKinds[error.message] ?? 0) + 1;
      }
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

const workers = Array.from({ length: connections }, (_, i) => worker(i));
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
