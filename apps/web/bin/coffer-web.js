#!/usr/bin/env node
// Coffer Messenger's server (`npm start`).
import { main } from '../dist/src/server/main.js';
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`coffer-web: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
