/**
 * metrics-server - serve GET /metrics (Prometheus text) and GET /healthz on a
 * loopback HTTP port. Nothing else is served: every other path is 404 and
 * every other method 405, so the endpoint cannot be used to change anything.
 *
 * /healthz answers 200 with {"status":"ok", ...health()} while the daemon
 * runs: e.g. {"status":"ok","backend":"redis","degraded":false}. A degraded
 * counter store still answers every request, so it is a field, not a 503.
 */

import { createServer } from 'node:http';
import type { Registry } from 'prom-client';
import { listenHttp, type HttpListener } from './http-listener.js';

export type MetricsServer = HttpListener;

/** startMetricsServer - listen on host:port; resolves once listening. `health` adds fields to /healthz. */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
  health: () => Readonly<Record<string, string | number | boolean>> = () => ({}),
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify({ status: 'ok', ...health() })}\n`);
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => res.writeHead(500).end(String(error)),
    );
  });
  return listenHttp(server, host, port);
}
