/**
 * S3 and WebDAV through a fault-injecting proxy (servers.ts): a backup of 64 MiB through dropped
 * connections, lost answers, stalls and 500/503 answers completes and restores byte-identical; a put
 * whose answer was lost is not taken for someone else's object; permanent errors fail fast with a
 * clear message and no secret; transient errors that never end give up; a backup killed midway
 * resumes without uploading again what the store has. (The 500 MiB run: `node bench/cloud.mjs`.)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backup, generateBackupKey, ObjectExistsError, Repository, restore, StorageUnavailableError, toHex, type Storage } from '@coffer/core';
import { FolderSource, FolderTarget, nodeCryptoProvider as crypto, openStorage, S3Storage, StorageRefusedError, WebDavStorage, workerCodec, type RetryPolicy } from '@coffer/node';
import { faultProxy, seeded, startServer, type FaultProxy, type ServerProcess } from './servers.js';

const MiB = 1024 * 1024;
const s3Env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const davEnv = { COFFER_WEBDAV_USER: 'alice', COFFER_WEBDAV_PASSWORD: 'wonderland' };
let dir: string;
const servers: Record<'s3' | 'webdav', ServerProcess> = {} as never;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-faults-'));
  [servers.s3, servers.webdav] = await Promise.all([startServer('s3', join(dir, 's3')), startServer('webdav', join(dir, 'dav'))]);
});
after(async () => {
  await Promise.all(Object.values(servers).map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
});

interface Backend {
  kind: 's3' | 'webdav';
  env: Record<string, string>;
  url(port: number, path: string): string;
  open(port: number, path: string, options?: { retry?: RetryPolicy; idleTimeoutMs?: number; create?: boolean }): Promise<Storage>;
  /** The pack or index object that a request makes appear under its name (S3: the PUT; WebDAV: the MOVE from tmp/). */
  dataCommit(l: FaultProxy['log'][number]): string | undefined;
}

const backends: Backend[] = [
  {
    kind: 's3',
    env: s3Env,
    url: (port, path) => `s3://coffer/${path}?endpoint=http://127.0.0.1:${port}&region=us-east-1&path-style=1`,
    open(port, path, o) {
      return S3Storage.open(this.url(port, path), { env: s3Env, ...o });
    },
    dataCommit: (l) => (l.method === 'PUT' ? /\/((?:packs|index)\/[0-9a-f]{64})(\?|$)/.exec(l.path)?.[1] : undefined),
  },
  {
    kind: 'webdav',
    env: davEnv,
    url: (port, path) => `webdav://127.0.0.1:${port}/${path}`,
    open(port, path, o) {
      return WebDavStorage.open(this.url(port, path), { env: davEnv, create: true, ...o });
    },
    dataCommit: (l) => {
      const m = l.method === 'MOVE' ? /\/(packs|index)\/(?:[0-9a-f]{2}\/)?([0-9a-f]{64})$/.exec(l.destination ?? '') : null;
      return m ? `${m[1]}/${m[2]}` : undefined;
    },
  },
];

/** A fast policy for tests: many attempts, short waits, seeded jitter. */
const testRetry = (onRetry?: RetryPolicy['onRetry']): RetryPolicy => ({ attempts: 12, baseDelayMs: 20, maxDelayMs: 500, random: seeded(7), ...(onRetry ? { onRetry } : {}) });

/** A folder of random (incompressible) files: one big file, some chunk-sized ones, many small ones. */
async function makeTree(root: string, bytes: number, seed: number): Promise<number> {
  const rnd = seeded(seed);
  await mkdir(join(root, 'media', 'photos'), { recursive: true });
  let left = bytes;
  const big = Math.floor(bytes * 0.5);
  await writeFile(join(root, 'media', 'video.mp4'), crypto.randomBytes(big));
  left -= big;
  for (let i = 0; left > 0; i++) {
    const n = Math.min(left, i % 5 === 0 ? Math.floor(rnd() * 4000) : Math.floor(MiB * (0.5 + rnd() * 2)));
    await writeFile(join(root, i % 3 ? 'media/photos' : '.', `file-${i}.bin`), crypto.randomBytes(n));
    left -= n;
  }
  return bytes;
}

async function digest(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(`${p}/`, ...(await digest(root, p)));
    else out.push(`${p} ${createHash('sha256').update(await readFile(join(root, p))).digest('hex')}`);
  }
  return out;
}

for (const b of backends) {
  test(`${b.kind}: a 64 MiB backup through dropped connections, lost answers, stalls, 500 and 503 completes and restores byte-identical`, async () => {
    const src = join(dir, `${b.kind}-faults-src`);
    await makeTree(src, 64 * MiB, 1);
    const proxy = await faultProxy(servers[b.kind].port, {}, 42);
    const retries: string[] = [];
    const storage = await b.open(proxy.port, 'faults', { retry: testRetry((r) => retries.push(r.reason)), idleTimeoutMs: 1000 });
    try {
      const repo = await Repository.init(storage, crypto, generateBackupKey(crypto));
      proxy.rates = { '500': 0.03, '503': 0.03, 'drop-request': 0.02, 'drop-response': 0.02, 'lose-response': 0.02, stall: 0.01 };
      const codec = workerCodec(repo.keys, repo.config, { threads: 2 });
      try {
        const r = await backup(repo, new FolderSource(src), { codec });
        assert.ok(r.chunksUploaded >= 64, `uploaded ${r.chunksUploaded} chunks`);
        await restore(repo, new FolderTarget(join(dir, `${b.kind}-faults-out`)), { codec });
      } finally {
        await codec.close();
      }
      assert.deepEqual(await digest(join(dir, `${b.kind}-faults-out`)), await digest(src));
      const seen = new Set(proxy.log.map((l) => l.fault));
      for (const f of ['500', '503', 'drop-request', 'drop-response', 'lose-response', 'stall'] as const) assert.ok(seen.has(f), `the proxy injected ${f}`);
      assert.ok(retries.length >= 10, `${retries.length} retries`);
    } finally {
      await storage.close?.();
      await proxy.close();
    }
  });

  test(`${b.kind}: a put whose answer was lost is retried and succeeds; someone else's object still wins`, async () => {
    const proxy = await faultProxy(servers[b.kind].port, {}, 1);
    const storage = await b.open(proxy.port, 'lost', { retry: testRetry() });
    try {
      let lost = 0;
      // S3: the PUT itself; WebDAV: the MOVE that puts the upload in place.
      proxy.decide = (m) => ((m === 'PUT' && b.kind === 's3') || m === 'MOVE' ? (lost++ === 0 ? 'lose-response' : 'ok') : undefined);
      const bytes = crypto.randomBytes(5000);
      await storage.put('manifests/1', bytes);
      // S3 looks first (HEAD) and finds our object; WebDAV tries the MOVE again and gets 412.
      assert.equal(lost, b.kind === 's3' ? 1 : 2, 'the first answer was lost, the second try found our own object');
      assert.ok(Buffer.from(await storage.get('manifests/1')).equals(bytes));
      await assert.rejects(storage.put('manifests/1', bytes), ObjectExistsError, 'without a lost answer, an existing object is an error even when it is the same');
      // A different object under a name that a lost answer made look free: ObjectExistsError stands.
      proxy.decide = undefined;
      const other = await b.open(servers[b.kind].port, 'lost');
      await other.put('manifests/3', crypto.randomBytes(10));
      await other.close?.();
      lost = 1;
      proxy.decide = (m) => ((m === 'PUT' && b.kind === 's3') || m === 'MOVE' ? (lost-- > 0 ? 'drop-request' : 'ok') : undefined);
      await assert.rejects(storage.put('manifests/3', bytes), ObjectExistsError);
    } finally {
      await storage.close?.();
      await proxy.close();
    }
  });

  test(`${b.kind}: transient errors that do not end give up after the last attempt with a clear message`, async () => {
    const proxy = await faultProxy(servers[b.kind].port, {}, 3);
    const storage = await b.open(proxy.port, 'flaky', { retry: testRetry() });
    try {
      proxy.rates = { '503': 1 };
      const t = performance.now();
      await assert.rejects(storage.put('config', new Uint8Array(3)), (e: unknown) => {
        assert.ok(e instanceof StorageUnavailableError && !(e instanceof StorageRefusedError), String(e));
        assert.match(e.message, /failed after 12 attempts: the server answered 503/);
        return true;
      });
      assert.ok(performance.now() - t < 5000);
      assert.equal(proxy.log.length >= 12, true);
    } finally {
      await storage.close?.();
      await proxy.close();
    }
  });

  test(`${b.kind}: a backup killed midway resumes without uploading again what the store has`, async () => {
    const src = join(dir, `${b.kind}-resume-src`);
    await makeTree(src, 40 * MiB, 2);
    const key = generateBackupKey(crypto);
    const direct = await b.open(servers[b.kind].port, 'resume');
    // Packs of one blob each, listed in an index object every few packs (spec/format.md §3.3).
    await Repository.init(direct, crypto, key, { packSize: 1024 * 1024 });
    const proxy = await faultProxy(servers[b.kind].port, {}, 5);
    const script = fileURLToPath(new URL('./backup-process.js', import.meta.url));
    const child = spawn(process.execPath, [script, b.url(proxy.port, 'resume'), src], {
      env: { ...process.env, ...b.env, COFFER_TEST_KEY: toHex(key.expose()) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // Kill it once three index objects went up.
    while (proxy.log.filter((l) => b.dataCommit(l)?.startsWith('index/')).length < 3) {
      if (child.exitCode !== null) assert.fail('the backup ended before it was killed');
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 300)); // requests the server had whole are finished
    await proxy.close();

    const indexed = await (await Repository.open(direct, crypto, key)).loadIndex();
    const storedPacks = new Set([...indexed.packs.keys()].map((id) => `packs/${id}`));
    assert.ok(indexed.size >= 8, `${indexed.size} chunks were stored and indexed before the kill`);
    assert.deepEqual(await direct.list('manifests/'), [], 'the killed backup wrote no manifest');
    for (const n of storedPacks) assert.ok(((await direct.stat(n))?.size ?? 0) > 0, `${n} is whole`);

    const proxy2 = await faultProxy(servers[b.kind].port, {}, 6);
    const storage = await b.open(proxy2.port, 'resume');
    try {
      const repo = await Repository.open(storage, crypto, key);
      const r = await backup(repo, new FolderSource(src));
      const total = r.chunksUploaded + r.chunksReused;
      assert.equal(r.chunksReused, indexed.size, 'every indexed chunk is reused');
      assert.equal(r.chunksUploaded, total - indexed.size);
      const uploads = new Set(proxy2.log.map((l) => b.dataCommit(l)).filter((n) => n?.startsWith('packs/')));
      assert.equal(uploads.size, r.packsWritten, 'one upload per new pack');
      for (const n of uploads) assert.ok(!storedPacks.has(n!), `${n} was uploaded again`);
      await restore(repo, new FolderTarget(join(dir, `${b.kind}-resume-out`)));
      assert.deepEqual(await digest(join(dir, `${b.kind}-resume-out`)), await digest(src));
    } finally {
      await storage.close?.();
      await direct.close?.();
      await proxy2.close();
    }
  });
}

test('permanent errors fail fast (< 2 s) with a clear message and no secret in it', async () => {
  const secret = 'sEcReT-9f8e7d6c5b4a';
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    // s3rver checks the key id but not the SigV4 signature: an unknown key id stands for bad credentials.
    ['s3 bad credentials', () => S3Storage.open(backends[0]!.url(servers.s3.port, 'x'), { env: { AWS_ACCESS_KEY_ID: 'NOBODY', AWS_SECRET_ACCESS_KEY: secret } }), /the credentials were refused/],
    ['s3 bad credentials in the URL', () => openStorage(`s3://NOBODY:${secret}@coffer/x?endpoint=http://127.0.0.1:${servers.s3.port}&path-style=1`), /the credentials were refused/],
    ['s3 missing bucket', () => S3Storage.open(backends[0]!.url(servers.s3.port, 'x').replace('coffer', 'no-such-bucket'), { env: s3Env }), /the bucket no-such-bucket does not exist/],
    ['webdav bad password', () => openStorage(`webdav://alice:${secret}@127.0.0.1:${servers.webdav.port}/x`), /the credentials were refused \(401\)/],
    ['webdav missing folder', () => WebDavStorage.open(`webdav://127.0.0.1:${servers.webdav.port}/no/such/folder`, { env: davEnv }), /the folder \/no\/such\/folder\/ does not exist/],
  ];
  for (const [what, open, message] of cases) {
    const t = performance.now();
    await assert.rejects(open(), (e: unknown) => {
      assert.ok(e instanceof StorageRefusedError, `${what}: ${String(e)}`);
      assert.match(e.message, message, what);
      assert.ok(e.hint && e.hint.length > 10, `${what}: a hint`);
      const shown = `${e.message} ${e.hint} ${e.stack}`;
      assert.ok(!shown.includes(secret), `${what}: the secret is not shown`);
      return true;
    });
    assert.ok(performance.now() - t < 2000, `${what} took ${Math.round(performance.now() - t)} ms`);
  }
  const s = await openStorage(`webdav://alice:wonderland@127.0.0.1:${servers.webdav.port}/labels`, { create: true });
  assert.equal(s.label, `webdav://alice:***@127.0.0.1:${servers.webdav.port}/labels`);
  await s.close?.();
});
