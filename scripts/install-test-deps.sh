#!/usr/bin/env bash
# Installs the Debian packages the real-MTA tests need (Postfix, swaks, unshare).
#
# Idempotent and non-interactive: when everything is present it only checks and
# exits (no apt-get update). Postfix is installed *unconfigured* (debconf
# "No configuration"): the tests run private instances of their own on loopback
# ports (packages/policy-daemon/test/support/postfix.ts) and never use a system
# Postfix. If the package's maintainer scripts start a system Postfix anyway, it
# is stopped by the PID in its pid file so that nothing keeps port 25.
set -euo pipefail
exec </dev/null

log() { printf 'install-test-deps: %s\n' "$*"; }

# package -> a file that proves it is installed and usable
declare -A need=(
  [postfix]=/usr/sbin/postfix
  [swaks]=/usr/bin/swaks
  [util-linux]=/usr/bin/unshare
  [bsdutils]=/usr/bin/script
  # swaks needs it to talk to [::1]
  [libio-socket-inet6-perl]=/usr/share/perl5/IO/Socket/INET6.pm
)

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
    log "not root and no sudo: cannot install packages"; fi
fi

pkg_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing=()
for pkg in "${!need[@]}"; do
  if pkg_installed "$pkg" && [ -e "${need[$pkg]}" ]; then
    log "$pkg: already installed (${need[$pkg]})"
  else
    missing+=("$pkg")
  fi
done

stop_system_postfix() {
  # A system Postfix (from the package's postinst) would hold port 25; the tests
  # want only their private instances. Stop it by the PID in its own pid file.
  local pidfile=/var/spool/postfix/pid/master.pid pid
  [ -r "$pidfile" ] || return 0
  pid=$(tr -dc '0-9' <"$pidfile" || true)
  [ -n "$pid" ] || return 0
  if [ -d "/proc/$pid" ] && grep -q master "/proc/$pid/comm" 2>/dev/null; then
    log "stopping the system postfix master (pid $pid) started by the package"
    "${SUDO[@]}" postfix stop >/dev/null 2>&1 || "${SUDO[@]}" kill -TERM "$pid" || true
    for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then log "master $pid still alive; SIGKILL"; "${SUDO[@]}" kill -KILL "$pid" || true; fi
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  log "missing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log "preseeding debconf: postfix/main_mailer_type = No configuration"
  printf '%s\n' \
    'postfix postfix/main_mailer_type select No configuration' \
    'postfix postfix/mailname string postfix.test.invalid' |
    "${SUDO[@]}" debconf-set-selections
  # Keep maintainer scripts from starting daemons (no systemd here, but
  # invoke-rc.d honours policy-rc.d). Removed again afterwards if we created it.
  created_policy_rc=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy_rc=1
  fi
  trap 'if [ -n "${created_policy_rc:-}" ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi' EXIT
  log "apt-get update"
  "${SUDO[@]}" apt-get update -q
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

stop_system_postfix

# Check that nothing of ours or the package's listens on port 25.
if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :25' 2>/dev/null | grep -q .; then
  log "WARNING: something listens on port 25:"; ss -Hltnp 'sport = :25' || true
fi

for pkg in "${!need[@]}"; do
  [ -e "${need[$pkg]}" ] || { log "ERROR: ${need[$pkg]} missing after install"; exit 1; }
done
log "postfix $(postconf -d -h mail_version 2>/dev/null || echo '?'), swaks $(swaks --version 2>/dev/null | head -n1 | awk '{print $NF}' || echo '?'): ready"
