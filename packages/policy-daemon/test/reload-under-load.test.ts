// A reload under load: eight clients keep asking while the rules are swapped;
// no request fails, and every answer comes from the old rules or the new ones.
import { loadConfigText } from '../src/config-file.js';
import { rcptRequest, startTestDaemon } from './support/daemon.js';

jest.setTimeout(30_000);

const rules = (sender: string): string => `rules:\n  - name: block\n    match: { sender: ["${sender}"] }\n    action: reject\n    text: "Blocked"\n`;

test('reload under load loses no request; answers switch from the old rules to the new', async () => {
  const levee = await startTestDaemon(rules('@old.example'), { metrics: true });
  try {
    const clients = await Promise.all(Array.from({ length: 8 }, () => levee.client()));
    let reloaded = false;
    let stop = false;
    const seen = { before: new Set<string>(), after: new Set<string>() };
    let answered = 0;
    const work = clients.map(async (client, i) => {
      for (let n = 0; !stop && n < 20_000; n++) {
        const sender = n % 2 === 0 ? 'x@old.example' : 'x@new.example';
        const wasReloaded = reloaded;
        const action = (await client.request(rcptRequest({ sender, client_address: `198.51.100.${i + 1}` }))).action;
        answered++;
        // Record only answers whose epoch is certain: asked and answered on the same side of the swap.
        if (wasReloaded === reloaded) (reloaded ? seen.after : seen.before).add(`${sender} ${action}`);
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    const next = loadConfigText(rules('@new.example'), 'new.yaml');
    if (!next.ok) throw new Error('bad test config');
    levee.daemon.reload(next.config, next.ruleset, 'new.yaml');
    reloaded = true;
    // A bad file never reaches reload(): loading it fails and the running rules stay.
    expect(loadConfigText('rules:\n  - name: x\n    action: explode\n', 'bad.yaml').ok).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(work); // any failed request would reject here
    expect(answered).toBeGreaterThan(100);
    expect([...seen.before].sort()).toEqual(['x@new.example DUNNO', 'x@old.example 550 5.7.1 Blocked']);
    expect([...seen.after].sort()).toEqual(['x@new.example 550 5.7.1 Blocked', 'x@old.example DUNNO']);
    expect(await levee.metricsText()).toMatch(/levee_config_reloads_total\{outcome="ok"\} 1/);
    expect(await levee.metricsText()).toMatch(/levee_config_last_load_timestamp_seconds \d/);
  } finally {
    await levee.close();
  }
});
