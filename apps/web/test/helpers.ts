/** Test helpers: the app server on a temporary folder, headless Chromium, the browser core suite bundle. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { startApp, type AppOptions, type AppServer } from '../src/server/app.js';
import { BROWSER_BUILD } from '../src/server/bundle.js';

/** apps/web (tests run from apps/web/dist/test). */
export const WEB_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_ROOT = join(WEB_ROOT, '..', '..');
export const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

/**
 * Debian's Chromium, headless. Playwright gives every launch a fresh temporary --user-data-dir of
 * its own (it refuses one in `args`) and deletes it on close.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env['COFFER_CHROMIUM'] ?? '/usr/bin/chromium', headless: true, args: ['--headless', ...CHROMIUM_ARGS], timeout: 30_000 });
}

export async function startTestApp(o: Partial<AppOptions> = {}): Promise<AppServer & { dispose(): Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-web-test-'));
  const app = await startApp({ dataDir, sampleBytes: 2 * 2 ** 20, seed: 'web-test', insecureTestOnlyFastKeyStretching: true, ...o });
  return {
    ...app,
    async dispose() {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** packages/core's test files bundled for the browser, with Node-only imports swapped for stand-ins. */
export async function bundleCoreSuite(): Promise<string> {
  const esbuild = await import('esbuild');
  const browserDir = join(WEB_ROOT, 'test', 'browser');
  const swap: Record<string, string> = {
    'node:test': join(browserDir, 'shims', 'node-test.ts'),
    'node:assert/strict': join(browserDir, 'shims', 'assert.ts'),
    'node:assert': join(browserDir, 'shims', 'assert.ts'),
    'node:util': join(browserDir, 'shims', 'util.ts'),
  };
  const r = await esbuild.build({
    ...BROWSER_BUILD,
    entryPoints: [join(browserDir, 'core-suite.ts')],
    absWorkingDir: WEB_ROOT,
    plugins: [
      {
        name: 'browser-stand-ins',
        setup(b) {
          b.onResolve({ filter: /^node:/ }, (a) => {
            const to = swap[a.path];
            return to ? { path: to } : { errors: [{ text: `${a.path} (imported by ${a.importer}) has no browser stand-in` }] };
          });
          b.onResolve({ filter: /^\.\/helpers\.js$/ }, (a) =>
            a.importer.includes(join('packages', 'core', 'test')) ? { path: join(browserDir, 'helpers.ts') } : undefined,
          );
        },
      },
    ],
  });
  return r.outputFiles[0]!.text;
}
