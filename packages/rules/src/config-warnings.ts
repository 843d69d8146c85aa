/**
 * config-warnings - rules that are valid but probably wrong, for
 * `levee check-config` and the start-up log.
 *
 * The one that matters most: a 4xx answer to something that will still be
 * true when the sender retries. An unknown recipient, a listed address, a
 * virus attachment do not go away; a tempfail makes every sender retry for
 * days (and the forged senders of a worm flood are many). Only conditions
 * that change with time -- rate limits, concurrency, load (stress) -- deserve
 * a tempfail.
 */

import type { Conditions, LeveeConfig } from './config-schema.js';

export interface ConfigWarning {
  /** Path of the config value the warning is about, e.g. ['rules', 3, 'action']. */
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** Conditions whose truth changes with time or load, so a retry can succeed. */
const TRANSIENT: readonly (keyof Conditions)[] = ['stress', 'clientConcurrency', 'totalConcurrency'];

function isTransient(c: Conditions | undefined): boolean {
  return c !== undefined && TRANSIENT.some((k) => c[k] !== undefined);
}

function describe(c: Conditions | undefined): string {
  const keys = Object.entries(c ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k]) => k.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`));
  return keys.length === 0 ? 'every request at its stages' : `a permanent condition (${keys.join(', ')})`;
}

/** configWarnings - every warning for a config that passed validation. */
export function configWarnings(config: LeveeConfig): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  config.rules.forEach((rule, index) => {
    if (rule.action !== 'tempfail' || rule.limit !== undefined || isTransient(rule.match)) return;
    warnings.push({
      path: ['rules', index, 'action'],
      message:
        `rule ${rule.name} answers tempfail (4xx) to ${describe(rule.match)}: it will still hold when the sender retries, ` +
        'so senders retry for days; answer reject (5xx) for what is permanently wrong',
    });
  });
  return warnings;
}
