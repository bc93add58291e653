#!/usr/bin/env bash
# Installs the system packages Coffer's tests need, when they are missing.
# Idempotent; run by `npm test` (scripts/test.sh) and safe to run by hand as root.
# `setup.sh interop` also installs Ceph (radosgw, a monitor, an OSD) for `npm run test:interop`.
set -euo pipefail

need=()
# command-or-file  debian-package
check() { command -v "$1" >/dev/null 2>&1 || [ -e "$1" ] || need+=("$2"); }

# (packages are added here as tests need them)
check sqlite3 sqlite3
check softhsm2-util softhsm2
check /usr/lib/postgresql postgresql
check /usr/bin/chromium chromium
# WebDAV servers people run (packages/node/test/interop-webdav.test.ts starts them on loopback).
check /usr/lib/apache2/modules/mod_dav_fs.so apache2
check /usr/sbin/nginx nginx
check /usr/lib/nginx/modules/ngx_http_dav_ext_module.so libnginx-mod-http-dav-ext
check rclone rclone
if [ "${1:-}" = interop ]; then
  # Ceph's S3 gateway on a one-node cluster (packages/node/test/ceph.interop.ts).
  check /usr/bin/ceph-mon ceph-mon
  check /usr/bin/ceph-osd ceph-osd
  check /usr/bin/radosgw radosgw
fi
check openssl openssl   # TLS certificates in the vault tests and docs/operating.md
check curl curl         # docs/operating.md, run by its test

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  # Packaged services (apache2, nginx, ceph) must not start on install: the tests start their own.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null && $SUDO chmod 755 $policy
    trap '$SUDO rm -f $policy' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
