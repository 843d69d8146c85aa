/**
 * admin-server - the loopback HTTP endpoint behind `levee status`, `levee
 * top`, `levee block` and `levee unblock`.
 *
 *   GET    /status              tier, counter store, connections, rules, blocks
 *   GET    /top?n=20            counters nearest their limits (local store)
 *   GET    /blocks              the block list
 *   GET    /evidence[?address=] the worst offenders, or what one address did
 *   POST   /blocks              {"address": "192.0.2.7" or a CIDR, "for": "1h", "reason": "..."}
 *   DELETE /blocks?address=...  unblock
 *   GET    /held                the messages held (answered quarantine)
 *   GET    /held/ID             one of them
 *   DELETE /held/ID?how=released|dropped   forget it (levee release/drop ran the MTA's command)
 *   GET    /contained           customers warned or held (limits with contain)
 *   DELETE /contained?key=...   end a customer's warning or hold now
 *
 * With counters.backend redis the block list is shared (shared-list.ts): a
 * change is written to Redis before the answer (200); if Redis cannot be
 * reached it holds on this host at once and is written when Redis is back,
 * and the answer says so (202, "shared": "pending").
 *
 * Reading needs nothing; changing needs `Authorization: Bearer <token>` with
 * the token from admin.token_file (compared in constant time). Without a
 * token file the changing endpoints answer 403: an admin endpoint that can
 * block mail is never open by default. Bodies are capped at 4 KiB.
 */

import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { normaliseNetwork, parseDuration } from '@levee/rules';
import { listenHttp, type HttpListener } from './http-listener.js';

const MAX_BODY_BYTES = 4096;

export interface AdminActions {
  status(): Record<string, unknown>;
  top(n: number): unknown[];
  blocks(): unknown[];
  evidence(address: string | undefined, n: number): unknown;
  /** The entry, with `shared`: "redis" (every host), "pending" (this host until Redis is back) or "no" (backend memory). */
  block(network: string, forMs: number | undefined, reason: string): Promise<{ readonly shared: string }>;
  unblock(network: string): Promise<{ readonly removed: boolean; readonly shared: string }>;
  held(): unknown[];
  heldRecord(id: string): unknown;
  forgetHeld(id: string, how: 'released' | 'dropped'): Promise<unknown>;
  contained(): unknown[];
  endContainment(key: string): Promise<boolean>;
}

export type AdminServer = HttpListener;

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(undefined));
  });
}

/** startAdminServer - listen on host:port; `token()` is read per request, so a reload can change it. */
export async function startAdminServer(actions: AdminActions, host: string, port: number, token: () => string | undefined): Promise<AdminServer> {
  const authorised = (req: IncomingMessage): 'ok' | 'no-token-configured' | 'denied' => {
    const expected = token();
    if (expected === undefined || expected === '') return 'no-token-configured';
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(expected);
    return a.length === b.length && timingSafeEqual(a, b) ? 'ok' : 'denied';
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = `${req.method ?? 'GET'} ${url.pathname}`;
    if (route === 'GET /status') return send(res, 200, actions.status());
    if (route === 'GET /top') {
      const n = Math.min(1000, Math.max(1, Number.parseInt(url.searchParams.get('n') ?? '20', 10) || 20));
      return send(res, 200, actions.top(n));
    }
    if (route === 'GET /blocks') return send(res, 200, actions.blocks());
    if (route === 'GET /evidence') {
      const address = url.searchParams.get('address') ?? undefined;
      const found = actions.evidence(address, Math.min(1000, Math.max(1, Number.parseInt(url.searchParams.get('n') ?? '20', 10) || 20)));
      return found === undefined ? send(res, 404, { error: `no evidence for ${address ?? ''}` }) : send(res, 200, found);
    }
    if (route === 'GET /held') return send(res, 200, actions.held());
    if (route === 'GET /contained') return send(res, 200, actions.contained());
    const heldId = /^\/held\/([0-9a-f]{1,32})$/.exec(url.pathname)?.[1];
    if (heldId !== undefined && req.method === 'GET') {
      const record = actions.heldRecord(heldId);
      return record === undefined ? send(res, 404, { error: `no held message ${heldId}` }) : send(res, 200, record);
    }
    if ((heldId !== undefined && req.method === 'DELETE') || route === 'DELETE /contained') {
      const auth = authorised(req);
      if (auth === 'no-token-configured') return send(res, 403, { error: 'changes are disabled: set admin.token_file' });
      if (auth === 'denied') return send(res, 401, { error: 'missing or wrong bearer token' });
      if (heldId === undefined) {
        const key = url.searchParams.get('key') ?? '';
        return (await actions.endContainment(key)) ? send(res, 200, { ended: key }) : send(res, 404, { error: `${key} is neither warned nor held` });
      }
      const how = url.searchParams.get('how');
      if (how !== 'released' && how !== 'dropped') return send(res, 400, { error: 'how must be released or dropped' });
      const record = await actions.forgetHeld(heldId, how);
      return record === undefined ? send(res, 404, { error: `no held message ${heldId}` }) : send(res, 200, record);
    }
    if (route === 'POST /blocks' || route === 'DELETE /blocks') {
      const auth = authorised(req);
      if (auth === 'no-token-configured') return send(res, 403, { error: 'changes are disabled: set admin.token_file' });
      if (auth === 'denied') return send(res, 401, { error: 'missing or wrong bearer token' });
      if (route === 'DELETE /blocks') {
        const network = normaliseNetwork(url.searchParams.get('address') ?? '');
        if (network === undefined) return send(res, 400, { error: 'address must be an IP address or CIDR' });
        const result = await actions.unblock(network);
        if (!result.removed) return send(res, 404, { error: `${network} is not blocked` });
        return send(res, result.shared === 'pending' ? 202 : 200, { unblocked: network, shared: result.shared });
      }
      const text = await readBody(req);
      if (text === undefined) return send(res, 413, { error: `body larger than ${MAX_BODY_BYTES} bytes` });
      let body: { address?: unknown; for?: unknown; reason?: unknown };
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        return send(res, 400, { error: 'body must be JSON' });
      }
      const network = typeof body.address === 'string' ? normaliseNetwork(body.address) : undefined;
      if (network === undefined) return send(res, 400, { error: 'address must be an IP address or CIDR' });
      const forMs = body.for === undefined ? undefined : parseDuration(body.for);
      if (body.for !== undefined && (forMs === undefined || forMs <= 0)) return send(res, 400, { error: 'for must be a duration like 30m or 1d' });
      const reason = typeof body.reason === 'string' ? body.reason.slice(0, 200) : 'blocked by the postmaster';
      const entry = await actions.block(network, forMs, reason);
      return send(res, entry.shared === 'pending' ? 202 : 200, entry);
    }
    return send(res, route.startsWith('GET ') ? 404 : 405, { error: `no such endpoint: ${route}` });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => send(res, 500, { error: String(error) }));
  });
  return listenHttp(server, host, port);
}
