#!/usr/bin/env node
/** cli - entry point of the `levee` binary; the commands live in program.ts. */

import { buildProgram, EX_SOFTWARE } from './program.js';

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    process.stderr.write(`levee: ${(error as Error).message}\n`);
    process.exit(EX_SOFTWARE);
  });
