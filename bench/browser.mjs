#!/usr/bin/env node
// Backup throughput in headless Chromium (the web app's code: media streamed from the app server,
// encrypted with Web Crypto in the page) beside the same backup in Node, in the same run, on the
// same generated chat data (default 200 MiB); the app's restore of that data on a new device, with
// its time to first chat (the chats shown, the message database read in the page) beside the
// whole restore (spec/format.md §6.3; target: at most 10%); then the renderer's peak RSS (VmHWM in
// /proc, pid from CDP) while the app backs up one large video (default 2 GiB; target: under
// 500 MB), beside the renderer before the backup.
//
//   node bench/browser.mjs [--size 200MiB] [--runs 1] [--video 2GiB]
//   node bench/browser.mjs --size 4MiB --video 64MiB      # a quick run (seconds)
//
// Needs `npx tsc -b` first and /usr/bin/chromium. Data is kept in bench/out/web-<size>/ between runs.
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { backup, generateBackupKey, MemoryStorage, Repository, webCryptoProvider } from '../packages/core/dist/src/index.js';
import { inlineCodec } from '../packages/core/dist/src/adapters.js';
import { FolderSource, LocalStorage, nodeCryptoProvider, workerCodec } from '../packages/node/dist/src/index.js';
import { formatSize, parseSize } from '../packages/sample/dist/src/index.js';
import { startApp } from '../apps/web/dist/src/server/app.js';
import { CHROMIUM_ARGS, newDevice, rendererMemory, signInWithPasskey, signUp, syncPasskeys, writeVideo } from '../apps/web/dist/test/helpers.js';

/** Keeps a data folder's generated phone, and nothing else: accounts, vault and store start afresh. */
async function fresh(dir) {
  for (const part of ['vault', 'realm-2', 'realm-3', 'cloud', 'auth', 'accounts.sqlite', 'accounts.sqlite-wal', 'accounts.sqlite-shm']) await rm(join(dir, part), { recursive: true, force: true });
}

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: v } = parseArgs({ options: { size: { type: 'string', default: '200MiB' }, runs: { type: 'string', default: '1' }, video: { type: 'string', default: '2GiB' } } });
const size = parseSize(v.size);
const runs = Number(v.runs);
const dataDir = join(root, 'bench', 'out', `web-${v.size}`);
const MiB = 2 ** 20;

// The page side: the app's own PhoneSource and HttpStorage, bundled like the app.
const pageJs = (
  await build({
    stdin: {
      contents: `
        import { backup, generateBackupKey, MemoryStorage, Repository, webCryptoProvider } from '@coffer/core';
        import { PhoneSource } from './device.js';
        import { HttpStorage } from '@coffer/http';
        import { workerCodec } from './worker-codec.js';
        window.runBench = async (target, account, codecKind) => {
          const storage = target === 'memory' ? new MemoryStorage() : new HttpStorage(new URL('/store/' + account + '/', location.href).href);
          const repo = await Repository.init(storage, webCryptoProvider, generateBackupKey(webCryptoProvider));
          const codec = codecKind === 'workers' ? workerCodec(repo.keys, repo.config.segmentSize) : undefined;
          const t0 = performance.now();
          const r = await backup(repo, new PhoneSource(), codec ? { codec } : {});
          const ms = performance.now() - t0;
          await codec?.close();
          return { ms, bytes: r.bytes, files: r.files };
        };
        window.benchReady = true;`,
      resolveDir: join(root, 'apps', 'web', 'src', 'browser'),
      loader: 'ts',
    },
    bundle: true, format: 'esm', platform: 'browser', target: 'chrome110', write: false, logLevel: 'silent',
  })
).outputFiles[0].text;

/** On the Backups screen of a signed-in page showing the phone's chats: turns backup on with a recovery key; returns the key. */
async function turnOnWithRecoveryKey(page) {
  await page.getByRole('button', { name: 'Backups' }).click();
  await page.getByLabel('A 64-digit recovery key').check();
  await page.getByRole('button', { name: 'Create recovery key' }).click();
  const key = await page.locator('#recovery-key').textContent();
  await page.getByLabel('To confirm you saved it, type the recovery key again').fill(key);
  await page.getByRole('button', { name: 'Turn on encrypted backup' }).click();
  await page.getByText('Encrypted backup is on.').waitFor();
  return key;
}

/**
 * The app backs up the phone, then a new device (a synced passkey) restores it with the recovery
 * key: time to first chat and the whole restore, from the page's own marks.
 */
async function appRestore(browser, url, account) {
  const phone = await newDevice(browser, url);
  await signUp(phone.page, account);
  await phone.page.getByRole('button', { name: "Use this phone's chats" }).click();
  const key = await turnOnWithRecoveryKey(phone.page);
  await phone.page.getByRole('button', { name: 'Back up now' }).click();
  await phone.page.getByText('Backup #1 done').or(phone.page.getByText('The backup failed')).waitFor({ timeout: 3_600_000 });
  if (await phone.page.getByText('The backup failed').count()) throw new Error(await phone.page.locator('main .error').textContent());
  const fresh = await newDevice(browser, url);
  await syncPasskeys(phone, fresh);
  await signInWithPasskey(fresh.page, account);
  await fresh.page.getByRole('button', { name: 'Restore on a new device' }).click();
  await fresh.page.getByLabel('My 64-digit recovery key').check();
  await fresh.page.getByLabel('Recovery key (64 digits; spaces and dashes are ignored)').fill(key);
  await fresh.page.getByRole('button', { name: 'Restore' }).click();
  await fresh.page.locator('main[data-ready=true] #restored').or(fresh.page.locator('#restore-error:not(:empty)')).waitFor({ timeout: 3_600_000 });
  // On success the restore screen (and its #restore-error) is gone: no waiting for it.
  const failed = (await fresh.page.locator('#restore-error').count()) ? await fresh.page.locator('#restore-error').textContent() : null;
  if (failed) throw new Error(`the app's restore failed: ${failed}`);
  const marks = await fresh.page.evaluate(() => performance.getEntriesByType('mark').map((m) => [m.name, m.startTime]));
  const at = (name) => marks.find(([n, t]) => n === name && t >= start)?.[1];
  const start = marks.find(([n]) => n === 'coffer:restore-start')[1];
  const first = at('coffer:chats-shown') - start;
  const full = at('coffer:restored') - start;
  const database = (at('coffer:database-verified') ?? NaN) - start;
  await fresh.context.close();
  await phone.context.close();
  return { first, database, full };
}

console.log(`generating or reusing ${v.size} of chat data in ${dataDir} ...`);
await fresh(dataDir);
const app = await startApp({ dataDir, sampleBytes: size, seed: 'bench', extraScripts: { '/bench.js': pageJs }, log: () => {} });
const launch = () => chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', ...CHROMIUM_ARGS] });
const browser = await launch();
const chromiumVersion = browser.version();
const rows = [];
const restores = [];
const rate = (bytes, ms) => bytes / MiB / (ms / 1000);
const runId = Date.now().toString(36);
try {
  // The store and the phone serve signed-in accounts only: sign up with a (virtual) passkey.
  const { page } = await newDevice(browser, app.url);
  await signUp(page, `bench-${runId}@example`);
  await page.goto(`${app.url}/harness.html?script=/bench.js`);
  await page.waitForFunction(() => window.benchReady === true);
  for (let run = 1; run <= runs; run++) {
    for (const [target, codecKind, what] of [
      ['http', 'workers', 'Chromium: app server -> page (Web Workers, the app) -> HTTP object store'],
      ['memory', 'workers', 'Chromium: app server -> page (Web Workers) -> in-page memory store'],
      ['memory', 'inline', 'Chromium: app server -> page (main thread) -> in-page memory store'],
    ]) {
      rows.push({ run, what, ...(await page.evaluate(([t, a, c]) => window.runBench(t, a, c), [target, `bench-${runId}@example/run-${run}-${codecKind}`, codecKind])) });
      console.log(`  ${what}: ${(rows.at(-1).ms / 1000).toFixed(2)} s`);
    }

    const source = new FolderSource(app.phoneDir);
    for (const [what, make, storage] of [
      ['Node: folder -> Web Crypto on the main thread -> memory store', (repo) => inlineCodec(webCryptoProvider, repo.keys, repo.config.segmentSize), () => new MemoryStorage()],
      ['Node: folder -> OpenSSL worker threads (the CLI) -> memory store', (repo) => workerCodec(repo.keys, repo.config), () => new MemoryStorage()],
      ['Node: folder -> OpenSSL worker threads (the CLI) -> local folder', (repo) => workerCodec(repo.keys, repo.config), async () => {
        const dir = join(dataDir, 'node-folder-store');
        await rm(dir, { recursive: true, force: true });
        return LocalStorage.open(dir, { create: true });
      }],
    ]) {
      const crypto = what.includes('Web Crypto') ? webCryptoProvider : nodeCryptoProvider;
      const repo = await Repository.init(await storage(), crypto, generateBackupKey(crypto));
      const codec = make(repo);
      const t0 = performance.now();
      const r = await backup(repo, source, { codec });
      const ms = performance.now() - t0;
      await codec.close();
      rows.push({ run, what, ms, bytes: r.bytes, files: r.files });
    }
    restores.push({ run, ...(await appRestore(browser, app.url, `restore-${runId}-${run}@example`)) });
  }
} finally {
  await browser.close();
  await app.close();
}

// Memory: the app itself (Backups screen) backs up a phone whose only media is one large video,
// in a browser of its own, so that VmHWM is this backup's peak.
const videoBytes = parseSize(v.video);
const memDir = join(root, 'bench', 'out', `web-memory-${v.video}`);
const videoFile = join(memDir, 'phone', 'media', 'Video', 'Big', 'VID-big.mp4');
if (!existsSync(videoFile) || (await stat(videoFile)).size !== videoBytes) {
  console.log(`writing a ${v.video} video in ${memDir} ...`);
  await rm(memDir, { recursive: true, force: true });
  await startApp({ dataDir: memDir, sampleBytes: 256 * 1024, seed: 'bench', log: () => {} }).then((a) => a.close());
  await mkdir(join(memDir, 'phone', 'media', 'Video', 'Big'), { recursive: true });
  await writeVideo(videoFile, videoBytes);
}
await fresh(memDir);
const memApp = await startApp({ dataDir: memDir, sampleBytes: 256 * 1024, seed: 'bench', log: () => {} });
const memBrowser = await launch();
let memory;
try {
  const { page } = await newDevice(memBrowser, memApp.url);
  await signUp(page, `memory-${runId}@example`);
  await page.getByRole('button', { name: "Use this phone's chats" }).click();
  await turnOnWithRecoveryKey(page);
  const before = Math.max(...(await rendererMemory(memBrowser)).map((r) => r.rss));
  const t0 = performance.now();
  await page.getByRole('button', { name: 'Back up now' }).click();
  await page.getByText('Backup #1 done').waitFor({ timeout: 3_600_000 });
  const ms = performance.now() - t0;
  const peak = Math.max(...(await rendererMemory(memBrowser)).map((r) => r.peak));
  memory = { before, peak, ms };
} finally {
  await memBrowser.close();
  await memApp.close();
}
console.log(`\nbackup of ${formatSize(rows[0].bytes)} of chat data (${rows[0].files} files; media and the message database), Chromium ${chromiumVersion}, Node ${process.version}\n`);
for (const r of rows) {
  console.log(
    `run ${r.run}  ${r.what.padEnd(72)} ${(r.ms / 1000).toFixed(2).padStart(6)} s  ${rate(r.bytes, r.ms).toFixed(0).padStart(5)} MiB/s`,
  );
}
for (const r of restores) {
  console.log(
    `run ${r.run}  the app's restore on a new device (recovery key; HTTP store -> Web Workers -> OPFS): time to first chat ${(r.first / 1000).toFixed(2)} s ` +
      `(database verified at ${(r.database / 1000).toFixed(2)} s), ` +
      `whole restore ${(r.full / 1000).toFixed(2)} s (${rate(rows[0].bytes, r.full).toFixed(0)} MiB/s); first chat at ${((100 * r.first) / r.full).toFixed(1)}% of it (target <= 10%)`,
  );
}
const ratio = (a, b) => (rate(a.bytes, a.ms) / rate(b.bytes, b.ms)).toFixed(2);
const pick = (run, prefix) => rows.find((r) => r.run === run && r.what.startsWith(prefix));
console.log(
  `\nthe app backing up one ${v.video} video (HTTP store, Web Workers): renderer peak RSS ${(memory.peak / 1e6).toFixed(0)} MB ` +
    `(${(memory.before / 1e6).toFixed(0)} MB before the backup; target < 500 MB: ${memory.peak < 500e6 ? 'met' : 'NOT met'}), ` +
    `${rate(videoBytes, memory.ms).toFixed(0)} MiB/s`,
);
for (let run = 1; run <= runs; run++) {
  console.log(
    `run ${run}: Chromium to the HTTP store / the CLI's path to a local folder: ${ratio(pick(run, 'Chromium: app server -> page (Web Workers, the app)'), pick(run, 'Node: folder -> OpenSSL worker threads (the CLI) -> local'))}x; ` +
      `Web Crypto on one thread, Chromium / Node (memory stores): ${ratio(pick(run, 'Chromium: app server -> page (main thread)'), pick(run, 'Node: folder -> Web Crypto'))}x`,
  );
}
