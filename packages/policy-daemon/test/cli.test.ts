// The `levee` binary as an admin runs it: the compiled dist/cli.js in a child
// process. Needs `tsc -b` first (the README test command does it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { askOnce } from './support/daemon.js';

jest.setTimeout(30_000);

const CLI = join(__dirname, '..', 'dist', 'cli.js');
let dir: string;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "tsc -b" (or the README test command) first`);
  dir = mkdtempSync(join(tmpdir(), 'levee-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function levee(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address !== null && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

describe('levee check-config', () => {
  test('a valid file: exit 0 and a one-line summary', () => {
    const file = join(dir, 'ok.yaml');
    writeFileSync(file, 'rules:\n  - name: r1\n    match: { sender: ["@spam.example"] }\n    action: reject\n');
    const r = levee(['check-config', file]);
    expect(r).toMatchObject({ status: 0, stdout: `${file}: OK, 1 rules\n` });
  });

  test('errors as file:line:col: path: message, exit 78 (EX_CONFIG)', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      ['rules:', '  - name: r1', '    action: reject', '    limit:', '      key: "{client_adress}"', '      max: 10', '      window: 60x', ''].join('\n'),
    );
    const r = levee(['check-config', file]);
    expect(r.status).toBe(78);
    expect(r.stderr).toMatch(new RegExp(`^${file}:5:\\d+: rules\\.0\\.limit\\.key: .*client_adress`, 'm'));
    expect(r.stderr).toMatch(new RegExp(`^${file}:7:\\d+: rules\\.0\\.limit\\.window: `, 'm'));
  });

  test('warnings (a 4xx for a permanent condition) are printed with their position; exit stays 0', () => {
    const file = join(dir, 'warn.yaml');
    writeFileSync(file, 'rules:\n  - name: unknown\n    match: { recipient: ["@gone.example"] }\n    action: tempfail\n');
    const r = levee(['check-config', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${file}: OK, 1 rules, 1 warnings\n`);
    expect(r.stderr).toMatch(new RegExp(`^${file}:4:13: rules\\.0\\.action: warning: rule unknown answers tempfail \\(4xx\\)`));
  });

  test('a regex that can backtrack catastrophically is an error naming the rule and the pattern, exit 78', () => {
    const file = join(dir, 'redos.yaml');
    writeFileSync(file, 'rules:\n  - name: av-notice\n    match:\n      header: { Subject: ["/^(\\\\w+\\\\s?)*$/"] }\n    action: discard\n');
    const r = levee(['check-config', file]);
    expect(r.status).toBe(78);
    expect(r.stderr).toBe(
      `${file}:4:27: rules.0.match.header.Subject.0: rule av-notice: regex /^(\\w+\\s?)*$/ can backtrack catastrophically: exponential time on a long run of "A"; avoid nested repetition such as (a+)+\n`,
    );
  });

  test('a missing file is a clear error', () => {
    const r = levee(['check-config', join(dir, 'nope.yaml')]);
    expect(r.status).toBe(78);
    expect(r.stderr).toMatch(/nope\.yaml: cannot read: .*ENOENT/);
  });

  test('the embedded defaults printed by default-config pass check-config', () => {
    const printed = levee(['default-config']);
    expect(printed.status).toBe(0);
    const file = join(dir, 'defaults.yaml');
    writeFileSync(file, printed.stdout);
    expect(levee(['check-config', file]).status).toBe(0);
  });

  test('--help lists the commands; an unknown option is an error', () => {
    const help = levee(['--help']);
    expect(help.stdout).toMatch(/run .*\n.*check-config/s);
    const runHelp = levee(['run', '--help']);
    expect(runHelp.stdout).toMatch(/--config <file>/);
    expect(runHelp.stdout).toMatch(/SIGHUP/);
    const bad = levee(['run', '--bogus']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown option '--bogus'/);
  });

  test('--help of each command states its defaults and exit codes, without noise', () => {
    const run = levee(['run', '--help']).stdout;
    for (const address of ['inet:127.0.0.1:10031', 'inet:127.0.0.1:8891', '127.0.0.1:9469', '127.0.0.1:9470']) expect(run).toContain(address);
    expect(run).toMatch(/Exit codes: 0 after SIGTERM or SIGINT, 78 .*, 70 /s);
    expect(levee(['explain', '--help']).stdout).not.toContain('(default: [])');
    expect(levee(['--help']).stdout).toContain('docs/configuration-reference.md');
    // Each number option says what it wants.
    const top = levee(['top', '-n', 'many']);
    expect(top.status).not.toBe(0);
    expect(top.stderr).toMatch(/expected a whole number$/m);
    const replay = levee(['replay', '-', '-i', 'soon']);
    expect(replay.stderr).toMatch(/expected a whole number of milliseconds/);
  });
});

describe('levee explain and replay', () => {
  const config = (): string => {
    const file = join(dir, 'explain.yaml');
    writeFileSync(
      file,
      [
        'rules:',
        '  - name: blocked',
        '    match: { client_address: ["192.0.2.0/24"] }',
        '    action: reject',
        '    text: "Blocked network"',
        '  - name: two-per-client',
        '    limit: { key: "{client_address}", max: 2, window: 1h }',
        '    action: tempfail',
        '  - name: shadow',
        '    mode: warn',
        '    match: { sender: ["@shadow.example"] }',
        '    action: reject',
        '',
      ].join('\n'),
    );
    return file;
  };

  test('explain shows every rule considered, why, and the reply', () => {
    const r = levee(['explain', '-c', config(), '--set', 'client_address=192.0.2.9', '--set', 'recipient=bob@example.org']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('request: stage=rcpt client=192.0.2.9');
    expect(r.stdout).toMatch(/1 blocked\s+decided\s+applied: reject/);
    expect(r.stdout).toContain('verdict: reject by blocked');
    expect(r.stdout).toContain('policy reply: action=550 5.7.1 Blocked network');
  });

  test('explain of several requests in a file: counters carry over, so a limit trips; --json gives the trail', () => {
    const file = join(dir, 'three.txt');
    const one = 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.1\nsender=x@shadow.example\n\n';
    writeFileSync(file, one + one + one);
    const r = levee(['explain', '-c', config(), '-f', file, '--json']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { facts: Record<string, unknown>; decision: { verdict: { action: string; warnings?: unknown[] }; trail: unknown[] } });
    expect(lines.map((l) => l.decision.verdict.action)).toEqual(['continue', 'continue', 'tempfail']);
    // The facts as text (the parsed address stays inside), the trail written out.
    expect(lines[0]?.facts).toMatchObject({ clientAddress: '198.51.100.1' });
    expect(lines[0]?.facts).not.toHaveProperty('clientIp');
    expect(lines[2]?.decision.trail.length).toBeGreaterThan(0);
    expect(lines[0]?.decision.verdict.warnings).toEqual([{ rule: 'shadow', action: 'reject' }]);
  });

  test('replay summarises a capture by action, rule and warn-mode rule', () => {
    const file = join(dir, 'capture.txt');
    const req = (ip: string): string => `request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=${ip}\nsender=a@shadow.example\n\n`;
    writeFileSync(file, req('192.0.2.1') + req('203.0.113.1') + req('203.0.113.1') + req('203.0.113.1'));
    const r = levee(['replay', file, '-c', config(), '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      requests: 4,
      undecidable: 0,
      byAction: { reject: 1, continue: 2, tempfail: 1 },
      byRule: { blocked: 1, 'two-per-client': 1 },
      // Not 3: on the fourth request the limit decides before the warn rule is reached.
      wouldWarn: { shadow: 2 },
    });
  });

  test('bad input is a usage error (64) that says what is wrong', () => {
    expect(levee(['explain', '--set', 'novalue'])).toMatchObject({ status: 64, stderr: 'levee: --set needs name=value, got "novalue"\n' });
    const bad = join(dir, 'bad.txt');
    writeFileSync(bad, 'request=smtpd_access_policy\nno equals here\n\n');
    expect(levee(['replay', bad]).stderr).toMatch(/bad\.txt: request 1: missing-equals/);
  });
});

describe('levee run', () => {
  let child: ChildProcess | undefined;
  let output = '';
  afterEach(() => {
    if (child?.exitCode === null) child.kill('SIGKILL');
    child = undefined;
    output = '';
  });

  const start = (args: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      child = spawn(process.execPath, [CLI, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      const timer = setTimeout(() => reject(new Error(`levee did not start:\n${output}`)), 10_000);
      const onData = (d: Buffer): void => {
        output += d.toString();
        if (output.includes('"levee started"')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', () => reject(new Error(`levee exited:\n${output}`)));
    });
  const waitFor = async (text: string): Promise<void> => {
    for (let i = 0; i < 100 && !output.includes(text); i++) await new Promise((r) => setTimeout(r, 50));
    expect(output).toContain(text);
  };

  test('serves a config file; SIGHUP reloads it, a bad file keeps the old rules; SIGTERM exits 0', async () => {
    const port = await freePort();
    const file = join(dir, 'run.yaml');
    const config = (sender: string): string =>
      `listen: { policy: ["inet:127.0.0.1:${port}"], milter: [] }\nmetrics: { listen: false }\nadmin: { listen: false }\nrules:\n  - name: block\n    match: { sender: ["${sender}"] }\n    action: reject\n    text: "Blocked"\n`;
    writeFileSync(file, config('@one.example'));
    await start(['--config', file]);
    expect(await askOnce(port, { sender: 'x@one.example' })).toBe('550 5.7.1 Blocked');

    writeFileSync(file, config('@two.example'));
    child?.kill('SIGHUP');
    await waitFor('configuration reloaded');
    expect(await askOnce(port, { sender: 'x@one.example' })).toBe('DUNNO');
    expect(await askOnce(port, { sender: 'x@two.example' })).toBe('550 5.7.1 Blocked');

    writeFileSync(file, 'rules:\n  - name: broken\n    action: explode\n');
    child?.kill('SIGHUP');
    await waitFor('reload failed, keeping the running configuration');
    expect(output).toMatch(/run\.yaml:3:\d+: rules\.0\.action/);
    expect(await askOnce(port, { sender: 'x@two.example' })).toBe('550 5.7.1 Blocked');

    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    child?.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toContain('levee stopped');
  });

  test('without --config it runs the embedded defaults on 127.0.0.1:10031', async () => {
    const busy = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(true));
      probe.listen(10031, '127.0.0.1', () => probe.close(() => resolve(false)));
    });
    if (busy) throw new Error('port 10031 is in use on this machine; the defaults test needs it');
    await start([]);
    expect(output).toContain('"listen":"inet:127.0.0.1:10031"');
    expect(output).toContain('"config":"<embedded defaults>"');
    expect(await askOnce(10031, {})).toBe('DUNNO');
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    child?.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  test('a listener that cannot be opened is a clear fatal error, exit 78', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const address = blocker.address();
    const port = address !== null && typeof address === 'object' ? address.port : 0;
    const file = join(dir, 'busy.yaml');
    writeFileSync(file, `listen: { policy: ["inet:127.0.0.1:${port}"], milter: [] }\nmetrics: { listen: false }\nadmin: { listen: false }\n`);
    const r = levee(['run', '--config', file]);
    blocker.close();
    expect(r.status).toBe(78);
    expect(r.stdout + r.stderr).toMatch(/cannot listen on inet:127\.0\.0\.1:\d+: .*EADDRINUSE/);
  });
});
