// What deploy/ ships must match the code: every metric the alert rules and the
// Grafana dashboard query exists on a running daemon's /metrics, and the
// example and embedded configs pass the loader.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configJsonSchema, configSections } from '@levee/rules';
import { loadConfigText } from '../src/config-file.js';
import { exportedMetricNames } from './support/daemon.js';

const ROOT = join(__dirname, '..', '..', '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

/** Metric names a PromQL text refers to, histogram suffixes folded to the family name. */
function referencedMetrics(text: string): string[] {
  const names = new Set<string>();
  for (const m of text.matchAll(/\blevee_[a-z0-9_]+/g)) names.add(m[0].replace(/_(bucket|count|sum)$/, ''));
  return [...names].sort();
}

/**
 * The key paths a commented YAML file names, set or commented out: `# ` is
 * taken off every comment line (twice, for a comment inside a commented
 * block) keeping its column, keys nest by indentation, `- ` starts a list
 * item (`rules.name`), and `key: { a: 1, b: 2 }` names `key.a` and `key.b`.
 * Prose in comments adds paths nobody asks for, which is harmless.
 */
function keyPaths(text: string): Set<string> {
  const paths = new Set<string>();
  const stack: { indent: number; key: string }[] = [];
  for (const raw of text.split('\n')) {
    let line = raw;
    for (let i = 0; i < 2; i++) line = line.replace(/^(\s*)# ?/, '$1');
    const m = /^(\s*)(- )?([A-Za-z_][A-Za-z0-9_]*):(.*)$/.exec(line);
    if (m === null) continue;
    const indent = (m[1] ?? '').length + (m[2] ?? '').length;
    while (stack.length > 0 && (stack[stack.length - 1]?.indent ?? 0) >= indent) stack.pop();
    const key = m[3] ?? '';
    const path = [...stack.map((e) => e.key), key].join('.');
    paths.add(path);
    for (const inner of (m[4] ?? '').matchAll(/[{,]\s*([A-Za-z_][A-Za-z0-9_]*):/g)) paths.add(`${path}.${inner[1] ?? ''}`);
    stack.push({ indent, key });
  }
  return paths;
}

describe('every YAML example in docs/ loads', () => {
  const blocks: [string, number, string][] = [];
  for (const file of readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'))) {
    const text = read(`docs/${file}`);
    for (const m of text.matchAll(/```yaml\n([\s\S]*?)```/g)) {
      const line = text.slice(0, m.index).split('\n').length;
      blocks.push([file, line, m[1] ?? '']);
    }
  }
  test('there are examples to check', () => {
    expect(blocks.length).toBeGreaterThan(5);
  });
  test.each(blocks)('%s line %d', (file, line, yaml) => {
    const loaded = loadConfigText(yaml, `docs/${file}:${line}`);
    expect(loaded.ok ? [] : loaded.errors).toEqual([]);
  });
});

describe('deploy artefacts match the daemon', () => {
  let exposed: Set<string>;
  beforeAll(async () => {
    exposed = await exportedMetricNames();
  });

  test.each(['deploy/prometheus/alerts.yml', 'deploy/grafana/levee-dashboard.json'])('every metric %s uses is exported', (file) => {
    const used = referencedMetrics(read(file));
    expect(used.length).toBeGreaterThan(5);
    expect(used.filter((name) => !exposed.has(name))).toEqual([]);
  });

  test('deploy/examples/levee.yaml, the annotated example, loads without errors or warnings', () => {
    const loaded = loadConfigText(read('deploy/examples/levee.yaml'), 'deploy/examples/levee.yaml');
    expect(loaded.ok ? loaded.warnings : loaded.errors).toEqual([]);
  });

  test('deploy/examples/levee.yaml names every option of the schema (set or commented out)', () => {
    const named = keyPaths(read('deploy/examples/levee.yaml'));
    const sections = configSections(configJsonSchema());
    const options = sections.filter((s) => s.name !== 'conditions').flatMap((s) => s.options.map((o) => o.path.replace(/\[\]/g, '')));
    // Conditions may be shown under any of the three keys that take them.
    const conditions = sections.find((s) => s.name === 'conditions')?.options.map((o) => o.path) ?? [];
    expect(options.length).toBeGreaterThan(60);
    expect(conditions.length).toBeGreaterThan(20);
    const missing = [
      ...options.filter((p) => !named.has(p)),
      ...conditions.filter((c) => !['rules.match', 'rules.unless', 'rules.limit.count_if'].some((at) => named.has(`${at}.${c}`))).map((c) => `rules.match.${c}`),
    ];
    expect(missing).toEqual([]);
  });

  test('the dashboard is valid JSON with a datasource variable and panels', () => {
    const dashboard = JSON.parse(read('deploy/grafana/levee-dashboard.json')) as { panels: unknown[]; templating: { list: { name: string }[] } };
    expect(dashboard.panels.length).toBeGreaterThan(10);
    expect(dashboard.templating.list.map((v) => v.name)).toContain('datasource');
  });
});
