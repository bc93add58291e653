#!/usr/bin/env bash
# The whole test suite: installs missing system packages, builds, runs every test file.
# Usage: npm test            (all)
#        npm test -- FILTER  (only test files whose path contains FILTER)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -b
mapfile -t files < <(find packages/*/dist/test apps/*/dist/test -name '*.test.js' 2>/dev/null | sort | grep -F -- "${1:-}" || true)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
exec node --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"
