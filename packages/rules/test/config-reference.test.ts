// docs/configuration-reference.md is generated from the schema: it must be
// current, and every option must say what it is for.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allowedText, configJsonSchema, configReferenceMarkdown, configSections, flattenOptions, typeText, type JsonNode } from '../src/config-reference.js';

const REFERENCE = join(__dirname, '..', '..', '..', 'docs', 'configuration-reference.md');
const REGENERATE = 'npx --yes pnpm@10.34.9 docs:config';

test('docs/configuration-reference.md is what the schema generates', () => {
  const committed = readFileSync(REFERENCE, 'utf8');
  const generated = configReferenceMarkdown();
  if (committed !== generated) {
    throw new Error(`docs/configuration-reference.md is out of date with packages/rules/src/config-schema.ts: run "${REGENERATE}" and commit the result`);
  }
});

describe('every option is documented', () => {
  const options = configSections(configJsonSchema()).flatMap((s) => s.options.map((o) => ({ ...o, section: s.name })));

  test('there are options, in every top-level section of the schema', () => {
    expect(options.length).toBeGreaterThan(80);
    const top = Object.keys(configJsonSchema().properties ?? {});
    expect(top).toEqual(expect.arrayContaining(['listen', 'metrics', 'counters', 'log', 'policy', 'load', 'batv', 'admin', 'recipients', 'rules']));
    for (const key of top) expect(options.some((o) => o.section === key)).toBe(true);
  });

  test('every option has a description (.meta() in config-schema.ts)', () => {
    expect(options.filter((o) => o.description === '').map((o) => o.path)).toEqual([]);
  });

  test('every option has a type the reader can act on (valueType in .meta() where JSON Schema has none)', () => {
    expect(options.filter((o) => o.type === 'any' || o.type === '').map((o) => o.path)).toEqual([]);
  });

  test('every section has a description', () => {
    expect(configSections(configJsonSchema()).filter((s) => s.description === '').map((s) => s.name)).toEqual([]);
  });
});

describe('from JSON Schema to rows', () => {
  const schema: JsonNode = {
    type: 'object',
    properties: {
      port: { type: 'integer', minimum: 1, maximum: 65535, default: 10031, description: 'The port.' },
      name: { type: 'string', description: 'Required name.' },
      ratio: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
      mode: { type: 'string', enum: ['a', 'b'], default: 'a', description: 'Mode.' },
      hosts: { type: 'array', minItems: 1, oneOrList: true, items: { type: 'string', valueType: 'host' }, description: 'Hosts.' },
      part: {
        type: 'object',
        description: 'A section.',
        properties: { inner: { valueType: 'duration', allowed: '1ms to 1s', default: '5ms', description: 'Inner.' } },
        required: ['inner'],
      },
      when: { $ref: '#/$defs/conditions', description: 'Conditions.' },
    },
    required: ['port', 'name', 'part'],
  };

  test('paths, types, defaults, required and allowed values', () => {
    const rows = flattenOptions(schema, 'top');
    expect(rows.map((r) => [r.path, r.type, r.defaultText, r.allowed, r.description])).toEqual([
      ['top.port', 'whole number', '`10031`', '1 to 65535', 'The port.'],
      ['top.name', 'string', '**required**', '', 'Required name.'],
      ['top.ratio', 'number', '', 'more than 0, less than 1', ''],
      ['top.mode', 'string', '`a`', '`a`, `b`', 'Mode.'],
      ['top.hosts', 'host, or a list of them', '', 'not empty', 'Hosts.'],
      ['top.part', 'section', '', '', 'A section.'],
      ['top.part.inner', 'duration', '`5ms`', '1ms to 1s', 'Inner.'],
      ['top.when', '[conditions](#conditions)', '', '', 'Conditions.'],
    ]);
    // A section whose own options all have defaults may be left out, so it is not required.
    expect(rows.find((r) => r.path === 'top.part')?.required).toBe(false);
    expect(rows.find((r) => r.path === 'top.name')?.required).toBe(true);
  });

  test('an option without a description is reported as such (so the test above can fail)', () => {
    expect(flattenOptions(schema, '').filter((r) => r.description === '').map((r) => r.path)).toEqual(['ratio']);
  });

  test('lists of records and maps', () => {
    expect(typeText({ type: 'array', items: { type: 'integer' } })).toBe('list of whole number');
    expect(typeText({ type: 'object', additionalProperties: { type: 'boolean' } })).toBe('map of name to boolean');
    expect(allowedText({ type: 'string', maxLength: 64 })).toBe('at most 64 characters');
    expect(allowedText({ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER })).toBe('at least 0');
  });
});
