/**
 * Test helpers: the app server on a temporary folder (development mode, so one-time codes land in
 * its dev inbox), headless Chromium, devices with a CDP virtual authenticator (passkeys), sign-up
 * and sign-in through the page, and the browser core suite bundle.
 */
import { randomFillSync } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';
import { HttpStorage } from '@coffer/http';
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

export async function startTestApp(o: Partial<AppOptions> = {}): Promise<AppServer & { dataDir: string; logs: string[]; dispose(): Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-web-test-'));
  const logs: string[] = [];
  const app = await startApp({ dataDir, sampleBytes: 2 * 2 ** 20, seed: 'web-test', insecureTestOnlyFastKeyStretching: true, dev: true, log: (l) => logs.push(l), ...o });
  return {
    ...app,
    dataDir,
    logs,
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

/** A browser context as a device, with a virtual platform authenticator that holds its passkeys. */
export interface Device {
  context: BrowserContext;
  page: Page;
  cdp: CDPSession;
  authenticatorId: string;
}

export async function newDevice(browser: Browser, url: string, o: { failOnPageError?: (message: string) => void } = {}): Promise<Device> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 850 } });
  const page = await context.newPage();
  if (o.failOnPageError) {
    page.on('pageerror', (e) => o.failOnPageError!(e.message));
    // Whatever the Content-Security-Policy refused (a script, a style, a picture, a worker, WebAssembly).
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) o.failOnPageError!(m.text());
    });
  }
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await page.goto(url + '/');
  return { context, page, cdp, authenticatorId };
}

/** The passkeys a device's authenticator holds (to give another device the same, as a synced passkey). */
export async function syncPasskeys(from: Device, to: Device): Promise<number> {
  const { credentials } = await from.cdp.send('WebAuthn.getCredentials', { authenticatorId: from.authenticatorId });
  for (const credential of credentials) await to.cdp.send('WebAuthn.addCredential', { authenticatorId: to.authenticatorId, credential });
  return credentials.length;
}

/** Signs up on the welcome screen; resolves on the signed-in setup screen. */
export async function signUp(page: Page, account: string): Promise<void> {
  await page.getByLabel('Account name').fill(account);
  await page.getByRole('button', { name: 'Create account with a passkey' }).click();
  await page.getByRole('heading', { name: `Welcome, ${account}` }).waitFor();
}

export async function signInWithPasskey(page: Page, account: string): Promise<void> {
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.getByText(`Signed in as ${account}`).waitFor();
}

/** The newest code the dev inbox page shows for `account`, read as a person would, in its own tab. */
export async function codeFromDevInbox(context: BrowserContext, url: string, account: string, shot?: string): Promise<string> {
  const inbox = await context.newPage();
  await inbox.goto(url + '/dev/inbox');
  const code = await inbox.locator('ol.inbox li', { has: inbox.locator('.account', { hasText: account }) }).first().locator('.code').textContent();
  if (shot) await inbox.screenshot({ path: shot, fullPage: true });
  await inbox.close();
  if (!code || !/^\d{6}$/.test(code)) throw new Error(`no code for ${account} in the dev inbox`);
  return code;
}

/** Signs in with a one-time code read from the dev inbox; resolves when signed in. */
export async function signInWithCode(page: Page, url: string, account: string, shots?: { form?: string; inbox?: string }): Promise<void> {
  await page.getByRole('button', { name: 'Sign in with a one-time code' }).click();
  await page.getByLabel('Account name').fill(account);
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.getByLabel('One-time code (6 digits)').waitFor();
  const code = await codeFromDevInbox(page.context(), url, account, shots?.inbox);
  await page.getByLabel('One-time code (6 digits)').fill(code);
  if (shots?.form) await page.screenshot({ path: shots.form, fullPage: true });
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByText(`Signed in as ${account}`).waitFor();
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The body as JSON, or null. */
  json: { error?: string; message?: string; [k: string]: unknown } | null;
  ms: number;
}

/**
 * One HTTP/1.1 request over a fresh TCP connection, written byte for byte as given: the request
 * target and the headers are not checked or escaped (for fuzzing), and `Host` is whatever
 * `headers` says (none when absent). Reads to the end of the connection.
 */
export async function rawRequest(
  port: number,
  method: string,
  target: string,
  o: { headers?: Record<string, string>; body?: Uint8Array | string } = {},
): Promise<RawResponse> {
  const { connect } = await import('node:net');
  const body = o.body === undefined ? Buffer.alloc(0) : Buffer.from(o.body);
  const lines = [`${method} ${target} HTTP/1.1`, ...Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}`), 'connection: close'];
  if (body.length > 0 || !['GET', 'HEAD'].includes(method)) lines.push(`content-length: ${body.length}`);
  const t0 = performance.now();
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), body])));
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? resolve(Buffer.concat(parts)) : reject(e)));
    s.on('close', () => resolve(Buffer.concat(parts)));
    s.setTimeout(30_000, () => s.destroy(new Error(`no answer to ${method} ${target.slice(0, 80)}`)));
  });
  const ms = performance.now() - t0;
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP answer to ${method} ${target.slice(0, 80)}: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const [statusLine, ...headerLines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of headerLines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(end + 4);
  if (headers['transfer-encoding'] === 'chunked') {
    const out: Buffer[] = [];
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const n = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
      if (!n) break;
      out.push(rest.subarray(nl + 2, nl + 2 + n));
      rest = rest.subarray(nl + 2 + n + 2);
    }
    rest = Buffer.concat(out);
  }
  let json: RawResponse['json'] = null;
  try {
    json = JSON.parse(rest.toString('utf8'));
  } catch {}
  return { status: Number(statusLine!.split(' ')[1]), headers, body: rest, json, ms };
}

/** Signs up `account` in a fresh device and returns its session cookie (`coffer_session=...`). */
export async function sessionCookie(browser: Browser, url: string, account: string): Promise<string> {
  const d = await newDevice(browser, url);
  await signUp(d.page, account);
  const c = (await d.context.cookies()).find((x) => x.name === 'coffer_session');
  await d.context.close();
  if (!c) throw new Error('no session cookie after sign-up');
  return `${c.name}=${c.value}`;
}

/**
 * Resident memory of Chromium's renderer processes, read from /proc: each renderer's current and
 * peak (VmHWM) RSS in bytes. The pids come from CDP (SystemInfo.getProcessInfo).
 */
export async function rendererMemory(browser: Browser): Promise<{ pid: number; rss: number; peak: number }[]> {
  const cdp = await browser.newBrowserCDPSession();
  try {
    const { processInfo } = (await cdp.send('SystemInfo.getProcessInfo')) as { processInfo: { type: string; id: number }[] };
    const out = [];
    for (const p of processInfo.filter((x) => x.type === 'renderer')) {
      const status = await readFile(`/proc/${p.id}/status`, 'utf8').catch(() => '');
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
      if (status) out.push({ pid: p.id, rss: kb('VmRSS'), peak: kb('VmHWM') });
    }
    return out;
  } finally {
    await cdp.detach();
  }
}

/** A file of `size` random bytes, standing in for a video (incompressible, no two chunks alike). */
export async function writeVideo(path: string, size: number): Promise<void> {
  const f = await open(path, 'w');
  const block = Buffer.alloc(8 * 2 ** 20);
  try {
    for (let at = 0; at < size; at += block.length) await f.write(randomFillSync(block), 0, Math.min(block.length, size - at));
  } finally {
    await f.close();
  }
}

/** Tables of the chat schema, for hostile databases that look like one. */
export const CHAT_TABLES_SQL = `
  CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT, phone TEXT, is_self INTEGER);
  CREATE TABLE conversations (id INTEGER PRIMARY KEY, kind TEXT, title TEXT, created_at INTEGER);
  CREATE TABLE attachments (id INTEGER PRIMARY KEY, message_id INTEGER, kind TEXT, path TEXT, size INTEGER, mime TEXT, duration_ms INTEGER);
`;
export const MESSAGES_TABLE_SQL = 'CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER, sender_id INTEGER, timestamp INTEGER, body TEXT);';

/** The bytes of an SQLite database made by `sql` (and `fill`), through a temporary file. */
export async function sqliteFile(name: string, sql: string, fill?: (db: Database.Database) => void): Promise<Buffer> {
  const file = join(tmpdir(), `coffer-hostile-${process.pid}-${name}.db`);
  await rm(file, { force: true });
  const db = new Database(file);
  db.exec(sql);
  fill?.(db);
  db.close();
  const bytes = await readFile(file);
  await rm(file, { force: true });
  return bytes;
}

/** `account`'s store on the app server, reached from Node with `context`'s session (the test's own client of it). */
export async function storeOf(context: BrowserContext, url: string, account: string): Promise<HttpStorage> {
  const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  return new HttpStorage(`${url}/store/${encodeURIComponent(account)}/`, (input, init) =>
    fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string> | undefined), cookie } }));
}

export interface SentBody {
  method: string;
  url: string;
  body: Buffer;
}

/**
 * Every request a browser context sends, with its body, taken by intercepting each one (Chromium
 * leaves `Blob` bodies out of its plain request events): the test of "no plaintext leaves the
 * device" reads these.
 */
export async function recordRequestBodies(context: BrowserContext): Promise<SentBody[]> {
  const out: SentBody[] = [];
  await context.route('**/*', async (route) => {
    const r = route.request();
    out.push({ method: r.method(), url: r.url(), body: r.postDataBuffer() ?? Buffer.alloc(0) });
    await route.fallback();
  });
  return out;
}
