#!/usr/bin/env bash
# Sets up everything fleetguard needs on a fresh Debian-like machine: Debian packages
# (when root), a virtual environment in .venv, and the locked Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(python3-venv openssl ca-certificates mosquitto softhsm2 opensc busybox-static openssh-server lighttpd lighttpd-mod-openssl vsftpd snmpd
  nmap ncat hydra hping3 iperf3 socat stress-ng iproute2 rsyslog rsyslog-openssl)

missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The test lab starts its own daemons; keep apt from starting system ones
    # (sshd, lighttpd, vsftpd, snmpd, rsyslog, iperf3) on standard ports while installing them.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      guard=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod 755 "$guard"
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ -n "$guard" ] && rm -f "$guard"
    [ "${status:-0}" = 0 ] || exit "$status"
  else
    echo "setup: missing Debian packages (not root, not installing): ${missing[*]}" >&2
  fi
fi

# The dashboard's browser tests use Debian's Chromium; without it they skip, so a failed
# download here is a warning, not a failed setup.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (dashboard browser tests)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
    || echo "setup: chromium could not be installed; browser tests will skip" >&2
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
.venv/bin/python -m pip install -q --disable-pip-version-check \
  -c requirements.lock -e ".[server,agent,dev]"
echo "setup: ready (.venv)"
