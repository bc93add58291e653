#!/usr/bin/env bash
# The coffer command: generated chat data -> encrypted backup -> restore on a "new machine" that
# has only the store and the 64-digit recovery key. Needs @coffer/cli and @coffer/sample:
#
#   PATH="$PWD/node_modules/.bin:$PATH" bash examples/cli.sh [WORK_DIR]
set -euo pipefail
work="${1:-$(mktemp -d)}"
mkdir -p "$work" && cd "$work"

# Realistic chat data: a SQLite message database, photos and voice notes.
coffer-sample chat --size 1MiB --seed 7 > /dev/null

# This device turns on backups to a folder standing in for the cloud (s3://... and webdavs://...
# work the same). The recovery key is shown once; the user writes it down.
key=$(coffer init --storage cloud --profile phone --json | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => process.stdout.write(JSON.parse(s).recoveryKey))')
coffer backup chat --profile phone --quiet
coffer backup chat --profile phone --quiet   # again: nothing changed, nothing uploaded

# A new machine: no profile, only the store and the recovery key, typed on standard input.
printf '%s\n' "$key" | coffer restore restored --storage cloud --profile new-phone --recovery-key-stdin --quiet
diff -r chat restored && echo "the restored folder is identical to the original"
