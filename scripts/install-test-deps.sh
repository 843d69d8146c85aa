#!/usr/bin/env bash
# Installs the Debian packages the real-MTA tests need (Postfix, swaks, unshare,
# and a private, extracted-only sendmail).
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
  # builds the private sendmail.cf from the extracted sendmail-cf files
  [m4]=/usr/bin/m4
  # SMTP AUTH in the private Postfix (containment of authenticated senders):
  # saslpasswd2 writes the private sasldb, the modules give PLAIN/LOGIN and sasldb
  [sasl2-bin]=/usr/sbin/saslpasswd2
  [libsasl2-modules]=/usr/share/doc/libsasl2-modules/copyright
  [libsasl2-modules-db]=/usr/share/doc/libsasl2-modules-db/copyright
)

. "$(dirname "$0")/lib/debian-packages.sh"
find_missing

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
  log "preseeding debconf: postfix/main_mailer_type = No configuration"
  printf '%s\n' \
    'postfix postfix/main_mailer_type select No configuration' \
    'postfix postfix/mailname string postfix.test.invalid' |
    "${SUDO[@]}" debconf-set-selections
  install_packages "${missing[@]}"
fi

stop_system_postfix

# ---------------------------------------------------------------------------
# sendmail, extracted only (never installed).
#
# sendmail-bin and postfix both provide mail-transport-agent and conflict, so the
# sendmail packages are downloaded with `apt-get download` and unpacked with
# `dpkg-deb -x` into $SENDMAIL_DIR/root (nothing of them lands in /etc, /usr or
# the dpkg database). The tests (packages/policy-daemon/test/support/sendmail.ts)
# run $SENDMAIL_DIR/root/usr/libexec/sendmail/sendmail with a private .cf built
# by m4 from $SENDMAIL_DIR/root/usr/share/sendmail/cf. Only sendmail-bin's shared
# library dependencies (libwrap0, ...) are apt-get installed, as ordinary
# packages. $SENDMAIL_DIR/debs keeps the downloaded .debs; $SENDMAIL_DIR/.complete
# marks a finished unpack (package versions).
#
# Never run the extracted binary outside a private namespace: with an
# unqualified host name it queries DNS and sleeps 60 s before reading its .cf.
SENDMAIL_DIR=${LEVEE_SENDMAIL_DIR:-/opt/levee-test/sendmail}
SENDMAIL_PKGS=(sendmail-bin sendmail-cf sendmail-base)
SENDMAIL_BIN=$SENDMAIL_DIR/root/usr/libexec/sendmail/sendmail
SENDMAIL_CF_M4=$SENDMAIL_DIR/root/usr/share/sendmail/cf/m4/cf.m4

apt_updated=
apt_update_once() {
  [ -z "$apt_updated" ] || return 0
  log "apt-get update"
  "${SUDO[@]}" apt-get update -q
  apt_updated=1
}
# (the install of missing packages above already ran apt-get update if it ran)
[ "${#missing[@]}" -eq 0 ] || apt_updated=1

sendmail_unpacked() {
  [ -f "$SENDMAIL_DIR/.complete" ] && [ -x "$SENDMAIL_BIN" ] && [ -f "$SENDMAIL_CF_M4" ] &&
    for p in "${SENDMAIL_PKGS[@]}"; do compgen -G "$SENDMAIL_DIR/debs/${p}_*.deb" >/dev/null || return 1; done
}

if sendmail_unpacked; then
  log "sendmail: already unpacked in $SENDMAIL_DIR ($(tr '\n' ' ' <"$SENDMAIL_DIR/.complete"))"
else
  log "sendmail: downloading ${SENDMAIL_PKGS[*]} (extract only; they conflict with postfix)"
  "${SUDO[@]}" mkdir -p "$SENDMAIL_DIR"
  "${SUDO[@]}" rm -rf "$SENDMAIL_DIR"/.unpack.* # left by an interrupted earlier run
  work=$("${SUDO[@]}" mktemp -d "$SENDMAIL_DIR/.unpack.XXXXXX")
  "${SUDO[@]}" mkdir -p "$work/debs" "$work/root"
  download() { (cd "$work/debs" && "${SUDO[@]}" apt-get download -q -o APT::Sandbox::User=root "${SENDMAIL_PKGS[@]}"); }
  if ! download; then apt_update_once; download; fi
  for deb in "$work"/debs/*.deb; do
    log "sendmail: extracting $(basename "$deb")"
    "${SUDO[@]}" dpkg-deb -x "$deb" "$work/root"
  done
  for p in "${SENDMAIL_PKGS[@]}"; do
    dpkg-deb --show --showformat='${Package}=${Version}\n' "$work"/debs/"${p}"_*.deb
  done | "${SUDO[@]}" tee "$work/.complete" >/dev/null
  # Replace any earlier (partial) unpack in one go.
  "${SUDO[@]}" rm -rf "$SENDMAIL_DIR/root" "$SENDMAIL_DIR/debs" "$SENDMAIL_DIR/.complete"
  "${SUDO[@]}" mv "$work/root" "$work/debs" "$SENDMAIL_DIR/"
  "${SUDO[@]}" mv "$work/.complete" "$SENDMAIL_DIR/.complete"
  "${SUDO[@]}" rm -rf "$work"
fi

# sendmail-bin's run-time dependencies (shared libraries, procps), as ordinary
# packages; the sendmail-* packages themselves stay extract-only.
sm_deps=()
while IFS= read -r dep; do
  [ -n "$dep" ] || continue
  case "$dep" in sendmail-*) continue ;; esac
  pkg_installed "$dep" || sm_deps+=("$dep")
done < <(dpkg-deb -f "$SENDMAIL_DIR"/debs/sendmail-bin_*.deb Depends |
  tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g')
if [ "${#sm_deps[@]}" -gt 0 ]; then
  log "sendmail: installing run-time dependencies ${sm_deps[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update_once
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${sm_deps[@]}"
fi

if ldd "$SENDMAIL_BIN" | grep -q 'not found'; then
  log "ERROR: $SENDMAIL_BIN misses shared libraries:"; ldd "$SENDMAIL_BIN" | grep 'not found' >&2
  exit 1
fi

# Does the binary have MILTER compiled in? `sendmail -d0.1 -bt` prints the
# compile options. Run it in a private mount+UTS namespace with its own
# /etc/hosts, nsswitch.conf (hosts: files) and resolv.conf (127.0.0.1) and the
# host name sendmail.test.invalid, so it neither stalls nor asks DNS.
smchk=$(mktemp -d)
trap 'rm -rf "$smchk"; if [ -n "${created_policy_rc:-}" ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi' EXIT
chmod 755 "$smchk"
printf '127.0.0.1\tlocalhost sendmail.test.invalid\n::1\tlocalhost sendmail.test.invalid\n' >"$smchk/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\n' >"$smchk/nsswitch.conf"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$smchk/resolv.conf"
: >"$smchk/empty.cf"
sm_flags=$("${SUDO[@]}" timeout 20 unshare --mount --uts /bin/sh -c '
  mount --make-rprivate / 2>/dev/null
  mount --bind "$0/hosts" /etc/hosts && mount --bind "$0/nsswitch.conf" /etc/nsswitch.conf &&
  mount --bind "$0/resolv.conf" /etc/resolv.conf && hostname sendmail.test.invalid || exit 97
  exec "$1" -C "$0/empty.cf" -d0.1 -bt </dev/null 2>&1' "$smchk" "$SENDMAIL_BIN" || true)
sm_version=$(printf '%s\n' "$sm_flags" | awk '/^Version /{print $2; exit}')
if ! printf '%s\n' "$sm_flags" | sed -n '/Compiled with:/,/^$/p' | grep -qw MILTER; then
  log "ERROR: $SENDMAIL_BIN was not compiled with MILTER (or did not run). Output of -d0.1 -bt:"
  printf '%s\n' "$sm_flags" | head -n 20 >&2
  exit 1
fi
log "sendmail ${sm_version:-?} in $SENDMAIL_DIR: MILTER compiled in"

# Check that nothing of ours or the package's listens on port 25.
if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :25' 2>/dev/null | grep -q .; then
  log "WARNING: something listens on port 25:"; ss -Hltnp 'sport = :25' || true
fi

for pkg in "${!need[@]}"; do
  [ -e "${need[$pkg]}" ] || { log "ERROR: ${need[$pkg]} missing after install"; exit 1; }
done
log "postfix $(postconf -d -h mail_version 2>/dev/null || echo '?'), sendmail ${sm_version:-?} (extracted), swaks $(swaks --version 2>/dev/null | head -n1 | awk '{print $NF}' || echo '?'): ready"
