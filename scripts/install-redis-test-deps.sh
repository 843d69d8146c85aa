#!/usr/bin/env bash
# Installs redis-server (Debian package) for the shared-counter tests.
#
# Idempotent and non-interactive: when redis-server is present it only checks
# and exits (no apt-get update). The tests never use a system Redis: they start
# private redis-server processes on free loopback ports, with no persistence
# (--save "" --appendonly no) in temp dirs, and stop them by PID
# (packages/policy-daemon/test/support/redis.ts). If the package's maintainer
# scripts start a system redis-server anyway, it is stopped by the PID in its
# pid file so that nothing keeps port 6379.
set -euo pipefail
exec </dev/null

log() { printf 'install-redis-test-deps: %s\n' "$*"; }

SERVER=/usr/bin/redis-server

. "$(dirname "$0")/lib/debian-packages.sh"

stop_system_redis() {
  local pidfile pid
  for pidfile in /run/redis/redis-server.pid /var/run/redis/redis-server.pid; do
    [ -r "$pidfile" ] || continue
    pid=$(tr -dc '0-9' <"$pidfile" || true)
    [ -n "$pid" ] || continue
    if [ -d "/proc/$pid" ] && grep -q redis "/proc/$pid/comm" 2>/dev/null; then
      log "stopping the system redis-server (pid $pid) started by the package"
      "${SUDO[@]}" kill -TERM "$pid" || true
      for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      if [ -d "/proc/$pid" ]; then log "redis-server $pid still alive; SIGKILL"; "${SUDO[@]}" kill -KILL "$pid" || true; fi
    fi
  done
}

if pkg_installed redis-server && [ -x "$SERVER" ]; then
  log "redis-server: already installed ($SERVER)"
else
  log "missing: redis-server"
  install_packages redis-server
fi

stop_system_redis

if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :6379' 2>/dev/null | grep -q .; then
  log "WARNING: something listens on port 6379 (the tests do not use it):"; ss -Hltnp 'sport = :6379' || true
fi

[ -x "$SERVER" ] || { log "ERROR: $SERVER missing after install"; exit 1; }
log "$("$SERVER" --version | head -n1): ready"
