/**
 * The isomorphic claim, checked: packages/core's own test files, bundled for the browser, plus the
 * HTTP store and the vault client against the real vault, all run in headless Chromium.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundleCoreSuite, launchChromium, startTestApp } from './helpers.js';

interface Result {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
}

test('core test suite in headless Chromium', async (t) => {
  const [app, browser] = await Promise.all([startTestApp({ extraScripts: { '/test/core-suite.js': await bundleCoreSuite() } }), launchChromium()]);
  t.after(async () => {
    await browser.close();
    await app.dispose();
  });
  const page = await browser.newPage();
  const consoleErrors: string[] = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${app.url}/harness.html?script=/test/core-suite.js`);
  await page.waitForFunction(() => (window as unknown as { __coreDone?: boolean }).__coreDone === true, undefined, { timeout: 120_000 });
  const { results, error } = await page.evaluate(() => {
    const w = window as unknown as { __coreResults: Result[]; __coreError?: string };
    return { results: w.__coreResults, error: w.__coreError };
  });
  assert.equal(error, undefined, `the suite stopped: ${error}`);
  assert.deepEqual(consoleErrors, []);
  for (const r of results) {
    await t.test(`[chromium] ${r.name}`, () => {
      if (!r.ok) assert.fail(r.error);
    });
  }
  const names = results.map((r) => r.name).join('\n');
  // The suite must really have run each part (a silently empty suite passes nothing).
  for (const part of ['core/keys: recovery key', 'core/object: objects round-trip', 'core/object: every failure class', 'core/engine: memory storage conformance', 'core/engine: backup then restore', 'core/juicebox: oprf: the SDK vectors', 'core/juicebox: pin hashing: the SDK vector', 'core/juicebox: noise NK', 'web: http store conformance', 'web: vault client in the browser', 'web: backup to the HTTP store']) {
    assert.ok(names.includes(part), `no browser case named "${part}..."`);
  }
  assert.ok(results.every((r) => r.ok), `${results.filter((r) => !r.ok).length} browser cases failed`);
});
