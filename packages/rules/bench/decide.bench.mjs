// Micro-benchmark of planCounters + decide over a 20-rule ruleset with a
// Map-backed store. Run against the build: `tsc -b packages/rules && node packages/rules/bench/decide.bench.mjs`.
// Plain loop and process.hrtime: no dependencies; numbers are relative (shared CI cores).
import {
  addToWindow,
  compileRules,
  createWindowState,
  decide,
  DEFAULT_CONFIG_YAML,
  loadConfig,
  planCounters,
} from '../dist/index.js';

const extra = [];
for (let i = 0; i < 12; i++) {
  extra.push(`  - name: block-${i}
    stage: [mail, rcpt]
    match:
      sender: ["@spam${i}.example", "@.bulk${i}.example", "/^promo-${i}-/i"]
      client_address: ["203.0.${i}.0/24", "2001:db8:${i}::/48"]
    action: reject`);
}
for (let i = 0; i < 4; i++) {
  extra.push(`  - name: limit-${i}
    stage: rcpt
    unless: { client_address: ["127.0.0.0/8", "::1"] }
    limit: { key: "{client_network/24,64}:{sender_domain}:${i}", max: 100000, window: 60s }
    action: tempfail`);
}
const text = DEFAULT_CONFIG_YAML + extra.join('\n') + '\n';
const loaded = loadConfig(text, 'bench.yaml');
if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
const ruleset = compileRules(loaded.config);
console.log(`rules: ${ruleset.rules.length}`);

const windows = new Map();
function apply(hits, now) {
  const out = new Array(hits.length);
  for (let i = 0; i < hits.length; i++) {
    const h = hits[i];
    let w = windows.get(h.key);
    if (w === undefined) windows.set(h.key, (w = createWindowState(h.window)));
    out[i] = addToWindow(w, now, h.amount, h.window);
  }
  return out;
}

const requests = [];
for (let i = 0; i < 1024; i++) {
  requests.push({
    protocol: 'policy',
    stage: 'rcpt',
    clientAddress: i % 3 === 0 ? `2001:db8:${i % 50}:${i}::${i}` : `198.51.${i % 200}.${i % 250}`,
    sender: `user${i}@example${i % 40}.org`,
    recipient: `rcpt${i}@example.com`,
    recipientCount: 0,
  });
}

function bench(label, fn, n) {
  for (let i = 0; i < n / 10; i++) fn(i); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`${label}: ${(ns / 1000).toFixed(2)} µs/op`);
}

let now = 1_700_000_000_000;
bench('planCounters', (i) => planCounters(requests[i & 1023], ruleset), 200_000);
bench('planCounters + decide (totals given)', (i) => {
  const f = requests[i & 1023];
  const plan = planCounters(f, ruleset);
  return decide(f, ruleset, plan, plan.hits.map(() => 1));
}, 200_000);
bench('plan + Map store + decide', (i) => {
  const f = requests[i & 1023];
  const plan = planCounters(f, ruleset);
  return decide(f, ruleset, plan, apply(plan.hits, (now += 1)));
}, 200_000);
