#!/usr/bin/env bash
# The whole test suite, as the README's test command runs it:
#   1. install what the real-MTA and Redis tests need (Debian packages: postfix,
#      swaks, sendmail extracted privately, redis-server),
#   2. build and type-check every package and its tests (tsc -b),
#   3. run jest once over every package,
#   4. print "N passed, N failed" from jest's own JSON results.
# Exits non-zero if anything fails. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
bash scripts/install-redis-test-deps.sh

echo "== tsc -b"
npx --no-install tsc -b

echo "== jest"
mkdir -p .test-results
results=.test-results/jest.json
rm -f "$results"
status=0
# Bounded: a test that leaks a handle must fail the run, not hang CI.
timeout --kill-after=30s 40m npx --no-install jest --ci --json --outputFile="$results" "$@" || status=$?

if [ -s "$results" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
    if (r.numTotalTests === 0) { console.error("jest ran no test"); process.exit(1); }
    if (r.numFailedTests > 0 || r.numFailedTestSuites > 0 || r.numRuntimeErrorTestSuites > 0) process.exit(1);
  ' "$results" || status=1
else
  echo "0 passed, 1 failed"
  echo "jest wrote no results" >&2
  status=1
fi
exit "$status"
