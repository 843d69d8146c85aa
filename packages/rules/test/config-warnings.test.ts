import { formatConfigIssue, loadConfig } from '../src/index.js';

function warnings(rules: string): string[] {
  const r = loadConfig(`rules:\n${rules}`, 'w.yaml');
  if (!r.ok) throw new Error(r.issues.map(formatConfigIssue).join('\n'));
  return r.warnings.map(formatConfigIssue);
}

describe('config warnings: 4xx for permanent conditions', () => {
  test('a static rule that tempfails is warned about, at its action', () => {
    expect(warnings('  - name: gone\n    match: { recipient: ["@gone.example"] }\n    action: tempfail\n')).toEqual([
      'w.yaml:4:13: rules.0.action: warning: rule gone answers tempfail (4xx) to a permanent condition (recipient): ' +
        'it will still hold when the sender retries, so senders retry for days; answer reject (5xx) for what is permanently wrong',
    ]);
  });

  test('a tempfail with no condition at all is named as such', () => {
    expect(warnings('  - name: all\n    action: tempfail\n')[0]).toMatch(/to every request at its stages/);
  });

  test.each([
    ['a rate limit', '  - name: r\n    limit: { key: "{client_address}", max: 5, window: 1m }\n    action: tempfail\n'],
    ['a stress condition', '  - name: s\n    match: { stress: true }\n    action: tempfail\n'],
    ['a concurrency cap', '  - name: c\n    stage: connect\n    match: { client_concurrency: { min: 10 } }\n    action: tempfail\n'],
    ['a reject', '  - name: j\n    match: { recipient: ["@gone.example"] }\n    action: reject\n'],
  ])('no warning for %s', (_what, rules) => {
    expect(warnings(rules)).toEqual([]);
  });

  test('the embedded defaults have no warnings', async () => {
    const { DEFAULT_CONFIG_YAML } = await import('../src/index.js');
    const r = loadConfig(DEFAULT_CONFIG_YAML, 'defaults');
    expect(r.ok && r.warnings).toEqual([]);
  });
});
