import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPolicyClient } from '@levee/milter-proto';
import { listenOn } from '../src/socket-listener.js';
import { rcptRequest, startTestDaemon } from './support/daemon.js';

describe('policy service on a unix-domain socket', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'levee-unix-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('answers on the socket, which is created mode 0660 and removed on close', async () => {
    const path = join(dir, 'policy.sock');
    const levee = await startTestDaemon('rules:\n  - name: r\n    match: { sender: ["@spam.example"] }\n    action: reject\n', {
      mutate: (config) => ({ ...config, listen: { ...config.listen, policy: [{ kind: 'unix', path, text: `unix:${path}` }] } }),
    });
    try {
      expect(statSync(path).mode & 0o777).toBe(0o660);
      const socket = connect({ path });
      const client = createPolicyClient(socket);
      expect((await client.request(rcptRequest({ sender: 'x@spam.example' }))).action).toBe('550 5.7.1 Rejected by policy');
      client.close();
    } finally {
      await levee.close();
    }
    expect(() => statSync(path)).toThrow(/ENOENT/);
  });

  test('a stale socket left by a crash is replaced', async () => {
    const path = join(dir, 'stale.sock');
    // A process killed with SIGKILL leaves its socket file behind: a real crash.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const died = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await died;
    expect(statSync(path).isSocket()).toBe(true);
    const listener = await listenOn({ kind: 'unix', path, text: `unix:${path}` }, (s) => s.end('hello'));
    try {
      const got = await new Promise<string>((resolve) => connect({ path }).on('data', (d: Buffer) => resolve(d.toString())));
      expect(got).toBe('hello');
    } finally {
      await listener.close();
    }
  });

  test('a socket another process still accepts on is never taken over', async () => {
    const path = join(dir, 'live.sock');
    const live = createServer((s) => s.end());
    await new Promise<void>((resolve) => live.listen(path, resolve));
    try {
      await expect(listenOn({ kind: 'unix', path, text: `unix:${path}` }, () => undefined)).rejects.toThrow(
        /another process is accepting connections on it/,
      );
    } finally {
      await new Promise<void>((resolve) => live.close(() => resolve()));
    }
  });

  test('a path that exists and is not a socket is refused, not deleted', async () => {
    const path = join(dir, 'file');
    writeFileSync(path, 'precious');
    await expect(listenOn({ kind: 'unix', path, text: `unix:${path}` }, () => undefined)).rejects.toThrow(/exists and is not a socket/);
    expect(statSync(path).isFile()).toBe(true);
  });
});
