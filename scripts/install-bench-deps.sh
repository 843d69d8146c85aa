#!/usr/bin/env bash
# Installs what `pnpm bench` measures Levee against, from Debian's packages:
#   postfwd        the Perl rate-limiting policy daemon (postfwd2), the
#                  competitor of the policy scenarios (bench/config/postfwd.cf);
#   libmilter-dev  Sendmail's libmilter, to build the no-op libmilter milter
#                  (bench/reference/libmilter-noop.c);
#   rspamd         rspamd's milter with its ratelimit module, the competitor of
#                  the milter scenarios (bench/config/rspamd/);
#   gcc            builds that and the C reference servers;
#   valgrind       counts instructions per request (bench/instructions.mjs);
# and redis-server for the Redis store scenarios (scripts/install-redis-test-deps.sh).
#
# Idempotent and non-interactive: when everything is present it only checks and
# exits (no apt-get update). The benchmark never uses a system postfwd or rspamd:
# it starts its own on a free loopback port, with its own configuration, and
# stops it by PID. Debian's postfwd package does not start one (STARTUP=0 in
# /etc/default/postfwd); policy-rc.d keeps rspamd's and any other maintainer
# script from starting a daemon.
set -euo pipefail
exec </dev/null

log() { printf 'install-bench-deps: %s\n' "$*"; }

# package -> a file that proves it is installed and usable
declare -A need=(
  [postfwd]=/usr/sbin/postfwd2
  [libmilter-dev]=/usr/include/libmilter/mfapi.h
  [rspamd]=/usr/bin/rspamd
  [gcc]=/usr/bin/gcc
  [valgrind]=/usr/bin/valgrind
)

. "$(dirname "$0")/lib/debian-packages.sh"

find_missing
if [ "${#missing[@]}" -gt 0 ]; then
  log "missing: ${missing[*]}"
  install_packages "${missing[@]}"
  # rspamd's package enables its service for the next boot; the benchmark runs its own
  # instance, so a machine that had no rspamd is left without one starting at boot.
  if [[ " ${missing[*]} " == *" rspamd "* ]] && command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable rspamd.service >/dev/null 2>&1 || log "could not disable rspamd.service (systemctl disable rspamd.service)"
  fi
fi

bash "$(dirname "$0")/install-redis-test-deps.sh"
