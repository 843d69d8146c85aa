/**
 * Test support: run a Levee daemon in-process from YAML text, on ephemeral
 * loopback ports, with its log lines captured and the clock under the test's control.
 */

import { connect } from 'node:net';
import { createPolicyClient, type PolicyClient } from '@levee/milter-proto';
import { parseRecipientDirectory, type LeveeConfig, type RecipientDirectory } from '@levee/rules';
import { loadConfigText } from '../../src/config-file.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import type { LoadSources } from '../../src/load-monitor.js';
import { createLogger } from '../../src/logger.js';

export interface TestDaemon {
  readonly daemon: Daemon;
  readonly policyPort: number;
  /** 0 unless started with `milter: true`. */
  readonly milterPort: number;
  readonly metricsPort: number | undefined;
  /** Parsed JSON log lines, in order. */
  readonly logs: Record<string, unknown>[];
  /** The injected clock, in ms; tests move it. */
  clock: number;
  client(): Promise<PolicyClient>;
  metricsText(): Promise<string>;
  close(): Promise<void>;
}

export interface TestDaemonOptions {
  readonly metrics?: boolean;
  /** Also listen for milter connections on 127.0.0.1 port 0. */
  readonly milter?: boolean;
  /** A recipient directory, as the text of a recipients.file. */
  readonly recipients?: string;
  /** Load readings for outbreak tiers (default: this machine). */
  readonly loadSources?: LoadSources;
  /** The BATV key, when the config has a batv section (its secret_file is not read here). */
  readonly batvKey?: { readonly id: number; readonly secret: string };
  /** Also serve the admin endpoint on 127.0.0.1 port 0, with this token file if given. */
  readonly admin?: { readonly tokenFile?: string };
  /** The log.redact_key_file key, when the config has one (the file is not read here). */
  readonly redactKey?: string;
  readonly mutate?: (config: LeveeConfig) => LeveeConfig;
}

/** startTestDaemon - the config from `yaml`, listening on 127.0.0.1 port 0 (policy) and, if asked, metrics. */
export async function startTestDaemon(yaml: string, options: TestDaemonOptions = {}): Promise<TestDaemon> {
  const loaded = loadConfigText(yaml, 'test.yaml');
  if (!loaded.ok) throw new Error(`test config invalid:\n${loaded.errors.join('\n')}`);
  let config: LeveeConfig = {
    ...loaded.config,
    listen: {
      policy: [{ kind: 'inet', host: '127.0.0.1', port: 0, text: 'inet:127.0.0.1:0' }],
      milter: options.milter === true ? [{ kind: 'inet', host: '127.0.0.1', port: 0, text: 'inet:127.0.0.1:0' }] : [],
    },
    metrics: { listen: options.metrics === true ? { host: '127.0.0.1', port: 0, text: '127.0.0.1:0' } : false },
    admin: {
      listen: options.admin === undefined ? false : { host: '127.0.0.1', port: 0, text: '127.0.0.1:0' },
      tokenFile: options.admin?.tokenFile,
    },
  };
  if (options.mutate !== undefined) config = options.mutate(config);
  const logs: Record<string, unknown>[] = [];
  const log = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const clients: PolicyClient[] = [];
  const handle: TestDaemon = {
    daemon: undefined as unknown as Daemon,
    policyPort: 0,
    milterPort: 0,
    metricsPort: undefined,
    logs,
    clock: 1_700_000_000_000,
    async client() {
      const socket = connect({ host: '127.0.0.1', port: handle.policyPort });
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const client = createPolicyClient(socket, { timeoutMs: 5000 });
      clients.push(client);
      return client;
    },
    async metricsText() {
      const response = await fetch(`http://127.0.0.1:${String(handle.metricsPort)}/metrics`);
      return response.text();
    },
    async close() {
      for (const c of clients) c.close();
      await handle.daemon.close(1000);
    },
  };
  let directory: RecipientDirectory | undefined;
  if (options.recipients !== undefined) {
    const parsed = parseRecipientDirectory(options.recipients);
    if (!parsed.ok) throw new Error(`test recipients invalid: ${JSON.stringify(parsed.issues)}`);
    directory = parsed.directory;
  }
  const daemon = await startDaemon({
    config,
    ruleset: loaded.ruleset,
    source: 'test.yaml',
    log,
    now: () => handle.clock,
    directory,
    ...(options.loadSources === undefined ? {} : { loadSources: options.loadSources }),
    ...(options.batvKey === undefined ? {} : { batvKey: options.batvKey }),
    ...(options.redactKey === undefined ? {} : { redactKey: options.redactKey }),
  });
  // A unix-socket listener has no port; such tests connect by path.
  Object.assign(handle, {
    daemon,
    policyPort: daemon.policyListeners[0]?.port ?? 0,
    milterPort: daemon.milterListeners[0]?.port ?? 0,
    metricsPort: daemon.metricsServer?.port,
  });
  return handle;
}

/** One rcptRequest(overrides) on a new connection to a policy listener at 127.0.0.1:`port` (a daemon in another process); its action. */
export async function askOnce(port: number, overrides: Record<string, string> = {}): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port });
  const client = createPolicyClient(socket, { timeoutMs: 5000 });
  try {
    return (await client.request(rcptRequest(overrides))).action;
  } finally {
    client.close();
  }
}

/** A RCPT-stage request as Postfix 3.7 sends it, with overrides. */
export function rcptRequest(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: '198.51.100.7',
    client_name: 'unknown',
    reverse_client_name: 'unknown',
    helo_name: 'client.example.net',
    sender: 'alice@example.net',
    recipient: 'bob@example.org',
    recipient_count: '0',
    queue_id: '',
    instance: '1a2b.6650d3f0.5c1e2.0',
    size: '0',
    stress: '',
    sasl_method: '',
    sasl_username: '',
    sasl_sender: '',
    ...overrides,
  };
}

/** The names of every metric a daemon exports (from `# TYPE` lines), milter listener included. */
export async function exportedMetricNames(): Promise<Set<string>> {
  const levee = await startTestDaemon('rules: []\n', { metrics: true, milter: true });
  try {
    const text = await levee.metricsText();
    return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] ?? ''));
  } finally {
    await levee.close();
  }
}
