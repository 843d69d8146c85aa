import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createLoadMonitor, defaultLoadSources, type LoadSources } from '../src/load-monitor.js';
import { createLogger } from '../src/logger.js';

function fakeSources(values: { load: number; lag?: number; free?: number; files?: number }): LoadSources {
  return {
    loadPerCpu: () => values.load,
    eventLoopLagMs: () => values.lag ?? 0,
    freeBytes: () => Promise.resolve(values.free),
    countFiles: () => Promise.resolve(values.files),
  };
}

describe('load monitor', () => {
  test('raises and lowers the tier from sampled readings, logging and exporting each change', async () => {
    const logs: Record<string, unknown>[] = [];
    const registry = new Registry();
    const values = { load: 0.5, free: 10e9, files: 10 };
    let now = 0;
    const monitor = createLoadMonitor({
      settings: () => ({
        thresholds: { loadPerCpu: { delay: 2, refuse: 8 }, queueFreeBytes: { shed: 1e9 }, queueDepth: { refuse: 1000 } },
        policy: { calmRatio: 0.8, holdMs: 10_000 },
        queueFilesystem: '/queue',
        queueDirectories: ['/queue/deferred'],
      }),
      intervalMs: 1000,
      log: createLogger('info', { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) }),
      registry,
      now: () => now,
      sources: fakeSources(values),
    });
    expect((await monitor.sample()).tier).toBe('normal');
    values.free = 5e8; // disk nearly full
    now = 1000;
    expect((await monitor.sample()).tier).toBe('shed');
    expect(logs.at(-1)).toMatchObject({ msg: 'load tier raised', tier: 'shed', from: 'normal', cause: 'queueFreeBytes' });
    expect(await registry.getSingleMetricAsString('levee_load_tier')).toMatch(/levee_load_tier 2/);
    values.free = 10e9;
    now = 2000;
    await monitor.sample(); // calm starts
    now = 12_000;
    expect((await monitor.sample()).tier).toBe('delay');
    expect(logs.at(-1)).toMatchObject({ msg: 'load tier lowered', tier: 'delay', from: 'shed' });
    expect(await registry.getSingleMetricAsString('levee_load_tier_changes_total')).toMatch(/tier="delay"\} 1/);
  });

  test('the share of stress=yes requests is a signal', async () => {
    let now = 0;
    const monitor = createLoadMonitor({
      settings: () => ({ thresholds: { stressShare: { delay: 0.5 } }, policy: { calmRatio: 0.8, holdMs: 1 } }),
      intervalMs: 1000,
      log: createLogger('silent'),
      registry: new Registry(),
      now: () => now,
      sources: fakeSources({ load: 0 }),
    });
    for (let i = 0; i < 10; i++) monitor.noteRequest(i < 6);
    expect((await monitor.sample()).tier).toBe('delay');
    expect(monitor.lastReadings.stressShare).toBeCloseTo(0.6);
    now = 10; // no requests since: no stress reading, calm
    await monitor.sample();
    now = 20;
    expect((await monitor.sample()).tier).toBe('normal');
  });

  test('default sources: free bytes of a real filesystem, and a bounded count of queue files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'levee-queue-'));
    try {
      for (const sub of ['incoming', 'deferred/A', 'deferred/B']) mkdirSync(join(dir, sub), { recursive: true });
      for (let i = 0; i < 30; i++) writeFileSync(join(dir, i % 2 === 0 ? 'deferred/A' : 'deferred/B', `Q${i}`), '');
      writeFileSync(join(dir, 'incoming', 'Qin'), '');
      const sources = defaultLoadSources();
      expect(await sources.countFiles([join(dir, 'incoming'), join(dir, 'deferred')], 1000)).toBe(31);
      expect(await sources.countFiles([join(dir, 'deferred')], 10)).toBe(10);
      expect(await sources.countFiles([join(dir, 'missing')], 10)).toBeUndefined();
      expect(await sources.freeBytes(dir)).toBeGreaterThan(0);
      expect(await sources.freeBytes(join(dir, 'missing'))).toBeUndefined();
      expect(sources.loadPerCpu()).toBeGreaterThanOrEqual(0);
      expect(sources.eventLoopLagMs()).toBeGreaterThanOrEqual(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
