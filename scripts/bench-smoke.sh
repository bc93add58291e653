#!/usr/bin/env bash
# Every benchmark in its tiny mode, a few seconds each: proves they run, measures nothing.
# Usage: npm run bench:smoke   (add a line here for each new benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -b
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node packages/vault/bench/logins.mjs --tiny
node packages/vault/bench/multinode.mjs --tiny
node packages/vault/bench/recoveries.mjs --tiny
node bench/argon2.mjs --smoke --runs 1
node bench/small-files.mjs --files 200 --out "$out"
