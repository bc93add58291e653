// The browser example's server: the page, bundled for the browser with esbuild, and an HTTP
// object store (@coffer/http/server over a folder). It prints the URL to open.
//
//   node examples/browser/serve.mjs [WORK_DIR] [--port 8080]
//
// The store here lets anyone in: a real app signs its users in first and gives each account a
// store of its own (the web app in apps/web serves /store/<account>/ to that account only).
import { readFile, mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { handleStorageRequest } from '@coffer/http/server';
import { LocalStorage } from '@coffer/node';

const { values, positionals } = parseArgs({ options: { port: { type: 'string', default: '8080' } }, allowPositionals: true });
const work = positionals[0] ?? (await mkdtemp(join(tmpdir(), 'coffer-example-')));
const here = dirname(fileURLToPath(import.meta.url));

const page = await readFile(join(here, 'index.html'));
const bundled = await build({ entryPoints: [join(here, 'page.mjs')], bundle: true, format: 'esm', platform: 'browser', write: false });
const script = bundled.outputFiles[0].contents;
const storage = await LocalStorage.open(join(work, 'cloud'), { create: true });

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  if (url.startsWith('/store/')) return void handleStorageRequest(storage, req, res, url.slice('/store/'.length), { onError: (e) => console.error(e) });
  if (req.method === 'GET' && url === '/') return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  if (req.method === 'GET' && url === '/page.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
  res.writeHead(404).end();
});
server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  console.log(`open http://127.0.0.1:${port}/`);
});
