#!/usr/bin/env bash
# Installs the system packages Coffer's tests need, when they are missing.
# Idempotent; run by `npm test` (scripts/test.sh) and safe to run by hand as root.
set -euo pipefail

need=()
# command-or-file  debian-package
check() { command -v "$1" >/dev/null 2>&1 || [ -e "$1" ] || need+=("$2"); }

# (packages are added here as tests need them)
check sqlite3 sqlite3
check softhsm2-util softhsm2
check /usr/lib/postgresql postgresql
check /usr/bin/chromium chromium
check openssl openssl   # TLS certificates in the vault tests and docs/operating.md
check curl curl         # docs/operating.md, run by its test

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
