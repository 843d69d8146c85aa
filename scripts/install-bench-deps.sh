#!/usr/bin/env bash
# Installs what `pnpm bench` measures Levee against, from Debian's packages:
#   postfwd        the Perl rate-limiting policy daemon (postfwd2), the
#                  competitor of the policy scenarios (bench/config/postfwd.cf);
#   libmilter-dev  Sendmail's libmilter, to build the no-op libmilter milter
#                  (bench/reference/libmilter-noop.c);
#   gcc            builds that and the C reference servers;
#   valgrind       counts instructions per request (bench/instructions.mjs);
# and redis-server for the Redis store scenarios (scripts/install-redis-test-deps.sh).
#
# Idempotent and non-interactive: when everything is present it only checks and
# exits (no apt-get update). The benchmark never uses a system postfwd: it starts
# its own on a free loopback port and stops it by PID. Debian's postfwd package
# does not start one (STARTUP=0 in /etc/default/postfwd); policy-rc.d keeps any
# maintainer script from starting a daemon all the same.
set -euo pipefail
exec </dev/null

log() { printf 'install-bench-deps: %s\n' "$*"; }

# package -> a file that proves it is installed and usable
declare -A need=(
  [postfwd]=/usr/sbin/postfwd2
  [libmilter-dev]=/usr/include/libmilter/mfapi.h
  [gcc]=/usr/bin/gcc
  [valgrind]=/usr/bin/valgrind
)

. "$(dirname "$0")/lib/debian-packages.sh"

find_missing
if [ "${#missing[@]}" -gt 0 ]; then
  log "missing: ${missing[*]}"
  install_packages "${missing[@]}"
fi

bash "$(dirname "$0")/install-redis-test-deps.sh"
