/**
 * counter-snapshot - write the memory store's counters to a file and read
 * them back, so a restart during an attack does not reset the limits.
 *
 * Format: JSON lines. The first line is a header
 *   {"format":"levee-counters","version":1,"written":<ms>}
 * and every other line one counter, least recently used first:
 *   ["<rule>|<key>", windowMs, newestBucketIndex, [count, ...]]
 * Bucket indexes are absolute (floor(t/width)), so the counters mean the same
 * after a restart and simply age out as time passes; counters already empty
 * are not written. Oldest first means a restore into a smaller store keeps the
 * most recently used ones.
 *
 * Writing never blocks the event loop for long: keys are copied first, then
 * serialised in chunks with an await on each write, so mail keeps flowing
 * while a million counters are saved. The file is written to a temporary name
 * and renamed, so a crash mid-write leaves the previous snapshot intact.
 * Reading happens before the listeners open; a missing file is normal (first
 * start), a damaged line is skipped, a file in another format is ignored and
 * reported.
 *
 * LIMITATIONS: counts made between the last periodic snapshot and a crash
 * (kill -9, power loss) are lost; a clean stop (SIGTERM) writes a final one.
 * A snapshot is a moment-by-moment copy, not a consistent cut: counters that
 * change while it is written may be saved before or after the change.
 */

import { open, readFile, rename, rm } from 'node:fs/promises';
import type { CounterEntry, MemoryStore } from './memory-store.js';

const FORMAT = 'levee-counters';
const VERSION = 1;
const CHUNK = 2000;

export interface SnapshotWriteResult {
  readonly counters: number;
  readonly bytes: number;
}

export interface SnapshotReadResult {
  /** Counters restored into the store. */
  readonly restored: number;
  /** Lines skipped: malformed, or counters already empty at `now`. */
  readonly skipped: number;
  /** Why nothing was restored, when the file is missing or not a snapshot. */
  readonly problem?: string;
}

/** writeSnapshot - save every non-empty counter of `store` to `file` (atomically replaced). */
export async function writeSnapshot(store: MemoryStore, file: string, now: number): Promise<SnapshotWriteResult> {
  const temp = `${file}.tmp-${process.pid}`;
  const handle = await open(temp, 'w', 0o600);
  let counters = 0;
  let bytes = 0;
  try {
    const header = `${JSON.stringify({ format: FORMAT, version: VERSION, written: now })}\n`;
    await handle.write(header);
    bytes += Buffer.byteLength(header);
    const keys = store.keysOldestFirst();
    for (let start = 0; start < keys.length; start += CHUNK) {
      let text = '';
      for (const key of keys.slice(start, start + CHUNK)) {
        const e = store.exportEntry(key, now);
        if (e === undefined) continue;
        text += `${JSON.stringify([e.key, e.windowMs, e.newest, e.counts])}\n`;
        counters++;
      }
      if (text !== '') {
        await handle.write(text);
        bytes += Buffer.byteLength(text);
      }
    }
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  await rename(temp, file);
  return { counters, bytes };
}

function parseLine(line: string): CounterEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 4) return undefined;
  const [key, windowMs, newest, counts] = v as unknown[];
  if (typeof key !== 'string' || typeof windowMs !== 'number' || typeof newest !== 'number' || !Array.isArray(counts)) return undefined;
  return { key, windowMs, newest, counts: counts as number[] };
}

/** readSnapshot - restore the counters in `file` into `store`; never throws for a bad or missing file. */
export async function readSnapshot(store: MemoryStore, file: string, now: number): Promise<SnapshotReadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { restored: 0, skipped: 0, problem: code === 'ENOENT' ? 'no snapshot file yet' : `cannot read: ${(error as Error).message}` };
  }
  const lines = text.split('\n');
  let header: unknown;
  try {
    header = JSON.parse(lines[0] ?? '');
  } catch {
    header = undefined;
  }
  const h = header as { format?: unknown; version?: unknown } | undefined;
  if (h === undefined || h === null || h.format !== FORMAT || h.version !== VERSION) {
    return { restored: 0, skipped: 0, problem: `not a ${FORMAT} version ${VERSION} file` };
  }
  let restored = 0;
  let skipped = 0;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '') continue;
    const entry = parseLine(line);
    if (entry !== undefined && store.importEntry(entry, now)) restored++;
    else skipped++;
  }
  return { restored, skipped };
}
