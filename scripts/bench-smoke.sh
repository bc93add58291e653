#!/usr/bin/env bash
# Every benchmark in its tiny mode, a few seconds each: proves they run, measures nothing; fails
# (set -e) as soon as one of them crashes. CI runs it after the tests (.ci/run).
# Usage: npm run bench:smoke   (add a line here for each new benchmark: bench/*.mjs and
#        packages/*/bench/*.mjs; bench/memory-run, rss, ttfc-run and sample-tree are helpers that
#        backup.mjs runs, packages/vault/bench/serve.mjs is the vault benches' helper)
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
node bench/backup.mjs --size 8MiB --big 0 --out "$out/backup"
node bench/cloud.mjs --size 8MiB --out "$out/cloud"
node bench/migrate.mjs --size 16MiB --out "$out/migrate"
node bench/browser.mjs --size 4MiB --video 16MiB
