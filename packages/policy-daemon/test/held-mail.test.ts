import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Facts, Verdict } from '@levee/rules';
import { commandFor, createHeldMail, HELD_CODEC, type HeldRecord } from '../src/held-mail.js';
import { createMemorySharedList } from '../src/shared-list.js';
import { createLogger } from '../src/logger.js';
import { createNotifier, noticeText, type Notice } from '../src/notifier.js';

const HOLD: Verdict = { action: 'quarantine', rule: 'outbound', text: 'held', counter: { rule: 'outbound', key: 'outbound|alice', count: 3, limit: 2, windowMs: 60_000 } };
const T = 1_700_000_000_000;

/** Overrides; `undefined` removes a default fact (the request lacks it). */
function facts(over: { [K in keyof Facts]?: Facts[K] | undefined } = {}): Facts {
  const f: Record<string, unknown> = { protocol: 'policy', stage: 'rcpt', clientAddress: '10.0.0.5', saslUsername: 'alice', sender: 'alice@example.org', recipient: 'x@a.example', instance: 'i1', ...over };
  for (const k of Object.keys(f)) if (f[k] === undefined) delete f[k];
  return f as unknown as Facts;
}

describe('held-mail records', () => {
  let ids = 0;
  const make = (retentionMs = 3_600_000, maxRecords = 100) =>
    createHeldMail({
      list: createMemorySharedList<HeldRecord>('held', { now: () => T }),
      retentionMs: () => retentionMs,
      maxRecords: () => maxRecords,
      log: createLogger('silent'),
      newId: () => `id${++ids}`,
    });

  test('a hold at the first RCPT (no queue id yet) is completed by later requests of the same transaction', () => {
    const held = make();
    const first = held.note(facts(), HOLD, T);
    expect(first).toMatchObject({ created: true, record: { rule: 'outbound', key: 'outbound|alice', queueId: undefined, recipients: ['x@a.example'] } });
    held.note(facts({ recipient: 'y@b.example' }), { action: 'continue' }, T + 1);
    const done = held.note(facts({ stage: 'eom', recipient: undefined, queueId: 'ABC123' }), { action: 'continue' }, T + 2);
    expect(done).toMatchObject({ created: false, record: { queueId: 'ABC123', recipients: ['x@a.example', 'y@b.example'] } });
    expect(held.list(T + 3)).toHaveLength(1);
  });

  test('a later refusal of the same transaction drops the record: nothing was held', () => {
    const held = make();
    const { record } = held.note(facts({ instance: 'i2' }), HOLD, T) ?? {};
    expect(held.note(facts({ instance: 'i2', stage: 'eom' }), { action: 'reject', code: 550, enhancedCode: '5.7.1', text: 'no' }, T + 1)).toBeUndefined();
    expect(record).toBeDefined();
    expect(held.get(record?.id ?? '', T + 2)).toBeUndefined();
    expect(held.size).toBe(0);
  });

  test('records expire after the retention and the oldest go past max_records', () => {
    const held = make(60_000, 2);
    for (const i of [1, 2, 3]) held.note(facts({ instance: `t${i}` }), HOLD, T + i);
    expect(held.list(T + 4).map((r) => r.transaction)).toEqual(['t2', 't3']);
    expect(held.list(T + 60_003)).toEqual([]);
  });

  test('other transactions and other answers leave the records alone', () => {
    const held = make();
    expect(held.note(facts({ instance: 'other' }), { action: 'continue' }, T)).toBeUndefined();
    expect(held.size).toBe(0);
  });

  test('records survive the trip through the shared store (codec); malformed ones are skipped', () => {
    const held = make();
    const r = held.note(facts({ instance: 'k1', queueId: 'Q1', recipients: ['a@x.example', 'b@y.example'] }), HOLD, T)?.record;
    expect(r).toBeDefined();
    expect(HELD_CODEC.decode(HELD_CODEC.encode(r as HeldRecord))).toEqual(JSON.parse(JSON.stringify(r)));
    expect(HELD_CODEC.decode('{"id":"x"}')).toBeUndefined();
    expect(HELD_CODEC.decode('not json')).toBeUndefined();
  });

  test('release and drop commands: {queue_id} replaced; a strange or missing queue id is never put in a command', () => {
    const held = make();
    const r = held.note(facts({ instance: 'c1', queueId: '4F2A1B3C' }), HOLD, T)?.record;
    if (r === undefined) throw new Error('not recorded');
    expect(commandFor(['postsuper', '-H', '{queue_id}'], r)).toEqual(['postsuper', '-H', '4F2A1B3C']);
    expect(commandFor(['postsuper', '-H', '{queue_id}'], { ...r, queueId: '-d ALL' })).toBeUndefined();
    expect(commandFor(['postsuper', '-H', '{queue_id}'], { ...r, queueId: undefined })).toBeUndefined();
  });
});

describe('notifier', () => {
  const notice: Notice = { event: 'held', rule: 'outbound', subject: 'alice', count: 30, limit: 20, windowMs: 3_600_000, until: T + 7_200_000, at: T };

  test('the notice says who, why, until when, and how to act', () => {
    const { subject, body } = noticeText(notice);
    expect(subject).toBe(`[levee] alice is held until ${new Date(T + 7_200_000).toISOString()}`);
    expect(body).toContain('30 in 3600s (limit 20), rule outbound');
    expect(body).toContain("levee release --customer 'outbound|alice'");
    expect(noticeText({ ...notice, event: 'warned' }).body).toContain('Its mail still goes through');
  });

  test('notify.command gets the notice on stdin and LEVEE_* variables; beyond max_per_hour notices are only logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'levee-notify-'));
    const lines: string[] = [];
    const counted: string[] = [];
    let now = T;
    const notifier = createNotifier({
      settings: () => ({ command: ['/bin/sh', '-c', 'cat > "$0/$LEVEE_EVENT-$LEVEE_SUBJECT-$LEVEE_COUNT.txt"', dir], mail: undefined, maxPerHour: 2 }),
      log: createLogger('info', { write: (l: string) => void lines.push(l) }),
      now: () => now,
      counted: (channel, outcome) => counted.push(`${channel}:${outcome}`),
    });
    try {
      notifier.notify(notice);
      notifier.notify({ ...notice, event: 'warned', subject: 'bob' });
      notifier.notify({ ...notice, subject: 'carol' });
      await notifier.idle();
      expect(readFileSync(join(dir, 'held-alice-30.txt'), 'utf8')).toContain('Subject: [levee] alice is held until');
      expect(readFileSync(join(dir, 'warned-bob-30.txt'), 'utf8')).toContain('Subject: [levee] bob is over its limit (warning)');
      expect([...counted].sort()).toEqual(['command:sent', 'command:sent', 'command:suppressed']);
      expect(lines.some((l) => l.includes('notify.max_per_hour reached'))).toBe(true);
      // An hour later notices go out again.
      now = T + 3_600_001;
      notifier.notify({ ...notice, subject: 'dave' });
      await notifier.idle();
      expect(readFileSync(join(dir, 'held-dave-30.txt'), 'utf8')).toContain('dave');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a command still running after 10 s is stopped with SIGTERM, logged and counted as failed', async () => {
    const lines: string[] = [];
    const counted: string[] = [];
    const notifier = createNotifier({
      settings: () => ({ command: ['/bin/sleep', '60'], mail: undefined, maxPerHour: 10 }),
      log: createLogger('info', { write: (l: string) => void lines.push(l) }),
      now: () => T,
      counted: (channel, outcome) => counted.push(`${channel}:${outcome}`),
    });
    const started = Date.now();
    notifier.notify(notice);
    await notifier.idle();
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_900);
    expect(counted).toEqual(['command:failed']);
    const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'notify.command failed');
    expect(failed).toHaveLength(1);
    expect(failed[0].signal).toBe('SIGTERM');
  }, 20_000);

  test('a failing command is logged and counted, never thrown', async () => {
    const lines: string[] = [];
    const counted: string[] = [];
    const notifier = createNotifier({
      settings: () => ({ command: ['/nonexistent/levee-notice'], mail: undefined, maxPerHour: 10 }),
      log: createLogger('info', { write: (l: string) => void lines.push(l) }),
      now: () => T,
      counted: (channel, outcome) => counted.push(`${channel}:${outcome}`),
    });
    notifier.notify(notice);
    await notifier.idle();
    // The child emits 'close' (code -2) after 'error': give it the time to, then check it changed nothing.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(counted).toEqual(['command:failed']);
    expect(lines.filter((l) => l.includes('notify.command')).map((l) => JSON.parse(l).msg)).toEqual(['notify.command could not be run']);
  });

  // No deadline timer may be left behind to hold the daemon's event loop for the command
  // timeout (10 s) after a command that cannot be run. Counted in a Node.js process of its
  // own, on the built notifier: inside jest's worker, timers of the other tests and of jest
  // itself come and go, and a count there failed now and then with nothing left behind.
  test('a failing command leaves no timer behind (in a process of its own)', () => {
    const dist = join(__dirname, '..', 'dist');
    const source = `import { createNotifier } from ${JSON.stringify(join(dist, 'notifier.js'))};
import { createLogger } from ${JSON.stringify(join(dist, 'logger.js'))};
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const counted = [];
const notifier = createNotifier({
  settings: () => ({ command: ['/nonexistent/levee-notice'], mail: undefined, maxPerHour: 10 }),
  log: createLogger('info', { write: () => undefined }),
  now: () => ${T},
  counted: (channel, outcome) => counted.push(channel + ':' + outcome),
});
const before = timers();
notifier.notify(${JSON.stringify(notice)});
await notifier.idle();
await new Promise((resolve) => setTimeout(resolve, 200));
process.stdout.write(JSON.stringify({ counted, before, after: timers() }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', source], { encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).toBe('');
    const { counted, before, after } = JSON.parse(run.stdout) as { counted: string[]; before: number; after: number };
    expect(counted).toEqual(['command:failed']);
    expect(after).toBeLessThanOrEqual(before);
  });
});
