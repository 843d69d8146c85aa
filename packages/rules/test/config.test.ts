import { compileRules, DEFAULT_CONFIG_YAML, formatConfigIssue, loadConfig, parseDuration, type ConfigLoadResult, type LeveeConfig } from '../src/index.js';

function ok(text: string): LeveeConfig {
  const r = loadConfig(text, 'levee.yaml');
  if (!r.ok) throw new Error(`expected a valid config, got:\n${r.issues.map(formatConfigIssue).join('\n')}`);
  return r.config;
}

/** The formatted issues of a config expected to be invalid. */
function errors(text: string, file = 'levee.yaml'): string[] {
  const r: ConfigLoadResult = loadConfig(text, file);
  if (r.ok) throw new Error('expected config issues, got a valid config');
  return r.issues.map(formatConfigIssue);
}

const FULL = `
listen:
  policy: ["inet:127.0.0.1:10031", "inet:[::1]:10031", "unix:/run/levee/policy.sock"]
  milter: "inet:0.0.0.0:8891"
metrics:
  listen: false
counters:
  backend: memory
  max_keys: 5000
log:
  level: debug
policy:
  fail_action: tempfail
  idle_timeout: 5m
  max_connections: 300
milter:
  idle_timeout: 1h
  max_connections: 200
rules:
  - name: allow-backup-mx
    description: our secondary MX relays everything
    stage: [connect, rcpt]
    match:
      client_address: 198.51.100.7
    action: accept
  - name: block-bad-helo
    match:
      helo_name: ["localhost", ".invalid", "/^\\\\[?[0-9.]+\\\\]?$/"]
      client_name: [".dynamic.example.net"]
      sender: ["spammer@example.org", "@spam.example", "@.spam.example"]
      recipient: "/^postmaster@/i"
      sasl_username: alice
      null_sender: false
      authenticated: false
      size: { min: 1, max: 1000000 }
      recipient_count: { max: 100 }
      protocol: policy
      stress: false
    unless:
      client_address: ["127.0.0.0/8", "::1"]
    action: reject
    code: 554
    enhanced_code: "5.7.1"
    text: "Go away"
  - name: per-net
    stage: rcpt
    mode: warn
    limit:
      key: "{client_network/24,48}:{sender_domain}"
      max: 100
      window: 90000
      buckets: 6
      count: bytes
    action: tempfail
`;

describe('valid config', () => {
  test('a full file loads with every key transformed', () => {
    const c = ok(FULL);
    expect(c.listen.policy).toEqual([
      { kind: 'inet', host: '127.0.0.1', port: 10031, text: 'inet:127.0.0.1:10031' },
      { kind: 'inet', host: '::1', port: 10031, text: 'inet:[::1]:10031' },
      { kind: 'unix', path: '/run/levee/policy.sock', text: 'unix:/run/levee/policy.sock' },
    ]);
    expect(c.listen.milter).toEqual([{ kind: 'inet', host: '0.0.0.0', port: 8891, text: 'inet:0.0.0.0:8891' }]);
    expect(c.metrics.listen).toBe(false);
    expect(c.counters).toEqual({ backend: 'memory', maxKeys: 5000 });
    expect(c.log.level).toBe('debug');
    expect(c.policy).toEqual({ failAction: 'tempfail', idleTimeoutMs: 300_000, maxConnections: 300 });
    expect(c.milter).toEqual({ idleTimeoutMs: 3_600_000, maxConnections: 200 });
    expect(c.rules.map((r) => r.name)).toEqual(['allow-backup-mx', 'block-bad-helo', 'per-net']);
    const [allow, block, net] = c.rules;
    expect(allow?.stages).toEqual(['connect', 'rcpt']);
    expect(allow?.match?.clientAddress).toEqual(['198.51.100.7']);
    expect(allow?.mode).toBe('enforce');
    expect(block?.stages).toHaveLength(8); // default: all stages
    expect(block?.match?.recipient).toEqual(['/^postmaster@/i']);
    expect(block?.match?.size).toEqual({ min: 1, max: 1_000_000 });
    expect(block?.match?.recipientCount).toStrictEqual({ max: 100 });
    expect(block).toMatchObject({ action: 'reject', code: 554, enhancedCode: '5.7.1', text: 'Go away' });
    expect(net?.mode).toBe('warn');
    expect(net?.limit).toEqual({ key: '{client_network/24,48}:{sender_domain}', max: 100, windowMs: 90_000, buckets: 6, count: 'bytes' });
  });

  test('an empty file means all defaults and no rules', () => {
    const c = ok('');
    expect(c.listen.policy.map((l) => l.text)).toEqual(['inet:127.0.0.1:10031']);
    expect(c.listen.milter.map((l) => l.text)).toEqual(['inet:127.0.0.1:8891']);
    expect(c.metrics.listen).toEqual({ host: '127.0.0.1', port: 9469, text: '127.0.0.1:9469' });
    expect(c.counters).toEqual({ backend: 'memory', maxKeys: 1_000_000 });
    expect(c.log.level).toBe('info');
    expect(c.policy).toEqual({ failAction: 'continue', idleTimeoutMs: 330_000, maxConnections: 4096 });
    expect(c.milter).toEqual({ idleTimeoutMs: 7_210_000, maxConnections: 4096 });
    expect(c.rules).toEqual([]);
  });

  test('empty sections (everything below commented out) mean their defaults', () => {
    const c = ok('listen:\n  # policy: ["inet:127.0.0.1:10031"]\nlog:\nrules:\n  # - name: x\n');
    expect(c.listen.policy.map((l) => l.text)).toEqual(['inet:127.0.0.1:10031']);
    expect(c.log.level).toBe('info');
    expect(c.rules).toEqual([]);
  });

  test('an empty listener list turns that listener off', () => {
    expect(ok('listen:\n  milter: []\n').listen.milter).toEqual([]);
  });

  test('limit defaults: 12 buckets, count requests', () => {
    const c = ok('rules:\n  - name: r\n    limit: { key: "{client_address}", max: 1, window: 1m }\n    action: tempfail\n');
    expect(c.rules[0]?.limit).toEqual({ key: '{client_address}', max: 1, windowMs: 60_000, buckets: 12, count: 'requests' });
  });

  test('DEFAULT_CONFIG_YAML loads: rate limits only tempfail, with complete replies, exempting loopback; AV notices are dropped', () => {
    const c = ok(DEFAULT_CONFIG_YAML);
    expect(c.listen.policy.map((l) => l.text)).toEqual(['inet:127.0.0.1:10031']);
    expect(c.listen.milter.map((l) => l.text)).toEqual(['inet:127.0.0.1:8891']);
    expect(c.metrics.listen).toMatchObject({ host: '127.0.0.1', port: 9469 });
    expect(c.rules.map((r) => r.name)).toEqual([
      'client-recipient-rate',
      'network-recipient-rate',
      'null-sender-rate',
      'av-notifications',
      'auto-replies',
      'auto-replies-legacy',
      'sasl-user-recipient-rate',
    ]);
    // The non-limit defaults: anti-virus notices and auto-replies to forged senders are discarded (never bounced, never 4xx).
    const av = c.rules.find((r) => r.name === 'av-notifications');
    expect(av).toMatchObject({ action: 'discard', stages: ['eom'], match: { header: { Subject: expect.any(Array) } } });
    expect(av?.limit).toBeUndefined();
    const replies = c.rules.filter((r) => r.name.startsWith('auto-replies'));
    for (const r of replies) expect(r).toMatchObject({ action: 'discard', stages: ['eom'], unless: { batv: ['valid'] } });
    for (const r of c.rules.filter((x) => x !== av && !replies.includes(x))) {
      expect(r.action).toBe('tempfail');
      expect(r.code).toBe(450);
      expect(r.enhancedCode).toBe('4.7.1');
      expect(r.text).toBeTruthy();
      expect(r.limit).toBeDefined();
    }
    for (const name of ['client-recipient-rate', 'network-recipient-rate', 'null-sender-rate']) {
      expect(c.rules.find((r) => r.name === name)?.unless?.clientAddress).toEqual(['127.0.0.0/8', '::1']);
    }
    expect(c.rules.find((r) => r.name === 'sasl-user-recipient-rate')?.match?.authenticated).toBe(true);
  });
});

describe('durations', () => {
  test.each([
    ['500ms', 500],
    ['60s', 60_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    [1234, 1234],
    [0, 0],
  ] as const)('%j -> %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  test.each(['60', '1.5s', '-1s', '1w', '1h30m', '', 'ms', -5, 1.5, Number.NaN, null, true, '400d'])('%j is not a duration', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});

describe('issues point at file:line:col with a dotted path', () => {
  test('unknown key (typo) points at the key and suggests the right one', () => {
    const text = ['rules:', '  - name: a', '    stgae: rcpt', '    action: reject', ''].join('\n');
    expect(errors(text)).toEqual(['levee.yaml:3:5: rules.0.stgae: unknown key "stgae" (did you mean "stage"?)']);
  });

  test('unknown key deep inside a rule, with a suggestion', () => {
    const text = ['rules:', '  - name: a', '    action: tempfail', '    limit: { key: "{sender}", max: 1, window: 1m, bucket: 6 }', ''].join('\n');
    expect(errors(text)).toEqual(['levee.yaml:4:51: rules.0.limit.bucket: unknown key "bucket" (did you mean "buckets"?)']);
    const m = ['rules:', '  - name: a', '    action: reject', '    match:', '      sender_address: "@x.example"', ''].join('\n');
    expect(errors(m)).toEqual(['levee.yaml:5:7: rules.0.match.sender_address: unknown key "sender_address" (did you mean "sender"?)']);
  });

  test('unknown top-level key', () => {
    expect(errors('listen: {}\nmetric:\n  listen: false\n')).toEqual(['levee.yaml:2:1: metric: unknown key "metric" (did you mean "metrics"?)']);
  });

  test('wrong type', () => {
    const text = ['rules:', '  - name: a', '    action: tempfail', '    limit:', '      key: "{client_address}"', '      max: lots', '      window: 1m', ''].join('\n');
    expect(errors(text)).toEqual(['levee.yaml:6:12: rules.0.limit.max: expected a whole number']);
  });

  test('connection caps and the milter idle timeout are checked', () => {
    expect(errors('milter:\n  max_connections: 0\n')).toEqual([expect.stringMatching(/^levee\.yaml:2:20: milter\.max_connections: /)]);
    expect(errors('policy:\n  max_connections: many\n')).toEqual(['levee.yaml:2:20: policy.max_connections: expected a whole number of connections']);
    expect(errors('milter:\n  idle_timeout: soon\n')).toEqual([expect.stringMatching(/^levee\.yaml:2:17: milter\.idle_timeout: /)]);
  });

  test('bad duration', () => {
    const text = ['rules:', '  - name: a', '    action: tempfail', '    limit: { key: "{sender}", max: 5, window: 5 minutes }', ''].join('\n');
    expect(errors(text)).toEqual([
      'levee.yaml:4:47: rules.0.limit.window: invalid duration "5 minutes": write e.g. 500ms, 60s, 5m, 1h, 1d or a number of milliseconds',
    ]);
  });

  test('bad duration in policy.idle_timeout', () => {
    expect(errors('policy:\n  idle_timeout: 10x\n')).toEqual([
      'levee.yaml:2:17: policy.idle_timeout: invalid duration "10x": write e.g. 500ms, 60s, 5m, 1h, 1d or a number of milliseconds',
    ]);
  });

  test('bad reply class: code and enhanced code against the action', () => {
    const text = ['rules:', '  - name: a', '    action: reject', '    code: 450', '    enhanced_code: "4.7.1"', '    text: no', ''].join('\n');
    expect(errors(text)).toEqual([
      'levee.yaml:4:11: rules.0.code: reject needs a 5xx code, not 450',
      'levee.yaml:5:20: rules.0.enhanced_code: reject needs a 5.x.x enhanced code, not 4.7.1',
    ]);
    const t2 = ['rules:', '  - name: a', '    action: tempfail', '    code: 550', '    text: no', ''].join('\n');
    expect(errors(t2)).toEqual(['levee.yaml:4:11: rules.0.code: tempfail needs a 4xx code, not 550']);
  });

  test('bad template placeholder points inside the string', () => {
    const text = ['rules:', '  - name: a', '    action: tempfail', '    limit:', '      key: "net:{client_netwrk}"', '      max: 1', '      window: 1m', ''].join('\n');
    const [issue, ...rest] = errors(text);
    expect(rest).toEqual([]);
    // line 5, col 17 is the "{" of the bad placeholder (the quote is at col 12).
    expect(issue).toMatch(/^levee\.yaml:5:17: rules\.0\.limit\.key: unknown placeholder \{client_netwrk\}; known: /);
    const plain = ['rules:', '  - name: a', '    action: tempfail', '    limit:', '      key: x{client_network/33}', '      max: 1', '      window: 1m', ''].join('\n');
    expect(errors(plain)).toEqual([
      'levee.yaml:5:13: rules.0.limit.key: IPv4 prefix length 33 in {client_network/33} is not in 0..32 (for IPv6 write {client_network/24,33})',
    ]);
  });

  test('YAML syntax error', () => {
    expect(errors('rules:\n  - name: a\n    action: [reject\n', 'broken.yaml')).toEqual([
      'broken.yaml:4:1: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    expect(errors('log:\n\tlevel: info\n')[0]).toMatch(/^levee\.yaml:2:1: /);
  });

  test('duplicate YAML key', () => {
    expect(errors('log:\n  level: info\n  level: debug\n')).toEqual(['levee.yaml:3:3: Map keys must be unique']);
  });

  test('duplicate rule name points at the second one', () => {
    const text = ['rules:', '  - name: dup', '    action: accept', '  - name: other', '    action: accept', '  - name: dup', '    action: reject', ''].join('\n');
    expect(errors(text)).toEqual(['levee.yaml:6:11: rules.2.name: duplicate rule name "dup" (first used by rules.0)']);
  });

  test('missing required key points at the enclosing map', () => {
    expect(errors('rules:\n  - name: a\n    stage: rcpt\n')).toEqual(['levee.yaml:2:5: rules.0.action: missing required key "action"']);
  });

  test('a single string where a list is accepted reports without an index', () => {
    expect(errors('listen:\n  policy: "inet:127.0.0.1:99999"\n')).toEqual(['levee.yaml:2:11: listen.policy: port "99999" is not in 1..65535']);
    expect(errors('listen:\n  policy: ["inet:127.0.0.1:1", "tcp:1"]\n')).toEqual([
      'levee.yaml:2:32: listen.policy.1: "tcp:1" is not "inet:HOST:PORT" or "unix:/path"',
    ]);
  });

  test('issues come sorted by position', () => {
    const text = ['counters:', '  backend: etcd', 'log:', '  level: loud', ''].join('\n');
    const e = errors(text);
    expect(e).toHaveLength(2);
    expect(e[0]).toMatch(/^levee\.yaml:2:12: counters\.backend: /);
    expect(e[1]).toMatch(/^levee\.yaml:4:10: log\.level: /);
  });
});

describe('value checks', () => {
  const rule = (lines: string[]): string => ['rules:', '  - name: r', ...lines.map((l) => `    ${l}`), ''].join('\n');
  const only = (text: string): string => {
    const e = errors(text);
    expect(e).toHaveLength(1);
    return e[0] ?? '';
  };

  test.each([
    [['action: reject', 'code: 550'], 'rules.0.code: code requires text'],
    [['action: reject', 'text: "a\\r\\nb"'], 'rules.0.text: reply text must not contain CR, LF or NUL'],
    [['action: reject', 'text: "a\\u0000"'], 'rules.0.text: reply text must not contain CR, LF or NUL'],
    [['action: reject', `text: "${'x'.repeat(401)}"`], 'rules.0.text: reply text is 401 bytes, at most 400 allowed'],
    [['action: discard', 'code: 550'], 'rules.0.code: code is only for tempfail or reject, not discard'],
    [['action: accept', 'text: x'], 'rules.0.text: text is only for tempfail, reject, quarantine or discard, not accept'],
    [['action: reject', 'enhanced_code: "5.7"'], 'rules.0.enhanced_code: "5.7" is not an enhanced status code like 5.7.1'],
    [['action: bounce'], 'rules.0.action: Invalid option'],
    [['action: accept', 'stage: [rcpt, body]'], 'rules.0.stage.1: Invalid option'],
    [['action: accept', 'mode: shadow'], 'rules.0.mode: Invalid option'],
    [['action: accept', 'match: { client_address: "2001:db8::1/64" }'], 'has host bits set; did you mean 2001:db8::/64?'],
    [['action: accept', 'match: { sender: "@" }'], 'rules.0.match.sender: domain pattern: missing domain'],
    [['action: accept', 'match: { client_name: "@example.com" }'], 'is an address pattern'],
    [['action: accept', 'match: { recipient: "/(/" }'], 'rules.0.match.recipient: invalid regex:'],
    [['action: accept', `match: { recipient: "/${'a'.repeat(201)}/" }`], 'regex is 201 characters, at most 200 allowed'],
    [['action: accept', 'match: { sender: "/x/ii" }'], 'regex flags "ii" not allowed'],
    [['action: accept', 'match: { size: { min: 5, max: 1 } }'], 'rules.0.match.size.min: min 5 is greater than max 1'],
    [['action: accept', 'match: { size: {} }'], 'rules.0.match.size: give min, max or both'],
    [['action: accept', 'match: { sender: [] }'], 'rules.0.match.sender: list must not be empty'],
    [['action: accept', 'unless: {}'], 'rules.0.unless: unless has no conditions'],
    [['action: tempfail', 'limit: { key: "{sender}", max: 1, window: 5ms, buckets: 12 }'], 'rules.0.limit.window: window 5ms is shorter than 12 buckets'],
    [['action: tempfail', 'limit: { key: "{sender", max: 1, window: 1m }'], 'rules.0.limit.key: unclosed "{" in key template'],
    [['action: tempfail', 'limit: { key: "a}b", max: 1, window: 1m }'], 'rules.0.limit.key: unmatched "}" in key template'],
    [['action: tempfail', 'limit: { key: "{client_network/24,129}", max: 1, window: 1m }'], 'IPv6 prefix length 129'],
  ])('%j -> %s', (lines, expected) => {
    expect(only(rule(lines))).toContain(expected);
  });

  test.each([
    ['listen:\n  policy: "inet:::1:10031"\n', 'must be in brackets'],
    ['listen:\n  policy: "unix:relative.sock"\n', 'must be absolute'],
    [`listen:\n  policy: "unix:/${'d'.repeat(120)}"\n`, 'longer than 107 bytes'],
    ['metrics:\n  listen: "localhost"\n', 'is not HOST:PORT'],
    ['counters:\n  max_keys: 0\n', 'counters.max_keys'],
    ['log:\n  redact: [password]\n', 'log.redact.0: expected sasl_username, sender, recipient'],
    ['log:\n  redact_key_file: redact.key\n', 'log.redact_key_file: redact_key_file must be an absolute path'],
  ])('%j -> %s', (text, expected) => {
    expect(only(text)).toContain(expected);
  });
});

describe('counters: redis, snapshot, on_store_error', () => {
  test('a redis backend with every key', () => {
    const c = ok(`
counters:
  backend: redis
  max_keys: 2000
  redis:
    url: "redis://:secret@10.0.0.5:6380/2"
    key_prefix: "mx:"
    timeout: 40ms
    connections: 4
    breaker: { failures: 5, cool_down: 10s }
  snapshot:
    file: /var/lib/levee/counters.jsonl
    interval: 30s
`);
    expect(c.counters).toEqual({
      backend: 'redis',
      maxKeys: 2000,
      redis: { url: 'redis://:secret@10.0.0.5:6380/2', keyPrefix: 'mx:', timeoutMs: 40, connections: 4, breaker: { failures: 5, coolDownMs: 10_000 } },
      snapshot: { file: '/var/lib/levee/counters.jsonl', intervalMs: 30_000 },
    });
  });

  test('defaults: prefix levee:, 25ms deadline, 2 connections, 3 failures, 5s cool-down; snapshot every 60s', () => {
    const c = ok('counters:\n  backend: redis\n  redis: { url: "redis://127.0.0.1" }\n  snapshot: { file: /tmp/c.jsonl }\n');
    expect(c.counters.redis).toEqual({ url: 'redis://127.0.0.1', keyPrefix: 'levee:', timeoutMs: 25, connections: 2, breaker: { failures: 3, coolDownMs: 5000 } });
    expect(c.counters.snapshot).toEqual({ file: '/tmp/c.jsonl', intervalMs: 60_000 });
  });

  test('cluster seed nodes instead of a url', () => {
    const c = ok('counters:\n  backend: redis\n  redis:\n    cluster_nodes: ["10.0.0.1:7000", "[2001:db8::1]:7001"]\n    breaker:\n');
    expect(c.counters.redis?.clusterNodes).toEqual([
      { host: '10.0.0.1', port: 7000, text: '10.0.0.1:7000' },
      { host: '2001:db8::1', port: 7001, text: '[2001:db8::1]:7001' },
    ]);
    expect(c.counters.redis?.url).toBeUndefined();
    expect(c.counters.redis?.breaker).toEqual({ failures: 3, coolDownMs: 5000 });
  });

  test('on_store_error per limit rule; absent means fail_open', () => {
    const c = ok(`
rules:
  - name: strict
    limit: { key: "{client_address}", max: 5, window: 1m }
    on_store_error: fail_closed
    action: tempfail
  - name: lenient
    limit: { key: "{client_address}", max: 5, window: 1m }
    action: tempfail
`);
    expect(c.rules[0]?.onStoreError).toBe('fail_closed');
    expect(c.rules[1]?.onStoreError).toBeUndefined();
    expect(compileRules(c).rules.map((r) => r.limit?.onStoreError)).toEqual(['fail_closed', 'fail_open']);
  });

  const only = (text: string): string => {
    const e = errors(text);
    expect(e).toHaveLength(1);
    return e[0] ?? '';
  };

  test.each([
    ['counters:\n  backend: redis\n', 'levee.yaml:2:12: counters.backend: backend redis needs a counters.redis section with url, cluster_nodes or sentinels'],
    ['counters:\n  redis: {}\n', 'levee.yaml:2:10: counters.redis: give exactly one of url, cluster_nodes or sentinels'],
    ['counters:\n  redis: { url: "redis://a", cluster_nodes: ["b:1"] }\n', 'counters.redis: give exactly one of url, cluster_nodes or sentinels'],
    ['counters:\n  redis: { sentinels: ["127.0.0.1:26379"] }\n', 'counters.redis.sentinels: sentinels and sentinel_name go together'],
    ['counters:\n  redis: { url: "http://cache:6379" }\n', 'levee.yaml:2:17: counters.redis.url: URL scheme "http:" is not redis: or rediss:'],
    ['counters:\n  redis: { url: "not a url" }\n', 'counters.redis.url: "not a url" is not a URL like redis://host:6379/0'],
    ['counters:\n  redis: { url: "redis://a", key_prefix: "{mx}:" }\n', 'counters.redis.key_prefix: key_prefix must not contain "{", "}"'],
    ['counters:\n  redis: { url: "redis://a", timeout: 30s }\n', 'counters.redis.timeout: must be between 1ms and 10s'],
    ['counters:\n  redis: { url: "redis://a", breaker: { failures: 0 } }\n', 'counters.redis.breaker.failures'],
    ['counters:\n  redis: { url: "redis://a", connections: 0 }\n', 'levee.yaml:2:43: counters.redis.connections: at least 1 connection'],
    ['counters:\n  redis: { url: "redis://a", connections: 17 }\n', 'counters.redis.connections: at most 16 connections'],
    ['counters:\n  redis: { url: "redis://a", connections: 1.5 }\n', 'counters.redis.connections: expected a whole number'],
    ['counters:\n  redis: { url: "redis://a", breaker: { cool_down: soon } }\n', 'counters.redis.breaker.cool_down: invalid duration "soon"'],
    ['counters:\n  redis: { url: "redis://a", sentinel: x }\n', 'counters.redis'],
    ['counters:\n  redis: { cluster_nodes: ["10.0.0.1"] }\n', 'levee.yaml:2:28: counters.redis.cluster_nodes.0: "10.0.0.1" is not HOST:PORT'],
    ['counters:\n  snapshot: { file: counters.jsonl }\n', 'levee.yaml:2:21: counters.snapshot.file: snapshot file must be an absolute path'],
    ['counters:\n  snapshot: { file: /x, interval: 10ms }\n', 'counters.snapshot.interval: must be between 1s and 1d'],
    ['counters:\n  snapshot: { interval: 10s }\n', 'counters.snapshot.file'],
    ['rules:\n  - name: r\n    action: reject\n    on_store_error: fail_closed\n', 'levee.yaml:4:21: rules.0.on_store_error: on_store_error is only for rules with a limit'],
    [
      'rules:\n  - name: r\n    action: reject\n    limit: { key: "{sender}", max: 1, window: 1m }\n    on_store_error: closed\n',
      'rules.0.on_store_error: Invalid option',
    ],
  ])('%j -> %s', (text, expected) => {
    expect(only(text)).toContain(expected);
  });

  test('a password in a bad url is not echoed', () => {
    expect(only('counters:\n  redis: { url: "redis//:hunter2@x" }\n')).not.toContain('hunter2');
  });
});
