/**
 * The app server `npm start` runs: the page (bundled with esbuild at start), a Backup Key Vault on
 * embedded defaults (child process, proxied at /v1/vault), an HTTP object store standing in for the
 * user's cloud drive (/store/<account>/...), development account tokens for demo accounts
 * (/api/token), and the demo phone's chat data (/api/phone/...).
 */
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize, sep } from 'node:path';
import { chatJson, ensureSample, listTree, type ChatJson } from './chat.js';
import { APP_ROOT, bundle } from './bundle.js';
import { ACCOUNT, handleStore } from './store.js';
import { startVault, type VaultChild } from './vault.js';

export const DEMO_ACCOUNTS = ['maria@example', 'sam@example', 'ana@example'];

export interface AppOptions {
  /** Where the vault, the cloud store and the demo phone's chat data live. */
  dataDir: string;
  port?: number;
  host?: string;
  /** Size of the generated chat data (bytes). */
  sampleBytes?: number;
  seed?: string;
  /**
   * Argon2id with almost no work for OPAQUE in the page: for tests only (a password registered
   * with it can be guessed offline fast by anyone with the realm's secrets).
   */
  insecureTestOnlyFastKeyStretching?: boolean;
  /** More `coffer-vault serve` flags (tests: a higher per-account rate limit). */
  vaultArgs?: string[];
  /** More scripts to serve, URL path -> JavaScript (tests: bundled suites), loaded by /harness.html?script=PATH. */
  extraScripts?: Record<string, string>;
}

export interface AppServer {
  url: string;
  realmPublicKey: string;
  hsm: string;
  phoneDir: string;
  cloudDir: string;
  close(): Promise<void>;
}

const MIME: Record<string, string> = {
  '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png', '.webp': 'image/webp',
  '.m4a': 'audio/mp4', '.ogg': 'audio/ogg', '.opus': 'audio/ogg', '.mp4': 'video/mp4', '.db': 'application/vnd.sqlite3',
};

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    if ((n += c.length) > limit) throw new Error('body too large');
    parts.push(c);
  }
  return Buffer.concat(parts);
}

const PAGE = (script: string, title: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><link rel="stylesheet" href="/app.css"></head>
<body><div id="app"></div><script type="module" src="${script}"></script></body></html>
`;

export async function startApp(o: AppOptions): Promise<AppServer> {
  const phoneDir = join(o.dataDir, 'phone');
  const cloudDir = join(o.dataDir, 'cloud');
  const vaultDir = join(o.dataDir, 'vault');
  await mkdir(cloudDir, { recursive: true });
  await mkdir(vaultDir, { recursive: true });
  const vaultStarting = startVault(vaultDir, o.vaultArgs);
  let vault: VaultChild;
  let appJs: string;
  let workerJs: string;
  try {
    [vault, appJs, workerJs] = await Promise.all([
      vaultStarting,
      bundle(join(APP_ROOT, 'src', 'browser', 'main.ts')),
      bundle(join(APP_ROOT, 'src', 'browser', 'chunk-worker.ts')),
      ensureSample(phoneDir, o.sampleBytes ?? 16 * 2 ** 20, o.seed ?? 'coffer-web'),
    ]);
  } catch (e) {
    await vaultStarting.then((v) => v.stop(), () => {});
    throw e;
  }
  const scripts = new Map<string, string>([['/app.js', appJs], ['/chunk-worker.js', workerJs], ...Object.entries(o.extraScripts ?? {})]);
  const css = await readFile(join(APP_ROOT, 'src', 'browser', 'app.css'), 'utf8');
  let phoneChat: ChatJson | null = null;
  const config = {
    realmPublicKey: vault.realmPublicKey,
    accounts: DEMO_ACCOUNTS,
    keyStretching: o.insecureTestOnlyFastKeyStretching ? 'insecure-test-only-fast' : 'memory-constrained',
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    if (path.startsWith('/v1/vault')) return vault.proxy(req, res);
    if (path.startsWith('/store/')) return handleStore(cloudDir, req, res, path.slice('/store/'.length), url.searchParams);
    if (req.method === 'GET' && (path === '/' || path === '/index.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(PAGE('/app.js', 'Coffer Messenger'));
      return;
    }
    if (req.method === 'GET' && path === '/harness.html') {
      const script = url.searchParams.get('script') ?? '';
      if (!scripts.has(script)) return json(res, 404, { error: 'no such script' });
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE(script, 'Coffer test harness'));
      return;
    }
    if (req.method === 'GET' && scripts.has(path)) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' }).end(scripts.get(path));
      return;
    }
    if (req.method === 'GET' && path === '/app.css') {
      res.writeHead(200, { 'content-type': 'text/css; charset=utf-8' }).end(css);
      return;
    }
    if (req.method === 'GET' && path === '/config.json') return json(res, 200, config);
    if (req.method === 'POST' && path === '/api/token') {
      const { account } = JSON.parse((await readBody(req, 4096)).toString('utf8') || '{}') as { account?: string };
      if (typeof account !== 'string' || !ACCOUNT.test(account)) return json(res, 400, { error: 'account must be 1-64 of [a-z0-9._@-]' });
      return json(res, 200, { account, token: await vault.token(account) });
    }
    if (req.method === 'GET' && path === '/api/phone/tree') return json(res, 200, await listTree(phoneDir));
    if (req.method === 'GET' && path === '/api/phone/chat') return json(res, 200, (phoneChat ??= chatJson(join(phoneDir, 'messages.db'))));
    if (req.method === 'POST' && path === '/api/chat-from-db') {
      // A restored device shows its own (restored) database: the page posts it, this reads it.
      const db = await readBody(req, 512 * 2 ** 20);
      try {
        return json(res, 200, chatJson(db));
      } catch (e) {
        return json(res, 400, { error: `not a chat database: ${(e as Error).message}` });
      }
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && path.startsWith('/api/phone/file/')) {
      const rel = decodeURIComponent(path.slice('/api/phone/file/'.length));
      const file = normalize(join(phoneDir, rel));
      if (!file.startsWith(phoneDir + sep)) return json(res, 400, { error: 'bad path' });
      let size: number;
      try {
        size = (await stat(file)).size;
      } catch {
        return json(res, 404, { error: 'not found' });
      }
      const ext = /\.[a-z0-9]+$/i.exec(file)?.[0]?.toLowerCase() ?? '';
      res.writeHead(200, { 'content-type': MIME[ext] ?? 'application/octet-stream', 'content-length': size, 'cache-control': 'no-store' });
      if (req.method === 'HEAD') return void res.end();
      createReadStream(file).pipe(res);
      return;
    }
    json(res, 404, { error: 'not found' });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) json(res, 500, { error: (e as Error).message });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
    });
  } catch (e) {
    await vault.stop();
    throw e;
  }
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address === '::1' ? '[::1]' : addr.address}:${addr.port}`,
    realmPublicKey: vault.realmPublicKey,
    hsm: vault.hsm,
    phoneDir,
    cloudDir,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await vault.stop();
    },
  };
}
