// levee status / top / blocks / block / unblock against a running daemon's
// admin endpoint, run as the compiled CLI, as an admin would.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './support/cli.js';
import { rcptRequest, startTestDaemon, type TestDaemon } from './support/daemon.js';

jest.setTimeout(30_000);

const TOKEN = 'correct-horse-battery-staple-42';

const levee = runCli;

describe('admin endpoint and CLI', () => {
  let dir: string;
  let levee_: TestDaemon;
  let admin: string;
  let tokenFile: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'levee-admin-'));
    tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    levee_ = await startTestDaemon(
      'rules:\n  - name: per-client\n    stage: rcpt\n    limit: { key: "{client_address}", max: 4, window: 60s }\n    action: tempfail\n',
      { admin: { tokenFile } },
    );
    admin = `http://127.0.0.1:${String(levee_.daemon.admin?.port)}`;
  });
  afterAll(async () => {
    await levee_.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('status shows tier, counters, connections and rules', async () => {
    const r = await levee(['status', '--admin', admin]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^tier: +normal$/m);
    expect(r.stdout).toMatch(/^counters: +memory, \d+ keys, 0 evicted$/m);
    expect(r.stdout).toMatch(/^rules: +1 /m);
    const json = await levee(['status', '--admin', admin, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ tier: 'normal', counters: { backend: 'memory', degraded: false } });
  });

  test('top lists the counters nearest their limits', async () => {
    const client = await levee_.client();
    for (let i = 0; i < 3; i++) await client.request(rcptRequest({ client_address: '203.0.113.50' }));
    await client.request(rcptRequest({ client_address: '203.0.113.51' }));
    const r = await levee(['top', '--admin', admin, '--json']);
    const rows = JSON.parse(r.stdout) as { key: string; count: number; limit: number }[];
    expect(rows[0]).toMatchObject({ key: 'per-client|203.0.113.50', count: 3, limit: 4 });
    expect(rows[1]).toMatchObject({ key: 'per-client|203.0.113.51', count: 1 });
    expect((await levee(['top', '--admin', admin, '-n', '1'])).stdout).toMatch(/3\/4 +60s +per-client\|203\.0\.113\.50\n$/);
  });

  test('block needs the token; with it the address is refused (550 5.7.1), others pass, unblock lifts it', async () => {
    const without = await levee(['block', '192.0.2.99', '--admin', admin]);
    expect(without).toMatchObject({ status: 1, stderr: 'levee: missing or wrong bearer token\n' });
    const wrong = await levee(['block', '192.0.2.99', '--admin', admin], { LEVEE_ADMIN_TOKEN: 'not-the-token-at-all' });
    expect(wrong.status).toBe(1);

    const ok = await levee(['block', '192.0.2.0/24', '--admin', admin, '--token-file', tokenFile, '--reason', 'worm outbreak']);
    expect(ok).toMatchObject({ status: 0, stdout: 'blocked 192.0.2.0/24\n' });
    const client = await levee_.client();
    expect((await client.request(rcptRequest({ client_address: '192.0.2.99' }))).action).toBe('550 5.7.1 Your address is blocked by the postmaster');
    expect((await client.request(rcptRequest({ client_address: '192.0.2.99', protocol_state: 'CONNECT' }))).action).toBe(
      '554 5.7.1 Your address is blocked by the postmaster',
    );
    expect((await client.request(rcptRequest({ client_address: '198.51.100.99' }))).action).toBe('DUNNO');
    expect((await levee(['blocks', '--admin', admin])).stdout).toMatch(/^192\.0\.2\.0\/24 +until unblocked +worm outbreak$/m);
    expect(levee_.logs.some((l) => l['msg'] === 'blocked by the postmaster' && l['network'] === '192.0.2.0/24')).toBe(true);

    const un = await levee(['unblock', '192.0.2.0/24', '--admin', admin], { LEVEE_ADMIN_TOKEN: TOKEN });
    expect(un).toMatchObject({ status: 0, stdout: 'unblocked 192.0.2.0/24\n' });
    expect((await client.request(rcptRequest({ client_address: '192.0.2.99' }))).action).toBe('DUNNO');
    expect((await levee(['unblock', '192.0.2.0/24', '--admin', admin], { LEVEE_ADMIN_TOKEN: TOKEN })).stderr).toMatch(/is not blocked/);
  });

  test('a block --for expires by itself', async () => {
    await levee(['block', '198.51.100.7', '--for', '10m', '--admin', admin], { LEVEE_ADMIN_TOKEN: TOKEN });
    const client = await levee_.client();
    expect((await client.request(rcptRequest({ client_address: '198.51.100.7' }))).action).toMatch(/^550 5\.7\.1/);
    levee_.clock += 10 * 60_000 + 1;
    expect((await client.request(rcptRequest({ client_address: '198.51.100.7' }))).action).toBe('DUNNO');
  });

  test('bad input is refused with a reason', async () => {
    const r = await levee(['block', 'not-an-address', '--admin', admin], { LEVEE_ADMIN_TOKEN: TOKEN });
    expect(r).toMatchObject({ status: 1, stderr: 'levee: address must be an IP address or CIDR\n' });
    const d = await levee(['block', '192.0.2.1', '--for', 'forever', '--admin', admin], { LEVEE_ADMIN_TOKEN: TOKEN });
    expect(d.stderr).toMatch(/for must be a duration/);
  });

  test('without admin.token_file changes are disabled; an unreachable daemon is exit 69', async () => {
    const plain = await startTestDaemon('rules: []\n', { admin: {} });
    try {
      const r = await levee(['block', '192.0.2.1', '--admin', `http://127.0.0.1:${String(plain.daemon.admin?.port)}`], { LEVEE_ADMIN_TOKEN: TOKEN });
      expect(r).toMatchObject({ status: 1, stderr: 'levee: changes are disabled: set admin.token_file\n' });
    } finally {
      await plain.close();
    }
    const down = await levee(['status', '--admin', 'http://127.0.0.1:1']);
    expect(down.status).toBe(69);
    expect(down.stderr).toMatch(/cannot reach the admin endpoint/);
  });
});
