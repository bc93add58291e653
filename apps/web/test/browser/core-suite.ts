/**
 * The core test suite in the browser: packages/core/test/*.test.ts bundled unchanged (node:test,
 * node:assert/strict, node:util and the Node-only helpers swapped for browser stand-ins by the
 * bundler), then the browser-only cases. Results land in `window.__coreResults`.
 */
import './shims/buffer.js';
import { runRegistered, type BrowserCaseResult } from './shims/node-test.js';

const results: BrowserCaseResult[] = [];
const w = window as unknown as { __coreResults?: BrowserCaseResult[]; __coreDone?: boolean; __coreError?: string };
const log = document.createElement('pre');
document.body.append(log);
const report = (r: BrowserCaseResult) => {
  results.push(r);
  log.textContent += `${r.ok ? 'ok  ' : 'FAIL'} ${r.ms} ms  ${r.name}\n${r.error ?? ''}`;
};

const suites: [string, () => Promise<unknown>][] = [
  ['core/keys: ', () => import('../../../../packages/core/test/keys.test.js')],
  ['core/object: ', () => import('../../../../packages/core/test/object.test.js')],
  ['core/manifest: ', () => import('../../../../packages/core/test/manifest.test.js')],
  ['core/engine: ', () => import('../../../../packages/core/test/engine.test.js')],
  ['core/juicebox: ', () => import('../../../../packages/core/test/juicebox.test.js')],
  ['web: ', () => import('./web-cases.js')],
];

try {
  for (const [prefix, load] of suites) {
    await load();
    await runRegistered(prefix, report);
  }
} catch (e) {
  w.__coreError = String((e as Error)?.stack ?? e);
}
w.__coreResults = results;
w.__coreDone = true;
