// What the docs name must exist: every `levee <command>` and its options in the
// CLI, every levee_* metric on a running daemon's /metrics, every config path
// in the schema, and every log or error message quoted in the operations and
// troubleshooting guides in the source.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { configJsonSchema, configSections } from '@levee/rules';
import { buildProgram } from '../src/program.js';
import { exportedMetricNames } from './support/daemon.js';

const ROOT = join(__dirname, '..', '..', '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

const DOCS = [
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
  'README.md',
  ...['postfix', 'sendmail'].map((d) => `deploy/${d}/README.md`),
];

interface Mention {
  readonly file: string;
  readonly text: string;
}

/** Lines of fenced code blocks, and inline code spans (white space folded), per file. */
function codeOf(file: string): { lines: Mention[]; spans: Mention[] } {
  const text = read(file);
  const lines: Mention[] = [];
  const prose = text.replace(/```[^\n]*\n([\s\S]*?)```/g, (_, body: string) => {
    for (const line of body.split('\n')) lines.push({ file, text: line.replace(/\s#\s.*$/, '') });
    return '';
  });
  const spans = [...prose.matchAll(/`([^`]+)`/g)].map((m) => ({ file, text: (m[1] ?? '').replace(/\s+/g, ' ').trim() }));
  return { lines, spans };
}

const code = DOCS.map(codeOf);
const allLines = code.flatMap((c) => c.lines);
const allSpans = code.flatMap((c) => c.spans);

/** Every source file's text: log and error messages are string literals in it. */
const SOURCE = ['milter-proto', 'rules', 'policy-daemon']
  .flatMap((pkg) =>
    readdirSync(join(ROOT, 'packages', pkg, 'src'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => read(`packages/${pkg}/src/${f}`)),
  )
  .join('\n');

/** `levee CMD args` (or `cli.js CMD args`) in a line of code: the command and its argument tokens. */
function invocations(text: string): { command: string; args: string[] }[] {
  const out: { command: string; args: string[] }[] = [];
  for (const m of text.matchAll(/(?:^|[\s(])(?:levee|cli\.js)\s+([a-z][a-z-]*)([^|;&>]*)/g)) {
    out.push({ command: m[1] ?? '', args: (m[2] ?? '').split(/\s+/).filter((t) => t !== '') });
  }
  return out;
}

describe('docs name only commands and options the CLI has', () => {
  const program = buildProgram();
  const commands = new Map<string, Command>(program.commands.map((c) => [c.name(), c]));
  // Inline spans that start with "levee " but quote a log message (`levee started`) are not commands.
  const isLogMessage = (span: string): boolean => SOURCE.includes(`'${span}'`);
  const found = [
    ...allLines.flatMap((l) => invocations(l.text).map((i) => ({ ...i, file: l.file, text: l.text }))),
    ...allSpans.filter((s) => !isLogMessage(s.text)).flatMap((s) => invocations(s.text).map((i) => ({ ...i, file: s.file, text: s.text }))),
  ];

  test('there are command mentions to check, of most commands', () => {
    expect(found.length).toBeGreaterThan(20);
    expect(new Set(found.map((f) => f.command)).size).toBeGreaterThan(8);
  });

  test('every `levee <command>` is a command', () => {
    expect(found.filter((f) => f.command !== 'help' && !commands.has(f.command)).map((f) => `${f.file}: ${f.text}`)).toEqual([]);
  });

  test('every option given to a command is one of its options', () => {
    const bad: string[] = [];
    for (const f of found) {
      const command = commands.get(f.command);
      if (command === undefined) continue;
      for (const token of f.args.map((t) => t.replace(/^\[+|[\],]+$/g, '').replace(/=.*$/, ''))) {
        if (!/^--?[a-z]/.test(token) || token === '-h' || token === '--help') continue;
        if (!command.options.some((o) => o.short === token || o.long === token)) bad.push(`${f.file}: ${f.text} (${token})`);
      }
    }
    expect(bad).toEqual([]);
  });

  test('operations.md lists every command', () => {
    const operations = codeOf('docs/operations.md').spans.flatMap((s) => invocations(s.text).map((i) => i.command));
    expect([...commands.keys()].filter((name) => !operations.includes(name))).toEqual([]);
  });
});

describe('docs name only metrics the daemon exports', () => {
  let exposed: Set<string>;
  beforeAll(async () => {
    exposed = await exportedMetricNames();
  });

  test('every levee_* metric in the docs is exported (histogram series folded to their family)', () => {
    const named = new Map<string, string>();
    for (const file of DOCS) {
      for (const m of read(file).matchAll(/\blevee_[a-z0-9_]*[a-z0-9]\b/g)) named.set(m[0].replace(/_(bucket|count|sum)$/, ''), file);
    }
    expect(named.size).toBeGreaterThan(10);
    expect([...named].filter(([name]) => !exposed.has(name)).map(([name, file]) => `${file}: ${name}`)).toEqual([]);
  });
});

describe('docs name only config options the schema has', () => {
  const options = new Set(
    configSections(configJsonSchema())
      .filter((s) => s.name !== 'conditions')
      .flatMap((s) => s.options.map((o) => o.path.replace(/\[\]/g, ''))),
  );
  const TOP = /^(listen|metrics|counters|log|policy|load|batv|admin|recipients|defences|held|notify)(\.[a-z_]+)+/;
  /** A source file named in the docs (`metrics.ts`), not an option. */
  const FILE = /^[\w./-]+\.(ts|mjs|js|md|ya?ml|json|sh)$/;

  test('every `section.option` in an inline code span is an option', () => {
    const named = allSpans
      .filter((s) => !FILE.test(s.text))
      .map((s) => ({ file: s.file, path: TOP.exec(s.text)?.[0] }))
      .filter((n) => n.path !== undefined);
    expect(named.length).toBeGreaterThan(20);
    expect(named.filter((n) => !options.has(n.path ?? '')).map((n) => `${n.file}: ${n.path}`)).toEqual([]);
  });
});

describe('messages quoted in the operations and troubleshooting guides exist in the code', () => {
  test.each(['docs/operations.md', 'docs/troubleshooting.md'])('%s', (file) => {
    // A span of three or more words of plain lowercase text is a quoted log line or error message
    // (what the CLI prints has "levee: " before it); shell commands are not.
    const quoted = codeOf(file)
      .spans.map((s) => s.text.replace(/^\.\.\. ?|\.\.\.$/g, '').replace(/^levee: /, '').trim())
      .filter((t) => /^[a-z][a-z ,:'()-]*[a-z)]$/.test(t) && t.split(' ').length >= 3)
      .filter((t) => !/^(levee|systemctl|journalctl|curl|ss|ls|postsuper|postqueue|postfix) /.test(t));
    expect(quoted.length).toBeGreaterThan(3);
    expect(quoted.filter((t) => !SOURCE.includes(t))).toEqual([]);
  });
});
