/**
 * admin-client - what `levee status|top|blocks|block|unblock` send to a
 * running daemon's admin endpoint, and how their answers are shown.
 */

import { readFile } from 'node:fs/promises';
import { EX_UNAVAILABLE } from './exit-codes.js';

export interface AdminTarget {
  readonly url: string;
  readonly token: string | undefined;
}

/** adminTarget - where to ask: --admin, else admin.listen of --config, else the default. */
export async function adminTarget(opts: { admin?: string; tokenFile?: string }, configListen: string | undefined): Promise<AdminTarget> {
  const base = opts.admin ?? (configListen === undefined ? 'http://127.0.0.1:9470' : `http://${configListen}`);
  let token = process.env['LEVEE_ADMIN_TOKEN'];
  if (opts.tokenFile !== undefined) token = (await readFile(opts.tokenFile, 'utf8')).trim();
  return { url: base.replace(/\/$/, ''), token };
}

/**
 * adminCall - one call as the CLI makes it: the answer's body, or undefined
 * after printing why on stderr and setting the exit code (69 when the
 * endpoint cannot be reached, 1 for an error answer).
 */
export async function adminCall(target: AdminTarget, method: string, path: string, body?: unknown): Promise<unknown> {
  let answer: { status: number; body: unknown };
  try {
    answer = await adminRequest(target, method, path, body);
  } catch (error) {
    process.stderr.write(`levee: cannot reach the admin endpoint: ${(error as Error).message}\n`);
    process.exitCode = EX_UNAVAILABLE;
    return undefined;
  }
  if (answer.status >= 400) {
    process.stderr.write(`levee: ${(answer.body as { error?: string }).error ?? JSON.stringify(answer.body)}\n`);
    process.exitCode = 1;
    return undefined;
  }
  return answer.body;
}

/** adminRequest - one call; resolves with the HTTP status and the parsed JSON body. */
export async function adminRequest(target: AdminTarget, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.token !== undefined && method !== 'GET') headers['authorization'] = `Bearer ${target.token}`;
  const response = await fetch(`${target.url}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed };
}

/** formatStatus - the human form of GET /status. */
export function formatStatus(s: Record<string, unknown>): string {
  const counters = (s['counters'] ?? {}) as Record<string, unknown>;
  const connections = (s['connections'] ?? {}) as Record<string, unknown>;
  return [
    `tier:        ${String(s['tier'])}`,
    `counters:    ${String(counters['backend'])}${counters['degraded'] === true ? ' (DEGRADED: counting locally)' : ''}, ${String(counters['keys'])} keys, ${String(counters['evictions'])} evicted`,
    `connections: policy ${String(connections['policy'])}, milter ${String(connections['milter'])}`,
    `rules:       ${String(s['rules'])} (${String(s['config'])})`,
    `blocked:     ${String(s['blocks'])}${typeof s['blocksPending'] === 'number' && s['blocksPending'] > 0 ? ` (${String(s['blocksPending'])} change(s) waiting for redis)` : ''}`,
    `held:        ${String(s['held'] ?? 0)} messages, ${String(s['contained'] ?? 0)} customers contained`,
    `uptime:      ${String(s['uptimeSeconds'])}s`,
    '',
  ].join('\n');
}

/** formatTop - GET /top as a table. */
export function formatTop(rows: readonly { key: string; count: number; limit: number; windowMs: number }[]): string {
  if (rows.length === 0) return 'no counters in use\n';
  const lines = rows.map((r) => `${`${String(r.count)}/${String(r.limit)}`.padStart(12)}  ${`${String(r.windowMs / 1000)}s`.padStart(7)}  ${r.key}`);
  return `${'count/limit'.padStart(12)}  ${'window'.padStart(7)}  key\n${lines.join('\n')}\n`;
}
