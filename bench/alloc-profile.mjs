// Allocation profile of a Levee process (or any Node process), for finding
// what the hot path allocates: preload it with --import, and on exit it
// writes a sampling heap profile that includes the objects the garbage
// collector has already freed (V8's HeapProfiler.startSampling with
// includeObjectsCollectedByMajorGC/MinorGC), which a plain heap snapshot or
// `--heap-prof` leaves out. Open the file in Chrome DevTools (Memory tab) or
// sum it by function with any JSON tool.
//
//   LEVEE_ALLOC_PROFILE=/tmp/levee.heapprofile LEVEE_ALLOC_PROFILE_DELAY=3 \
//     node --import ./bench/alloc-profile.mjs packages/policy-daemon/dist/cli.js run --config ...
//
// Sampling starts after LEVEE_ALLOC_PROFILE_DELAY seconds (default 3, to skip
// start-up) and stops when the process exits (SIGTERM lets Levee exit normally).
// Not part of the benchmarks: sampling slows the process down.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const file = process.env.LEVEE_ALLOC_PROFILE ?? `levee-${process.pid}.heapprofile`;
const delayMs = Number(process.env.LEVEE_ALLOC_PROFILE_DELAY ?? '3') * 1000;
const session = new Session();
session.connect();
session.post('HeapProfiler.enable');
setTimeout(() => {
  session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}, delayMs).unref();
process.on('exit', () => {
  // The in-process inspector session answers synchronously, so this runs to the end before exit.
  session.post('HeapProfiler.stopSampling', (error, result) => {
    if (error !== null) {
      process.stderr.write(`alloc-profile: ${error.message}\n`);
      return;
    }
    writeFileSync(file, JSON.stringify(result.profile));
    process.stderr.write(`alloc-profile: wrote ${file}\n`);
  });
});
