#!/usr/bin/env node
// Backup throughput in headless Chromium (the web app's code: media fetched from the app server,
// chunked with Blob.slice, encrypted with Web Crypto in the page) beside the same backup in Node,
// in the same run, on the same generated chat data (default 200 MiB).
//
//   node bench/browser.mjs [--size 200MiB] [--runs 1]
//
// Needs `npx tsc -b` first and /usr/bin/chromium. Data is kept in bench/out/web-<size>/ between runs.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { backup, generateBackupKey, inlineCodec, MemoryStorage, Repository, webCryptoProvider } from '../packages/core/dist/src/index.js';
import { FolderSource, LocalStorage, nodeCryptoProvider, workerCodec } from '../packages/node/dist/src/index.js';
import { formatSize, parseSize } from '../packages/sample/dist/src/index.js';
import { startApp } from '../apps/web/dist/src/server/app.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: v } = parseArgs({ options: { size: { type: 'string', default: '200MiB' }, runs: { type: 'string', default: '1' } } });
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
        import { HttpStorage } from './http-storage.js';
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

console.log(`generating or reusing ${v.size} of chat data in ${dataDir} ...`);
const app = await startApp({ dataDir, sampleBytes: size, seed: 'bench', extraScripts: { '/bench.js': pageJs } });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const chromiumVersion = browser.version();
const rows = [];
const rate = (bytes, ms) => bytes / MiB / (ms / 1000);
try {
  const page = await browser.newPage();
  await page.goto(`${app.url}/harness.html?script=/bench.js`);
  await page.waitForFunction(() => window.benchReady === true);
  for (let run = 1; run <= runs; run++) {
    for (const [target, codecKind, what] of [
      ['http', 'workers', 'Chromium: app server -> page (Web Workers, the app) -> HTTP object store'],
      ['memory', 'workers', 'Chromium: app server -> page (Web Workers) -> in-page memory store'],
      ['memory', 'inline', 'Chromium: app server -> page (main thread) -> in-page memory store'],
    ]) {
      await rm(join(app.cloudDir, `bench-${run}`), { recursive: true, force: true });
      rows.push({ run, what, ...(await page.evaluate(([t, a, c]) => window.runBench(t, a, c), [target, `bench-${run}`, codecKind])) });
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
  }
} finally {
  await browser.close();
  await app.close();
}
console.log(`\nbackup of ${formatSize(rows[0].bytes)} of chat data (${rows[0].files} files; media and the message database), Chromium ${chromiumVersion}, Node ${process.version}\n`);
for (const r of rows) {
  console.log(
    `run ${r.run}  ${r.what.padEnd(72)} ${(r.ms / 1000).toFixed(2).padStart(6)} s  ${rate(r.bytes, r.ms).toFixed(0).padStart(5)} MiB/s`,
  );
}
const ratio = (a, b) => (rate(a.bytes, a.ms) / rate(b.bytes, b.ms)).toFixed(2);
const pick = (run, prefix) => rows.find((r) => r.run === run && r.what.startsWith(prefix));
for (let run = 1; run <= runs; run++) {
  console.log(
    `run ${run}: Chromium to the HTTP store / the CLI's path to a local folder: ${ratio(pick(run, 'Chromium: app server -> page (Web Workers, the app)'), pick(run, 'Node: folder -> OpenSSL worker threads (the CLI) -> local'))}x; ` +
      `Web Crypto on one thread, Chromium / Node (memory stores): ${ratio(pick(run, 'Chromium: app server -> page (main thread)'), pick(run, 'Node: folder -> Web Crypto'))}x`,
  );
}
