/**
 * The app server `npm start` runs (spec/web-app.md): the page (bundled with esbuild at start),
 * accounts with passkeys and one-time codes, three realms on embedded defaults (child processes
 * trusting this server's EdDSA tokens: the first is the Backup Key Vault of the single-realm path,
 * proxied at POST /v1/vault; all three are Juicebox realms at POST /realms/<n>/req), an HTTP object store
 * standing in for each account's cloud drive (/store/<account>/...), and the demo phone's chat
 * data (/api/phone/...). No chat ever reaches it from a page: the page reads chat databases itself.
 * Every request is checked for its Host, every unsafe one for its Origin.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join, normalize, sep } from 'node:path';
import { Accounts } from './accounts.js';
import { Auth, DevInbox, notSignedIn, sessionToken, type CodeSender } from './auth.js';
import { APP_ROOT, bundle } from './bundle.js';
import { ensureSample, listTree } from './chat.js';
import { decodePath, field, HttpError, json, readJson, sendError, sendFile } from './http.js';
import { handleStore } from './store.js';
import { realmTokens, tokenKey, TOKEN_TTL_SECONDS, vaultToken } from './tokens.js';
import { startVault, type VaultChild } from './vault.js';

export interface AppOptions {
  /** Where the accounts, the vault, the cloud store and the demo phone's chat data live. */
  dataDir: string;
  port?: number;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /**
   * The one origin the page is served from (spec/web-app.md §1), e.g. `https://chat.example`;
   * default `http://localhost:<port>`. Only its host is served.
   */
  origin?: string;
  /** Size of the generated chat data (bytes). */
  sampleBytes?: number;
  seed?: string;
  /**
   * Development mode: one-time codes are printed to the console (`log`) and listed on /dev/inbox.
   */
  dev?: boolean;
  /** Delivers one-time codes (ignored with `dev`). Without one, code sign-in is unavailable. */
  codeSender?: CodeSender;
  /** Where the server's messages go; default standard output. */
  log?: (line: string) => void;
  /**
   * Builds the page with Argon2id on 8 KiB, t=1 for the password (a build-time flag of the
   * bundle, spec/web-app.md §5): for tests only; a password registered with it can be guessed
   * offline fast by anyone with the realm's secrets. The page says so on every screen.
   */
  insecureTestOnlyFastKeyStretching?: boolean;
  /** More `coffer-vault serve` flags (tests: a higher per-account rate limit). */
  vaultArgs?: string[];
  /** More scripts to serve, URL path -> JavaScript (tests: bundled suites), loaded by /harness.html?script=PATH. */
  extraScripts?: Record<string, string>;
}

export interface AppServer {
  /** The origin, e.g. `http://localhost:8080`. */
  url: string;
  realmPublicKey: string;
  /** The Juicebox realms (the first is also the vault): realm id and Noise key (hex), and the child's own URL. */
  realms: { id: string; publicKey: string; url: string }[];
  hsm: string;
  phoneDir: string;
  cloudDir: string;
  /** With `dev`: the codes sent. */
  devInbox: DevInbox | null;
  close(): Promise<void>;
}

/**
 * How a page may say it registered the password (spec/web-app.md §5): an OPAQUE key-stretching
 * preset (the vault), or `juicebox:` and a PIN hashing mode (the realms).
 */
const PRESETS = /^(memory-constrained|rfc-recommended|insecure-test-only-fast|juicebox:(Standard2019|FastInsecure))$/;

/**
 * The realms' data folders: the first is also the single-realm path's vault (its folder keeps the
 * name it had before there were three).
 */
const REALM_DIRS = ['vault', 'realm-2', 'realm-3'];

const MIME: Record<string, string> = {
  '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.webp': 'image/webp', '.wav': 'audio/wav',
  '.m4a': 'audio/mp4', '.ogg': 'audio/ogg', '.opus': 'audio/ogg', '.mp4': 'video/mp4', '.db': 'application/vnd.sqlite3',
};

const PAGE = (script: string, title: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><link rel="stylesheet" href="/app.css"></head>
<body><div id="app"></div><script type="module" src="${script}"></script></body></html>
`;

/**
 * Only this origin's own scripts, workers, styles and requests run in the page: no inline script or
 * style, no eval (WebAssembly, for SQLite and Argon2, is allowed to compile), no plugins, no framing.
 * Pictures and voice notes of restored chats are shown (and read) from blob: URLs the page made.
 */
const CSP = [
  "default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "worker-src 'self'", "style-src 'self'",
  "img-src 'self' blob:", "media-src 'self' blob:", "connect-src 'self' blob:", "object-src 'none'", "base-uri 'none'",
  "form-action 'self'", "frame-ancestors 'none'",
].join('; ');

const LOOPBACK = new Set(['127.0.0.1', '[::1]']);

/** SQLite's WASM build, which the page's chat reader loads (src/browser/chat-reader.ts). */
const SQLITE_WASM = createRequire(import.meta.url).resolve('@sqlite.org/sqlite-wasm/sqlite3.wasm');

export async function startApp(o: AppOptions): Promise<AppServer> {
  const log = o.log ?? ((line: string) => void process.stdout.write(line + '\n'));
  const phoneDir = join(o.dataDir, 'phone');
  const cloudDir = join(o.dataDir, 'cloud');
  await mkdir(cloudDir, { recursive: true });
  for (const d of REALM_DIRS) await mkdir(join(o.dataDir, d), { recursive: true });
  const key = await tokenKey(join(o.dataDir, 'auth'));
  const accounts = new Accounts(join(o.dataDir, 'accounts.sqlite'));
  const realmsStarting = REALM_DIRS.map((d) => startVault(join(o.dataDir, d), key.publicKeyFile, o.vaultArgs));
  let realms: VaultChild[];
  const stopRealms = () => Promise.all(realmsStarting.map((p) => p.then((v) => v.stop(), () => {})));
  let appJs: string;
  let workerJs: string;
  let chatReaderJs: string;
  let sqliteWasm: Buffer;
  try {
    [realms, appJs, workerJs, chatReaderJs, sqliteWasm] = await Promise.all([
      Promise.all(realmsStarting),
      bundle(join(APP_ROOT, 'src', 'browser', 'main.ts'), { insecureTestOnlyFastKeyStretching: o.insecureTestOnlyFastKeyStretching === true }),
      bundle(join(APP_ROOT, 'src', 'browser', 'chunk-worker.ts')),
      bundle(join(APP_ROOT, 'src', 'browser', 'chat-reader.ts')),
      readFile(SQLITE_WASM),
      ensureSample(phoneDir, o.sampleBytes ?? 16 * 2 ** 20, o.seed ?? 'coffer-web'),
    ]);
  } catch (e) {
    await stopRealms();
    accounts.close();
    throw e;
  }
  // The first realm is also the single-realm path's Backup Key Vault (OPAQUE).
  const vault = realms[0]!;
  const scripts = new Map<string, string>([['/app.js', appJs], ['/chunk-worker.js', workerJs], ['/chat-reader.js', chatReaderJs], ...Object.entries(o.extraScripts ?? {})]);
  const css = await readFile(join(APP_ROOT, 'src', 'browser', 'app.css'), 'utf8');
  const devInbox = o.dev ? new DevInbox(log) : null;
  // Known once the server listens (the port may be picked then).
  let origin: URL;
  let auth: Auth;

  /** The signed-in account, or 401. */
  const account = (req: IncomingMessage): string => {
    const token = sessionToken(req);
    const a = token ? accounts.session(token) : null;
    if (!a) throw notSignedIn();
    return a;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // spec/web-app.md §1: only the origin's host is served (DNS rebinding finds nothing here).
    const host = String(req.headers.host ?? '').toLowerCase();
    if (host !== origin.host) {
      const port = host.slice(host.lastIndexOf(':') + 1);
      if (origin.hostname === 'localhost' && port === origin.port && LOOPBACK.has(host.slice(0, host.lastIndexOf(':'))) && (req.method === 'GET' || req.method === 'HEAD') && req.url?.startsWith('/') && !req.url.startsWith('//')) {
        res.writeHead(308, { location: origin.origin + req.url }).end();
        return;
      }
      throw new HttpError(421, 'misdirected-request', `this server answers only for ${origin.host}`);
    }
    if (!req.url?.startsWith('/') || req.url.startsWith('//')) throw new HttpError(400, 'bad-url', 'the request target must be a path');
    let url: URL;
    try {
      url = new URL(`http://x${req.url}`);
    } catch {
      throw new HttpError(400, 'bad-url', 'the URL cannot be parsed');
    }
    // spec/web-app.md §3: state changes only from our own pages.
    const safe = req.method === 'GET' || req.method === 'HEAD';
    if (!safe && req.headers.origin !== origin.origin) throw new HttpError(403, 'cross-origin', 'requests that change something must come from this site\'s own pages');
    const path = url.pathname;
    const session = (() => {
      const token = sessionToken(req);
      return token ? accounts.session(token) : null;
    })();

    if (await auth.handle(req, res, path, session)) return;
    if (path === '/v1/vault') {
      if (req.method !== 'POST') throw new HttpError(405, 'method-not-allowed', 'the vault takes POST only');
      account(req);
      return vault.proxy(req, res, '/v1/vault');
    }
    if (path.startsWith('/v1/vault')) throw new HttpError(404, 'not-found', 'not found');
    if (path.startsWith('/realms/')) {
      // The Juicebox realms (spec/web-app.md §4): POST /realms/<n>/req only, with a session.
      const realm = realms[Number(/^\/realms\/([1-9])\/req$/.exec(path)?.[1] ?? 0) - 1];
      if (!realm) throw new HttpError(404, 'not-found', 'not found');
      if (req.method !== 'POST') throw new HttpError(405, 'method-not-allowed', 'a realm takes POST only');
      account(req);
      return realm.proxy(req, res, '/req');
    }
    if (path.startsWith('/store/')) {
      const me = account(req);
      const rest = path.slice('/store/'.length);
      const slash = rest.indexOf('/');
      if (slash < 0) throw new HttpError(404, 'not-found', 'a store URL is /store/<account>/<name>');
      if (decodePath(rest.slice(0, slash)) !== me) throw new HttpError(403, 'not-your-store', 'this store belongs to another account');
      return handleStore(cloudDir, me, rest.slice(slash + 1), req, res, url.searchParams);
    }
    if (path === '/api/token') {
      if (req.method !== 'POST') throw new HttpError(405, 'method-not-allowed', 'POST only');
      const me = account(req);
      const body = await readJson(req, 4096);
      const purpose = field(body, 'purpose', /^(register|use)$/, '"register" or "use"');
      if (purpose === 'register') accounts.recordKeyStretching(me, field(body, 'keyStretching', PRESETS, 'a key-stretching preset name'));
      // The tokens of the path the password was registered on: the vault's, or one per realm.
      const recorded = accounts.keyStretching(me);
      const tokens = recorded?.startsWith('juicebox:')
        ? { realmTokens: realmTokens(key, realms.map((r) => r.juiceboxRealmId), me) }
        : { token: vaultToken(key, vault.realmId, me) };
      return json(res, 200, { account: me, ...tokens, expiresInSeconds: TOKEN_TTL_SECONDS, keyStretching: recorded });
    }
    if (path.startsWith('/api/phone/')) {
      account(req);
      if (req.method === 'GET' && path === '/api/phone/tree') return json(res, 200, await listTree(phoneDir));
      if (safe && path.startsWith('/api/phone/file/')) return servePhoneFile(req, res, decodePath(path.slice('/api/phone/file/'.length)));
      throw new HttpError(404, 'not-found', 'not found');
    }
    if (!safe) throw new HttpError(405, 'method-not-allowed', 'this path takes GET only');
    if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(PAGE('/app.js', 'Coffer Messenger'));
      return;
    }
    if (path === '/dev/inbox' && devInbox) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(devInbox.page());
      return;
    }
    if (path === '/harness.html') {
      const script = url.searchParams.get('script') ?? '';
      if (!scripts.has(script)) throw new HttpError(404, 'not-found', 'no such script');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE(script, 'Coffer test harness'));
      return;
    }
    if (scripts.has(path)) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' }).end(scripts.get(path));
      return;
    }
    if (path === '/sqlite3.wasm') {
      res.writeHead(200, { 'content-type': 'application/wasm', 'cache-control': 'no-cache' }).end(sqliteWasm);
      return;
    }
    if (path === '/app.css') {
      res.writeHead(200, { 'content-type': 'text/css; charset=utf-8' }).end(css);
      return;
    }
    if (path === '/config.json') {
      return json(res, 200, {
        realmPublicKey: vault.realmPublicKey,
        // The Juicebox SDK's Configuration, but for pin_hashing_mode, which is the page's own (spec/web-app.md §5).
        juicebox: {
          realms: realms.map((r, i) => ({ id: r.juiceboxRealmId, address: `${origin.origin}/realms/${i + 1}/`, public_key: r.juiceboxPublicKey })),
          register_threshold: realms.length,
          recover_threshold: realms.length,
        },
        codeSignIn: auth.codesAvailable,
        devInbox: devInbox !== null,
      });
    }
    throw new HttpError(404, 'not-found', 'not found');
  };

  const servePhoneFile = async (req: IncomingMessage, res: ServerResponse, rel: string): Promise<void> => {
    const file = normalize(join(phoneDir, rel));
    if (!file.startsWith(phoneDir + sep) || rel.includes('\0')) throw new HttpError(400, 'bad-path', 'bad path');
    let size: number;
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      throw new HttpError(404, 'not-found', 'not found');
    }
    const ext = /\.[a-z0-9]+$/i.exec(file)?.[0]?.toLowerCase() ?? '';
    sendFile(req, res, file, size, MIME[ext] ?? 'application/octet-stream');
  };

  const server = createServer((req, res) => {
    // No sniffing, no framing (a framed page could trick a click on a passkey prompt), no referrer.
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('x-frame-options', 'DENY');
    res.setHeader('referrer-policy', 'no-referrer');
    res.setHeader('content-security-policy', CSP);
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (e instanceof HttpError) return sendError(res, e);
      log(`internal error on ${req.method} ${(req.url ?? '').split('?')[0]!.slice(0, 200)}: ${(e as Error)?.stack ?? String(e)}`);
      json(res, 500, { error: 'internal', message: 'internal error' });
    });
  });
  server.keepAliveTimeout = 5000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
    });
  } catch (e) {
    await stopRealms();
    accounts.close();
    throw e;
  }
  const addr = server.address() as AddressInfo;
  try {
    origin = new URL(o.origin ?? `http://localhost:${addr.port}`);
    if (origin.protocol !== 'http:' && origin.protocol !== 'https:') throw new Error('the origin must be http(s)');
    if (origin.pathname !== '/' || origin.search || origin.username) throw new Error('the origin is scheme://host[:port] only');
  } catch (e) {
    server.close();
    await stopRealms();
    accounts.close();
    throw new Error(`bad origin ${JSON.stringify(o.origin)}: ${(e as Error).message}`);
  }
  auth = new Auth(accounts, origin, devInbox ?? o.codeSender ?? null, log);
  return {
    url: origin.origin,
    realmPublicKey: vault.realmPublicKey,
    realms: realms.map((r) => ({ id: r.juiceboxRealmId, publicKey: r.juiceboxPublicKey, url: r.url })),
    hsm: vault.hsm,
    phoneDir,
    cloudDir,
    devInbox,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await stopRealms();
      accounts.close();
    },
  };
}
