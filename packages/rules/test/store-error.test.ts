// on_store_error: how decide() judges totals a shared store marked degraded
// (counted locally because Redis failed). Pure: totals are given directly.
import { compileRules, decide, decideWithStore, formatConfigIssue, isDegraded, loadConfig, markDegraded, planCounters, type Facts, type Ruleset } from '../src/index.js';

function ruleset(rulesYaml: string): Ruleset {
  const r = loadConfig(`rules:\n${rulesYaml}`, 'test.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return compileRules(r.config);
}

const facts = { protocol: 'policy', stage: 'rcpt', clientAddress: '192.0.2.1', sender: 'alice@example.org', recipient: 'bob@example.com' } as unknown as Facts;

const RULES = ruleset(`
  - name: open
    limit: { key: "{sender}", max: 3, window: 1m }
    action: reject
  - name: closed
    limit: { key: "{client_address}", max: 100, window: 1m }
    on_store_error: fail_closed
    action: reject
  - name: shadow
    mode: warn
    limit: { key: "{recipient}", max: 100, window: 1m }
    on_store_error: fail_closed
    action: reject
`);

describe('on_store_error', () => {
  const plan = planCounters(facts, RULES);

  test('healthy totals: fail_closed changes nothing', () => {
    expect(decide(facts, RULES, plan, [1, 1, 1]).verdict).toEqual({ action: 'continue' });
  });

  test('degraded totals: a fail_closed limit tempfails (451 4.3.0), never rejects', () => {
    const d = decide(facts, RULES, plan, markDegraded([1, 1, 1]));
    expect(d.verdict).toMatchObject({ action: 'tempfail', code: 451, enhancedCode: '4.3.0', rule: 'closed' });
    expect(d.trail.find((t) => t.rule === 'closed')?.detail).toContain('shared counter store unavailable');
  });

  test('degraded totals: a fail_open limit before it still decides on its local count', () => {
    const d = decide(facts, RULES, plan, markDegraded([4, 1, 1]));
    expect(d.verdict).toMatchObject({ action: 'reject', rule: 'open', counter: { count: 4, limit: 3 } });
  });

  test('warn-mode rules never act for a failed store', () => {
    const rs = ruleset(`
  - name: shadow
    mode: warn
    limit: { key: "{recipient}", max: 100, window: 1m }
    on_store_error: fail_closed
    action: reject
`);
    expect(decide(facts, rs, planCounters(facts, rs), markDegraded([1])).verdict).toEqual({ action: 'continue' });
  });

  test('decideWithStore reads the mark from a store, sync or async', async () => {
    const store = { apply: () => markDegraded([1, 1, 1]), peek: () => [] };
    expect((decideWithStore(facts, RULES, store, 0) as { verdict: { action: string } }).verdict.action).toBe('tempfail');
    const remote = { apply: () => Promise.resolve(markDegraded([1, 1, 1])), peek: () => [] };
    expect((await decideWithStore(facts, RULES, remote, 0)).verdict.action).toBe('tempfail');
    expect(isDegraded([1])).toBe(false);
    // The mark is not enumerable: totals still compare equal to plain arrays.
    expect(markDegraded([1, 2])).toEqual([1, 2]);
  });
});
