/**
 * Migration (spec/format.md §10.2) on the cloud backends, against real servers on 127.0.0.1
 * (s3rver and webdav-server in child processes): version 1 stores written through the backend by
 * the test-only version 1 writer, migrated in place, and restored byte for byte from a folder.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { migrate, Repository, restore, SecretKey, verify, type BackupSource, type CryptoProvider, type Storage } from '@coffer/core';
import { FolderSource, FolderTarget, nodeCryptoProvider, WebDavStorage } from '@coffer/node';
import { S3Storage } from '@coffer/node/s3';
import { startServer, type ServerProcess } from './servers.js';

/** The test-only version 1 writer (packages/core/test/v1-store.ts), as built by `tsc -b`. */
interface V1Writer {
  initV1(storage: Storage, crypto: CryptoProvider, key: SecretKey, options?: { chunkSize?: number }): Promise<void>;
  backupV1(storage: Storage, crypto: CryptoProvider, key: SecretKey, source: BackupSource): Promise<{ seq: number }>;
}
const v1: V1Writer = await import(new URL('../../../core/dist/test/v1-store.js', import.meta.url).href);

let dir: string;
let s3: ServerProcess;
let dav: ServerProcess;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-migrate-cloud-'));
  [s3, dav] = await Promise.all([startServer('s3', join(dir, 's3')), startServer('webdav', join(dir, 'dav'))]);
});
after(async () => {
  await Promise.all([s3?.stop(), dav?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

/** Every file below `root`, by path, with the SHA-256 of its content. */
async function files(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[relative(root, join(e.parentPath, e.name))] = createHash('sha256').update(await readFile(join(e.parentPath, e.name))).digest('hex');
  }
  return out;
}

for (const kind of ['s3', 'webdav'] as const) {
  test(`migrate a version 1 store on ${kind === 's3' ? 'S3 (s3rver)' : 'WebDAV (webdav-server)'}: every backup restores byte for byte, nothing of version 1 is left`, async () => {
    const storage: Storage =
      kind === 's3'
        ? await S3Storage.open(`s3://coffer/v1?endpoint=http://127.0.0.1:${s3.port}&region=us-east-1&path-style=1`, { env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } })
        : await WebDavStorage.open(`webdav://127.0.0.1:${dav.port}/v1/store`, { env: { COFFER_WEBDAV_USER: 'alice', COFFER_WEBDAV_PASSWORD: 'wonderland' }, create: true });
    try {
      const key = new SecretKey(randomBytes(32));
      await v1.initV1(storage, nodeCryptoProvider, key, { chunkSize: 64 * 1024 });
      const src = join(dir, `${kind}-src`);
      await mkdir(join(src, 'media'), { recursive: true });
      const snaps = new Map<number, Record<string, string>>();
      for (let i = 0; i < 2; i++) {
        await writeFile(join(src, 'media', `photo-${i}.jpg`), randomBytes(300_000 + i));
        await writeFile(join(src, 'chats.db'), randomBytes(100_000));
        const source = new FolderSource(src, { snapshots: false });
        const r = await v1.backupV1(storage, nodeCryptoProvider, key, source);
        await source.close();
        snaps.set(r.seq, await files(src));
      }
      const objects = (await storage.list('data/')).length;
      const r = await migrate(await Repository.open(storage, nodeCryptoProvider, key), { packSize: 256 * 1024, host: 'test', pid: 1 });
      assert.equal(r.objectsPacked, objects);
      assert.ok(r.packsWritten >= 3, `${r.packsWritten} packs`);
      assert.deepEqual(r.damaged, []);
      assert.deepEqual(await storage.list('data/'), []);
      assert.equal(await storage.stat('config.v2'), null);
      const repo = await Repository.open(storage, nodeCryptoProvider, key);
      assert.equal(repo.version, 2);
      for (const [seq, snap] of snaps) {
        const out = join(dir, `${kind}-out-${seq}`);
        await restore(repo, new FolderTarget(out), { seq });
        assert.deepEqual(await files(out), snap, `backup #${seq}`);
      }
      assert.deepEqual((await verify(repo)).damaged, []);
      assert.equal((await migrate(repo)).nothingToDo, true);
    } finally {
      await storage.close?.();
    }
  });
}
