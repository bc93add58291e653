#!/usr/bin/env node
// Standalone entry for `coffer vault ...` (the `coffer` CLI dispatches to the same vaultCommand).
import { vaultCommand } from '../dist/src/cli.js';
process.exitCode = await vaultCommand(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
