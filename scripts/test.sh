#!/usr/bin/env bash
# The whole test suite: installs missing system packages, builds, runs every test file.
# Usage: npm test                   (all)
#        npm test -- FILTER         (only test files whose path contains FILTER)
#        npm run test:interop       (the interop suite: *.interop.js, e.g. Ceph's S3 gateway; CI runs it too)
set -euo pipefail
cd "$(dirname "$0")/.."
suffix=.test.js
if [ "${1:-}" = --interop ]; then suffix=.interop.js; shift; bash scripts/setup.sh interop; else bash scripts/setup.sh; fi
npx tsc -b
mapfile -t files < <(find packages/*/dist/test apps/*/dist/test examples/dist/test -name "*$suffix" 2>/dev/null | sort | grep -F -- "${1:-}" || true)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
exec node --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"
