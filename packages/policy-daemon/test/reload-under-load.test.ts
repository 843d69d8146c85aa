// A reload under load: eight clients keep asking while the rules are swapped;
// no request fails, and every answer comes from the old rules or the new ones.
// The phases are counted, not timed: the swap happens once every client has
// answered a few requests, and the clients stop once every one of them has
// answered a few more under the new rules, however slow the machine is.
import { loadConfigText } from '../src/config-file.js';
import { rcptRequest, startTestDaemon } from './support/daemon.js';
import { waitUntil } from './support/process-tools.js';

jest.setTimeout(60_000);

const rules = (sender: string): string => `rules:\n  - name: block\n    match: { sender: ["${sender}"] }\n    action: reject\n    text: "Blocked"\n`;

const CLIENTS = 8;
const PER_PHASE = 20; // answers each client gives before the swap, and again after it
const PHASE_TIMEOUT_MS = 20_000;

test('reload under load loses no request; answers switch from the old rules to the new', async () => {
  const levee = await startTestDaemon(rules('@old.example'), { metrics: true });
  try {
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => levee.client()));
    let reloaded = false;
    let stop = false;
    const seen = { before: new Set<string>(), after: new Set<string>() };
    const answeredBefore = new Array<number>(CLIENTS).fill(0);
    const answeredAfter = new Array<number>(CLIENTS).fill(0);
    const work = clients.map(async (client, i) => {
      for (let n = 0; !stop && n < 20_000; n++) {
        const sender = n % 2 === 0 ? 'x@old.example' : 'x@new.example';
        const wasReloaded = reloaded;
        const action = (await client.request(rcptRequest({ sender, client_address: `198.51.100.${i + 1}` }))).action;
        // Record only answers whose epoch is certain: asked and answered on the same side of the swap.
        if (wasReloaded !== reloaded) continue;
        (reloaded ? seen.after : seen.before).add(`${sender} ${action}`);
        const counts = reloaded ? answeredAfter : answeredBefore;
        counts[i] = (counts[i] ?? 0) + 1;
      }
    });
    const everyClient = (counts: number[]) => () => counts.every((c) => c >= PER_PHASE);
    expect(await waitUntil(everyClient(answeredBefore), PHASE_TIMEOUT_MS)).toBe(true);

    const next = loadConfigText(rules('@new.example'), 'new.yaml');
    if (!next.ok) throw new Error('bad test config');
    levee.daemon.reload(next.config, next.ruleset, 'new.yaml');
    reloaded = true;
    // A bad file never reaches reload(): loading it fails and the running rules stay.
    expect(loadConfigText('rules:\n  - name: x\n    action: explode\n', 'bad.yaml').ok).toBe(false);

    expect(await waitUntil(everyClient(answeredAfter), PHASE_TIMEOUT_MS)).toBe(true);
    stop = true;
    await Promise.all(work); // any failed request would reject here
    expect([...seen.before].sort()).toEqual(['x@new.example DUNNO', 'x@old.example 550 5.7.1 Blocked']);
    expect([...seen.after].sort()).toEqual(['x@new.example 550 5.7.1 Blocked', 'x@old.example DUNNO']);
    expect(await levee.metricsText()).toMatch(/levee_config_reloads_total\{outcome="ok"\} 1/);
    expect(await levee.metricsText()).toMatch(/levee_config_last_load_timestamp_seconds \d/);
  } finally {
    await levee.close();
  }
});
