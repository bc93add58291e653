#!/usr/bin/env bash
# Every benchmark in its tiny mode, a second or two each: proves they run, measures nothing.
# Usage: npm run bench:smoke   (add a line here for each new benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -b
node packages/vault/bench/logins.mjs --tiny
node packages/vault/bench/multinode.mjs --tiny
