# Sourced by the install-*-deps.sh scripts: install Debian packages that are
# missing, without prompts and without letting their maintainer scripts start
# a system daemon. The caller defines log() first.
#
#   . "$(dirname "$0")/lib/debian-packages.sh"
#   pkg_installed NAME            true when dpkg has NAME installed
#   find_missing                  fills the array `missing` with the packages of the
#                                 caller's associative array `need` (package -> a file
#                                 that proves it installed and usable) that are not
#                                 installed, and logs the ones that are
#   install_packages NAME...      apt-get update, then apt-get install NAME...

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
    log "not root and no sudo: cannot install packages"; fi
fi

pkg_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

find_missing() {
  missing=()
  local pkg
  for pkg in "${!need[@]}"; do
    if pkg_installed "$pkg" && [ -e "${need[$pkg]}" ]; then
      log "$pkg: already installed (${need[$pkg]})"
    else
      missing+=("$pkg")
    fi
  done
}

install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  # Keep maintainer scripts from starting daemons (invoke-rc.d honours
  # policy-rc.d). Removed again at exit if we created it.
  created_policy_rc=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    created_policy_rc=1
  fi
  trap 'if [ -n "${created_policy_rc:-}" ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi' EXIT
  log "apt-get update"
  "${SUDO[@]}" apt-get update -q
  log "apt-get install $*"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
