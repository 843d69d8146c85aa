/**
 * duration - config durations: `500ms`, `60s`, `5m`, `1h`, `1d`, or a plain
 * number of milliseconds.
 *
 * Limits: whole numbers only, one unit per value (no `1h30m`), result at most
 * MAX_DURATION_MS. A bare numeric *string* ("60") is refused because it is
 * ambiguous between seconds and milliseconds; write `60s` or the number 60000.
 */

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** One year: longer windows or timeouts are surely a typo. */
export const MAX_DURATION_MS = 366 * 86_400_000;

const DURATION_RE = /^(\d{1,12})\s*(ms|s|m|h|d)$/;

/** Milliseconds, or undefined when the value is not a valid duration. */
export function parseDuration(value: unknown): number | undefined {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const m = DURATION_RE.exec(value.trim());
    if (m === null) return undefined;
    ms = Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? Number.NaN);
  } else {
    return undefined;
  }
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_DURATION_MS) return undefined;
  return ms;
}

/** Shortest exact text for a duration in ms, e.g. 60000 -> "1m", 1500 -> "1500ms". */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
