/** Bundles browser entry points with esbuild, in memory, when the server starts. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** apps/web (this file runs from apps/web/dist/src/server). */
export const APP_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The esbuild settings of every browser bundle (the app's, and the test suite's in apps/web/test). */
export const BROWSER_BUILD = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'chrome110',
  write: false,
  sourcemap: 'inline',
  logLevel: 'silent',
} as const;

/**
 * Build-time flag of a test bundle (spec/web-app.md §5): the page then stretches passwords with
 * Argon2id on 8 KiB, t=1, and says so on every screen. No server data can turn it on.
 */
export const INSECURE_TEST_ONLY_FLAG = '__COFFER_INSECURE_TEST_ONLY_FAST_KEY_STRETCHING__';

export async function bundle(entry: string, o: { insecureTestOnlyFastKeyStretching?: boolean } = {}): Promise<string> {
  const esbuild = await import('esbuild');
  const r = await esbuild.build({
    ...BROWSER_BUILD,
    entryPoints: [entry],
    define: { [INSECURE_TEST_ONLY_FLAG]: o.insecureTestOnlyFastKeyStretching === true ? 'true' : 'false' },
    // Node-only modules never reach the browser bundle; failing here keeps the isomorphic claim honest.
    absWorkingDir: APP_ROOT,
  });
  return r.outputFiles[0]!.text;
}
