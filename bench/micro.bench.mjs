#!/usr/bin/env node
// Micro-benchmarks (tinybench) of the hot paths, on the built dist/ (never in
// jest): the policy codec, the milter codec, the policy request -> Facts
// conversion, planCounters + decide over the benchmark rule set, the whole
// decision with the daemon's memory store, and the sliding-window arithmetic.
// (Folds in the former packages/rules/bench/decide.bench.mjs.)
//
//   node bench/micro.bench.mjs [--quick] [--json] [--filter SUBSTRING]
//
// Wall-clock figures on shared cores are relative; for a regression gate use
// instruction counts: valgrind --tool=callgrind node bench/micro.bench.mjs --quick
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import {
  createMilterCommandDecoder,
  createPolicyDecoder,
  encodeMilterCommand,
  encodeMilterReply,
  encodePolicyAttributes,
  encodePolicyReply,
} from '../packages/milter-proto/dist/index.js';
import { addToWindow, compileRules, createWindowState, decide, decideWithStore, loadConfig, planCounters, windowTotal } from '../packages/rules/dist/index.js';
import { createMemoryStore } from '../packages/policy-daemon/dist/memory-store.js';
import { policyRequestToFacts } from '../packages/policy-daemon/dist/policy-facts.js';
import { encodeVerdict } from '../packages/policy-daemon/dist/policy-verdict.js';
import { populationAddress, RECIPIENTS, SENDERS } from './lib/common.mjs';

const { values: opt } = parseArgs({ options: { quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, filter: { type: 'string' } } });
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---- fixtures ---------------------------------------------------------------
const rulesText = ['rules:\n', readFileSync(path.join(ROOT, 'bench/config/rules-common.yaml'), 'utf8'), readFileSync(path.join(ROOT, 'bench/config/milter-extra.yaml'), 'utf8')].join('');
const loaded = loadConfig(rulesText, 'bench rules');
if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
const ruleset = compileRules(loaded.config);

const N = 1024;
const policyAttributes = Array.from({ length: N }, (_, i) => ({
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  protocol_name: 'ESMTP',
  client_address: populationAddress(i * 977),
  client_name: 'mail.sender.example.org',
  client_port: '41234',
  reverse_client_name: 'mail.sender.example.org',
  server_address: '127.0.0.1',
  server_port: '25',
  helo_name: 'mail.sender.example.org',
  sender: SENDERS[i % SENDERS.length],
  recipient: RECIPIENTS[i % RECIPIENTS.length],
  recipient_count: '0',
  queue_id: `4ABCDE${i}`,
  instance: `1.${i}`,
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
}));
const policyWire = policyAttributes.map((a) => encodePolicyAttributes(a));
const policyRequests = policyWire.map((w) => createPolicyDecoder().push(w)[0].request);
const facts = policyRequests.map((r) => policyRequestToFacts(r).facts);

// One milter transaction as the MTA sends it (macros, CONNECT .. BODYEOB), as one byte stream.
const milterStream = Buffer.concat([
  encodeMilterCommand({ type: 'MACRO', stage: 'C', macros: [['j', 'mx.example.com'], ['{daemon_name}', 'smtpd']] }),
  encodeMilterCommand({ type: 'CONNECT', hostname: 'mail.sender.example.org', family: '4', port: 41234, address: '10.1.2.3' }),
  encodeMilterCommand({ type: 'HELO', helo: 'mail.sender.example.org' }),
  encodeMilterCommand({ type: 'MACRO', stage: 'M', macros: [['i', '4ABCDEF123']] }),
  encodeMilterCommand({ type: 'MAIL', args: ['<user1@sender1.example.org>', 'SIZE=5000'] }),
  ...Array.from({ length: 5 }, (_, k) => encodeMilterCommand({ type: 'RCPT', args: [`<user${k}@example.com>`] })),
  encodeMilterCommand({ type: 'DATA' }),
  ...Array.from({ length: 10 }, (_, k) => encodeMilterCommand({ type: 'HEADER', name: `X-Header-${k}`, value: 'a header value of a typical length, forty-odd bytes' })),
  encodeMilterCommand({ type: 'EOH' }),
  encodeMilterCommand({ type: 'BODY', chunk: Buffer.alloc(4096, 0x61) }),
  encodeMilterCommand({ type: 'BODYEOB' }),
]);
const rcptFrame = encodeMilterCommand({ type: 'RCPT', args: ['<user1@example.com>', 'NOTIFY=NEVER'] });

const verdictReject = { action: 'tempfail', code: 450, enhancedCode: '4.7.1', text: 'Too many recipients from your address, slow down and try again later', rule: 'client-recipient-rate' };

// ---- benchmarks -------------------------------------------------------------
const bench = new Bench(opt.quick ? { time: 200, warmupTime: 50 } : { time: 1000, warmupTime: 200 });
let i = 0;
const next = () => (i = (i + 1) & (N - 1));
const add = (name, fn) => {
  if (opt.filter === undefined || name.includes(opt.filter)) bench.add(name, fn);
};

add('policy decode (31-attribute request)', () => {
  createPolicyDecoder().push(policyWire[next()]);
});
add('policy encode request (client side)', () => {
  encodePolicyAttributes(policyAttributes[next()]);
});
add('policy encode reply (DUNNO, pre-encoded)', () => {
  encodeVerdict({ action: 'continue' }, 'rcpt');
});
add('policy encode reply (450 4.7.1 text)', () => {
  encodeVerdict(verdictReject, 'rcpt');
});
add('policy request -> Facts', () => {
  policyRequestToFacts(policyRequests[next()]);
});
add('milter decode RCPT frame', () => {
  createMilterCommandDecoder().push(rcptFrame);
});
add('milter decode whole transaction (22 packets, 4 KiB body)', () => {
  createMilterCommandDecoder().push(milterStream);
});
add('milter encode RCPT command', () => {
  encodeMilterCommand({ type: 'RCPT', args: ['<user1@example.com>'] });
});
add('milter encode CONTINUE reply', () => {
  encodeMilterReply({ type: 'CONTINUE' });
});
add('milter encode REPLYCODE reply', () => {
  encodeMilterReply({ type: 'REPLYCODE', text: '450 4.7.1 Too many recipients from your address' });
});
add('planCounters (25 rules, rcpt)', () => {
  planCounters(facts[next()], ruleset);
});
add('planCounters + decide (totals given)', () => {
  const f = facts[next()];
  const plan = planCounters(f, ruleset);
  decide(f, ruleset, plan, plan.hits.map(() => 1));
});
{
  const store = createMemoryStore({ maxKeys: 1_000_000 });
  let now = 1_700_000_000_000;
  add('decideWithStore (memory store, 1k clients)', () => {
    decideWithStore(facts[next()], ruleset, store, (now += 1));
  });
}
{
  const spec = { windowMs: 60_000, buckets: 12 };
  const state = createWindowState(spec);
  let now = 1_700_000_000_000;
  add('window addToWindow (same bucket)', () => {
    addToWindow(state, now, 1, spec);
  });
  add('window addToWindow (advancing 1 s each)', () => {
    addToWindow(state, (now += 1000), 1, spec);
  });
  add('window windowTotal', () => {
    windowTotal(state, now, spec);
  });
  add('window createWindowState', () => {
    createWindowState(spec);
  });
}

await bench.run();

const tasks = bench.tasks
  .filter((t) => t.result.state === 'completed')
  .map((t) => ({
    name: t.name,
    hz: t.result.throughput.mean,
    meanUs: t.result.latency.mean * 1000,
    p99Us: t.result.latency.p99 * 1000,
    samples: t.result.latency.samplesCount,
  }));
if (opt.json) {
  process.stdout.write(`${JSON.stringify({ node: process.version, rules: ruleset.rules.length, tasks })}\n`);
} else {
  console.log(`rules: ${ruleset.rules.length}`);
  console.table(tasks.map((t) => ({ task: t.name, 'ops/s': Math.round(t.hz), 'mean µs': t.meanUs.toFixed(3), 'p99 µs': t.p99Us.toFixed(3), samples: t.samples })));
}
