/**
 * http-listener - listen with a node:http server on a loopback address and
 * give back what both HTTP endpoints (metrics, admin) need: the bound port
 * and a close that also ends keep-alive connections.
 */

import type { Server } from 'node:http';

export interface HttpListener {
  readonly server: Server;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

/** listenHttp - resolves once `server` listens on host:port; rejects with the listen error. */
export async function listenHttp(server: Server, host: string, port: number): Promise<HttpListener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  return {
    server,
    port: bound !== null && typeof bound === 'object' ? bound.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
