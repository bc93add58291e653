/**
 * A phone with many large files backs up through the app without stalling, and every byte is
 * right. The backup reads many files at once; a response streamed from the app server and read
 * only as the backup's memory budget allows holds one of the browser's six connections to the
 * server, and when every connection was held so, the uploads that free the budget could not start
 * (found at 200 MiB in bench/browser.mjs). The page now drops a response left waiting and reads the
 * file on from where it stopped (spec/web-app.md §9): the restored files must equal the phone's.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { parseRecoveryKey, Repository, restore, webCryptoProvider } from '@coffer/core';
import { MemoryTarget } from '@coffer/core/testing';
import { launchChromium, newDevice, signUp, startTestApp, storeOf, writeVideo } from './helpers.js';

let app: Awaited<ReturnType<typeof startTestApp>>;
let browser: Browser;
const FILES = 8;
const SIZE = 12 * 2 ** 20 + 12345;

before(async () => {
  [app, browser] = await Promise.all([startTestApp({ sampleBytes: 256 * 1024 }), launchChromium()]);
  await mkdir(join(app.phoneDir, 'media', 'Video', 'Many'), { recursive: true });
  for (let i = 0; i < FILES; i++) await writeVideo(join(app.phoneDir, 'media', 'Video', 'Many', `VID-${i}.mp4`), SIZE);
});
after(async () => {
  await browser?.close();
  await app?.dispose();
});

test(`${FILES} files of ${(SIZE / 2 ** 20).toFixed(1)} MiB back up through the app without stalling, every byte right`, async () => {
  const { page, context } = await newDevice(browser, app.url);
  // Reads that go on from where a dropped response stopped.
  let resumed = 0;
  page.on('request', (r) => void (r.url().includes('/api/phone/file/') && /^bytes=[1-9]\d*-$/.test(r.headers()['range'] ?? '') && resumed++));
  await signUp(page, 'many@example');
  await page.getByRole('button', { name: "Use this phone's chats" }).click();
  await page.getByRole('button', { name: 'Backups' }).click();
  await page.getByLabel('A 64-digit recovery key').check();
  await page.getByRole('button', { name: 'Create recovery key' }).click();
  const key = (await page.locator('#recovery-key').textContent())!;
  await page.getByLabel('To confirm you saved it, type the recovery key again').fill(key);
  await page.getByRole('button', { name: 'Turn on encrypted backup' }).click();
  await page.getByText('Encrypted backup is on.').waitFor();
  await page.getByRole('button', { name: 'Back up now' }).click();
  await page.getByText('Backup #1 done').waitFor({ timeout: 60_000 });
  // Every byte of every file was read (a short read would make the backup smaller).
  const state = await page.evaluate(() => JSON.parse(localStorage.getItem('coffer.device:many@example')!) as { backup: { lastBytes: number; lastFiles: number } });
  assert.ok(state.backup.lastBytes > FILES * SIZE && state.backup.lastFiles > FILES, JSON.stringify(state.backup));
  assert.ok(resumed > 0, 'no response was dropped and read on: the test did not exercise what it is for');
  // The backup holds the phone's bytes: restored here, from the store, with the recovery key.
  const out = new MemoryTarget();
  await restore(await Repository.open(await storeOf(context, app.url, 'many@example'), webCryptoProvider, parseRecoveryKey(key)), out);
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  for (let i = 0; i < FILES; i++) {
    const path = `media/Video/Many/VID-${i}.mp4`;
    assert.equal(sha(out.committed!.get(path)!.data!), sha(await readFile(join(app.phoneDir, path))), path);
  }
  await context.close();
});
