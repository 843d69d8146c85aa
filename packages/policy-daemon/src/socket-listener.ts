/**
 * socket-listener - open a TCP or unix-domain listener for an MTA protocol.
 *
 * A unix socket left behind by a crash is removed only after a connect to it
 * is refused, so a second daemon never steals the socket of a running one.
 * The socket file is chmod'ed right after it appears (default 0660: the MTA's
 * group may connect, nobody else). A listener holds at most maxConnections
 * open connections; Node closes any beyond that as soon as it is accepted.
 */

import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { ListenAddress } from '@levee/rules';

export interface Listener {
  readonly address: ListenAddress;
  /** What was bound, for logs: the real port when port 0 was asked for. */
  readonly bound: string;
  /** The TCP port bound, undefined for a unix socket. */
  readonly port: number | undefined;
  readonly server: Server;
  /** Stop accepting; resolves when every connection has closed. */
  close(): Promise<void>;
}

export interface ListenOptions {
  readonly unixMode?: number;
  readonly backlog?: number;
  /** Open connections at most (net.Server maxConnections): one more is closed as soon as it is accepted. */
  readonly maxConnections?: number;
  /** Called for each connection closed because of maxConnections. */
  readonly onRefused?: () => void;
}

/** listenOn - start a server for `address`, calling `onConnection` for every accepted socket. */
export async function listenOn(
  address: ListenAddress,
  onConnection: (socket: Socket) => void,
  options: ListenOptions = {},
): Promise<Listener> {
  const server = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, onConnection);
  if (options.maxConnections !== undefined) server.maxConnections = options.maxConnections;
  const onRefused = options.onRefused;
  if (onRefused !== undefined) server.on('drop', () => onRefused());
  if (address.kind === 'unix') await removeStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const backlog = options.backlog ?? 511;
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (address.kind === 'unix') server.listen({ path: address.path, backlog }, done);
    else server.listen({ host: address.host, port: address.port, backlog }, done);
  }).catch((error: unknown) => {
    throw new Error(`cannot listen on ${address.text}: ${(error as Error).message}`);
  });
  if (address.kind === 'unix') await chmod(address.path, options.unixMode ?? 0o660);
  const info = server.address();
  const port = address.kind === 'inet' && info !== null && typeof info === 'object' ? info.port : undefined;
  return {
    address,
    bound: address.kind === 'unix' ? address.text : formatInet(address.host, port ?? address.port),
    port,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function formatInet(host: string, port: number): string {
  return host.includes(':') ? `inet:[${host}]:${port}` : `inet:${host}:${port}`;
}

async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch(() => undefined);
  if (stat === undefined) return;
  if (!stat.isSocket()) throw new Error(`cannot listen on unix:${path}: the path exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`cannot listen on unix:${path}: another process is accepting connections on it`);
  await unlink(path);
}
