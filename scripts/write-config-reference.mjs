// Writes docs/configuration-reference.md from the config schema (pnpm docs:config,
// which builds first). The Markdown comes from configReferenceMarkdown() in
// packages/rules/src/config-reference.ts; the test
// packages/rules/test/config-reference.test.ts fails when the committed file differs.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configReferenceMarkdown } from '../packages/rules/dist/index.js';

const target = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'configuration-reference.md');
writeFileSync(target, configReferenceMarkdown());
process.stdout.write(`wrote ${target}\n`);
