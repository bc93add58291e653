import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryStorage, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, type Storage } from '@coffer/core';
import { storageConformance } from '@coffer/core/testing';
import { LocalStorage } from '@coffer/node';
import { HttpStorage } from '@coffer/http';
import { handleStorageRequest, type StorageRequestOptions } from '@coffer/http/server';

/** A server with the store at /store/ (the whole URL path below it is the storage's). */
async function serveStore(storage: Storage, options: StorageRequestOptions = {}): Promise<{ base: string; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (!req.url?.startsWith('/store/')) return void res.writeHead(404).end();
    void handleStorageRequest(storage, req, res, req.url.slice('/store/'.length), options);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    base: `http://127.0.0.1:${port}/store/`,
    server,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const backends: [string, () => Promise<{ storage: Storage; done(): Promise<void> }>][] = [
  ['memory, objects in pieces', async () => ({ storage: new MemoryStorage(), done: async () => {} })],
  ['memory, whole objects', async () => ({ storage: new MemoryStorage({ writer: false }), done: async () => {} })],
  [
    'local folder',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'coffer-http-'));
      return { storage: await LocalStorage.open(dir), done: () => rm(dir, { recursive: true, force: true }) };
    },
  ],
];

for (const [what, make] of backends) {
  for (const c of storageConformance) {
    test(`HttpStorage over handleStorageRequest (${what}) conformance: ${c.name}`, async () => {
      const { storage, done } = await make();
      const s = await serveStore(storage);
      try {
        await c.run(new HttpStorage(s.base));
      } finally {
        await s.close();
        await done();
      }
    });
  }
}

test('the protocol answers of spec/format.md §7.3', async () => {
  const storage = new MemoryStorage();
  const s = await serveStore(storage, { maxObjectBytes: 1000 });
  const at = (path: string, init: RequestInit = {}) => fetch(s.base + path, init);
  const put = (path: string, body: Uint8Array, headers: Record<string, string> = { 'if-none-match': '*' }) => at(path, { method: 'PUT', body: body as BufferSource, headers });
  try {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
    assert.equal((await put('a/x', bytes, {})).status, 428, 'a PUT without If-None-Match: * is refused');
    assert.equal(storage.objects.size, 0);
    let r = await put('a/x', bytes);
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal((await put('a/x', new Uint8Array(3))).status, 412, 'write-once');
    assert.deepEqual(new Uint8Array(storage.objects.get('a/x')!), bytes, 'the first object stays');

    r = await at('a/x', { headers: { range: 'bytes=10-19' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), 'bytes 10-19/100');
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), bytes.slice(10, 20));
    r = await at('a/x', { headers: { range: 'bytes=90-' } });
    assert.deepEqual(new Uint8Array(await r.arrayBuffer()), bytes.slice(90));
    r = await at('a/x', { headers: { range: 'bytes=95-500' } });
    assert.equal(r.headers.get('content-range'), 'bytes 95-99/100', 'a range is cut at the end');
    assert.equal((await at('a/x', { headers: { range: 'bytes=100-200' } })).status, 416);
    r = await at('a/x', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), '100');
    assert.equal((await at('a/missing')).status, 404);
    assert.equal((await at('a/missing', { method: 'HEAD' })).status, 404);

    // fetch would resolve dot segments before sending: node:http sends the path as it is.
    const raw = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(new URL(s.base), { path: new URL(s.base).pathname + path }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject).end();
      });
    for (const bad of ['a/..', 'a/%2e%2e', '..', '.hidden', 'a//b', 'a/%zz', 'a/x%20y', 'a/x%2Fy', 'a/x%2Fy/']) {
      const b = await raw(bad);
      assert.equal(b.status, 400, bad);
      assert.equal((JSON.parse(b.body) as { error: string }).error, 'bad-name', bad);
    }
    assert.equal((await at('a/x', { method: 'POST', body: 'x' })).status, 405);
    assert.equal((await at('a/', { method: 'DELETE' })).status, 405, 'a folder is only listed');

    r = await put('a/big', new Uint8Array(1001));
    assert.equal(r.status, 413, 'larger than the limit');
    assert.equal(((await r.json()) as { error: string }).error, 'too-large');
    assert.equal(storage.objects.has('a/big'), false, 'nothing stored');
    // Without a Content-Length (a streamed body), the limit is found while reading.
    const streamed = new ReadableStream({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(400));
        c.close();
      },
    });
    r = await at('a/big', { method: 'PUT', body: streamed, headers: { 'if-none-match': '*' }, duplex: 'half' } as RequestInit);
    assert.equal(r.status, 413, 'a streamed body past the limit');
    assert.equal(storage.objects.has('a/big'), false, 'nothing stored');
    assert.equal((await put('a/big', new Uint8Array(1000))).status, 201, 'at the limit');

    // Folders: each is a store of its own, so an account can hold several repositories.
    assert.equal((await put('repo1/index/1', bytes)).status, 201);
    assert.equal((await put('repo2/index/2', bytes)).status, 201);
    const list = async (path: string) => ((await (await at(path)).json()) as string[]).sort();
    assert.deepEqual(await list('?list='), ['a/big', 'a/x', 'repo1/index/1', 'repo2/index/2']);
    assert.deepEqual(await list('repo1/?list=index/'), ['index/1']);
    assert.deepEqual(await list('repo2/?list='), ['index/2']);
    assert.deepEqual(await list('repo3/?list='), []);
    assert.equal((await at('?list=%00')).status, 400, 'a prefix no name can have');
    assert.deepEqual(await new HttpStorage(s.base + 'repo1/').list(''), ['index/1']);

    assert.equal((await at('a/x', { method: 'DELETE' })).status, 204);
    assert.equal((await at('a/x', { method: 'DELETE' })).status, 204, 'deleting a missing object is no error');
    assert.equal(storage.objects.has('a/x'), false);
  } finally {
    await s.close();
  }
});

test('a storage failure is 503 with no detail for the client, the detail for onError; HttpStorage reports StorageUnavailableError', async () => {
  const failing = new MemoryStorage();
  failing.get = async () => {
    throw new StorageUnavailableError('file:///srv/secret-path: EIO');
  };
  const broken = new MemoryStorage();
  broken.stat = async () => {
    throw new Error('a bug with internals');
  };
  const seen: unknown[] = [];
  for (const [storage, status] of [[failing, 503], [broken, 500]] as const) {
    await storage.put('o', new Uint8Array(5));
    const s = await serveStore(storage, { onError: (e) => seen.push(e) });
    try {
      const r = await fetch(s.base + 'o');
      assert.equal(r.status, status);
      const text = await r.text();
      assert.doesNotMatch(text, /secret-path|internals/);
      await assert.rejects(new HttpStorage(s.base).get('o'), StorageUnavailableError);
    } finally {
      await s.close();
    }
  }
  assert.equal(seen.length, 4);
  assert.match(String(seen[0]), /secret-path/);
});

test('HttpStorage: missing and existing objects, an unreachable store, and the label', async () => {
  const s = await serveStore(new MemoryStorage());
  const h = new HttpStorage(s.base.slice(0, -1)); // a base without its slash gets one
  await h.put('x/1', new Uint8Array([1, 2, 3]));
  await assert.rejects(h.put('x/1', new Uint8Array(1)), ObjectExistsError);
  await assert.rejects(h.get('x/2'), ObjectNotFoundError);
  assert.equal(await h.stat('x/2'), null);
  assert.deepEqual(await h.stat('x/1'), { size: 3 });
  assert.equal(h.label, 'http-store:/store/');
  await s.close();
  await assert.rejects(h.get('x/1'), StorageUnavailableError);
});

test('@coffer/http bundles for a browser with no Node module (as @coffer/node does not)', async () => {
  const esbuild = await import('esbuild');
  const build = (entry: string) =>
    esbuild.build({
      stdin: { contents: `export * from '${entry}';`, resolveDir: dirname(fileURLToPath(import.meta.url)) },
      bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent',
    });
  const r = await build('@coffer/http');
  assert.match(r.outputFiles[0]!.text, /HttpStorage = class/);
  await assert.rejects(build('@coffer/node'), /Could not resolve/);
});
