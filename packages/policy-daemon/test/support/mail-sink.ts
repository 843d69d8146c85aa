/**
 * Test support: the maildir every private MTA instance delivers into, read
 * the same way for Postfix and sendmail.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readIfExists, sleep } from './process-tools.js';

/** Raw texts of the messages in `sinkDir` (new/ and cur/), oldest first. */
export function readMaildir(sinkDir: string): string[] {
  const files: { path: string; mtime: number; name: string }[] = [];
  for (const sub of ['new', 'cur']) {
    let names: string[];
    try {
      names = readdirSync(join(sinkDir, sub));
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(sinkDir, sub, name);
      try {
        files.push({ path, name, mtime: statSync(path).mtimeMs });
      } catch {
        // moved between new/ and cur/ meanwhile
      }
    }
  }
  files.sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name));
  return files.map((f) => readIfExists(f.path));
}

/** Wait until at least `count` messages are delivered; the error carries the queue and the MTA's log. */
export async function waitForMaildir(
  delivered: () => string[],
  queue: () => Promise<unknown>,
  log: () => string,
  count: number,
  timeoutMs: number,
): Promise<string[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const msgs = delivered();
    if (msgs.length >= count) return msgs;
    if (Date.now() > end) {
      let queued = '';
      try {
        queued = JSON.stringify(await queue());
      } catch (e) {
        queued = String(e);
      }
      throw new Error(`expected ${count} delivered message(s) within ${timeoutMs} ms, got ${msgs.length}; queue: ${queued}\n--- maillog ---\n${log()}`);
    }
    await sleep(50);
  }
}
