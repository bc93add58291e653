#!/usr/bin/env node
// Every object write ends with an fsync, which blocks one libuv thread until the disk answers; with
// 16 threads, 16 writes wait at once and the file system batches their journal commits (4 threads
// cap a backup to a local folder at about half the disk's speed). Must be set before any async I/O.
process.env.UV_THREADPOOL_SIZE ??= '16';
const args = process.argv.slice(2);
if (args[0] === 'vault') {
  // Operators' commands load only the vault (0.1 s instead of 0.5 s per command in scripts).
  const { vaultCommand } = await import('@coffer/vault/cli');
  process.exitCode = await vaultCommand(args.slice(1), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
} else {
  const { main } = await import('../dist/src/main.js');
  process.exitCode = await main(args);
}
