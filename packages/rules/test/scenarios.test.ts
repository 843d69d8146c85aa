/**
 * Runs every test/scenarios/*.yaml: a config (`default` = DEFAULT_CONFIG_YAML,
 * or a levee.yaml mapping) and steps `{ at: ms, repeat?: n, facts, expect }`
 * played in order against one Map counter store. `expect` holds verdict fields
 * to compare (action, rule, code, enhancedCode, text) and optionally
 * `warnings`: the names of warn-mode rules that would have acted.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { compileRules, decideWithStore, DEFAULT_CONFIG_YAML, formatConfigIssue, loadConfig, type Decision, type Facts } from '../src/index.js';
import { createMapCounterStore } from './map-counter-store.js';

interface Step {
  at: number;
  repeat?: number;
  facts: Facts;
  expect: Record<string, unknown> & { warnings?: string[] };
}

interface Scenario {
  description: string;
  config: 'default' | Record<string, unknown>;
  steps: Step[];
}

const dir = join(__dirname, 'scenarios');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
const BASE = 1_700_000_000_000;

test('there are scenario files', () => {
  expect(files.length).toBeGreaterThanOrEqual(4);
});

describe.each(files)('%s', (file) => {
  const scenario = parse(readFileSync(join(dir, file), 'utf8')) as Scenario;
  test(scenario.description, () => {
    const text = scenario.config === 'default' ? DEFAULT_CONFIG_YAML : stringify(scenario.config);
    const loaded = loadConfig(text, file);
    if (!loaded.ok) throw new Error(loaded.issues.map(formatConfigIssue).join('\n'));
    const ruleset = compileRules(loaded.config);
    const store = createMapCounterStore();
    scenario.steps.forEach((step, i) => {
      const { warnings, ...fields } = step.expect;
      for (let n = 0; n < (step.repeat ?? 1); n++) {
        const d = decideWithStore(step.facts, ruleset, store, BASE + step.at) as Decision;
        const got = {
          step: i,
          repetition: n,
          ...Object.fromEntries(Object.keys(fields).map((k) => [k, (d.verdict as unknown as Record<string, unknown>)[k]])),
          ...(warnings === undefined ? {} : { warnings: (d.verdict.warnings ?? []).map((w) => w.rule) }),
        };
        expect(got).toEqual({ step: i, repetition: n, ...step.expect });
      }
    });
  });
});
