import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup, DamagedBackupError, generateBackupKey, Repository, restore } from '@coffer/core';
import { inlineCodec } from '@coffer/core/adapters';
import { storageConformance } from '@coffer/core/testing';
import {
  FolderSource, FolderTarget, LocalStorage, nodeCryptoProvider as crypto, openStorage, redactUrl, TargetNotEmptyError, workerCodec,
} from '@coffer/node';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'coffer-node-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

for (const c of storageConformance) {
  test(`local folder storage conformance: ${c.name}`, async (t) => c.run(await LocalStorage.open(join(await tempDir(t), 'store'), { create: true })));
}

test('local folder: leftovers of a killed put are never listed, and are removed after a day', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await writeFile(join(dir, 'tmp', 'fresh.tmp'), 'half an object');
  await writeFile(join(dir, 'tmp', 'stale.tmp'), 'half an object, long ago');
  const old = new Date(Date.now() - 25 * 3600 * 1000);
  await utimes(join(dir, 'tmp', 'stale.tmp'), old, old);
  const s = await LocalStorage.open(dir);
  await s.put('data/' + 'ab'.repeat(32), new Uint8Array([1, 2, 3]));
  assert.deepEqual(await s.list(''), ['data/' + 'ab'.repeat(32)]);
  assert.deepEqual(await readdir(join(dir, 'data', 'ab')), ['ab'.repeat(32)]);
  assert.deepEqual(await readdir(join(dir, 'tmp')), ['fresh.tmp'], 'a stale leftover is removed; a fresh one may belong to a running put');
});

test('opening a folder to read from it writes nothing into it', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'letter.txt'), 'dear');
  const s = await LocalStorage.open(dir);
  assert.equal(await s.stat('config'), null);
  assert.deepEqual(await s.list(''), ['letter.txt']);
  assert.deepEqual(await readdir(dir), ['letter.txt']);
});

test('storage locations: paths and file:// URLs open, unknown schemes and missing folders are clear errors', async (t) => {
  const dir = await tempDir(t);
  assert.equal((await openStorage(`file://${dir}/x`, { create: true })).label, `file://${dir}/x`);
  await assert.rejects(openStorage(join(dir, 'missing')), /does not exist/);
  await assert.rejects(openStorage('ftp://host/x'), /not supported/);
  assert.equal(redactUrl('https://user:hunter2@host/p?token=abc&x=1'), 'https://user:***@host/p?token=***&x=1');
});

test('worker codec and inline codec agree, and worker errors keep their reason', async () => {
  const key = generateBackupKey(crypto);
  const { MemoryStorage } = await import('@coffer/core');
  const repo = await Repository.init(new MemoryStorage(), crypto, key);
  const inline = inlineCodec(crypto, repo.keys, repo.config.segmentSize);
  const pool = workerCodec(repo.keys, repo.config, { threads: 2 });
  try {
    // One batch of chunks of every awkward size, and each size alone.
    const sizes = [0, 1, 65536, 65537, 1 << 20];
    const data = sizes.map((n) => crypto.randomBytes(n));
    const a = await inline.seal(data.map((d) => d.slice()));
    const b = await pool.seal(data.map((d) => d.slice()));
    assert.deepEqual(a.ids, b.ids);
    const blobs = (batch: typeof a) => batch.ids.map((id, i) => ({ id, sealed: batch.sealed[i]!, plainLength: sizes[i]! }));
    assert.deepEqual((await pool.open(blobs(a), true)).plain, data);
    assert.deepEqual((await inline.open(blobs(b), true)).plain, data);
    for (let i = 0; i < sizes.length; i++) assert.deepEqual((await pool.seal([data[i]!.slice()])).ids, [a.ids[i]]);
    // Views into a shared buffer (a Node Buffer from its pool, say) are copied, never taken away.
    const shared = Buffer.from('a small chunk from Node\'s shared pool');
    const before = Buffer.from(shared);
    await pool.seal([shared.subarray(2, 10)]);
    assert.deepEqual(shared, before);
    const one = await inline.seal([crypto.randomBytes(1000)]);
    const sealed = one.sealed[0]!;
    sealed[sealed.length - 1]! ^= 1;
    await assert.rejects(pool.open([{ id: one.ids[0]!, sealed, plainLength: 1000 }], false), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'corrupt' && e.object === `data/${one.ids[0]}`);
  } finally {
    await pool.close();
  }
});

test('a folder round-trips with UTF-8 names, empty files and folders, modes, mtimes and symlinks', async (t) => {
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(join(src, 'Família 👨‍👩‍👧', 'deep', 'er'), { recursive: true });
  await mkdir(join(src, 'empty folder'));
  await writeFile(join(src, 'Família 👨‍👩‍👧', 'çafé ☕.txt'), 'olá');
  await writeFile(join(src, 'empty'), '');
  await writeFile(join(src, 'Família 👨‍👩‍👧', 'deep', 'er', 'big.bin'), crypto.randomBytes(3 * 1024 * 1024 + 5));
  await writeFile(join(src, 'script.sh'), '#!/bin/sh\n');
  await chmod(join(src, 'script.sh'), 0o750);
  await writeFile(join(src, 'secret'), 'x');
  await chmod(join(src, 'secret'), 0o600);
  await symlink('Família 👨‍👩‍👧/çafé ☕.txt', join(src, 'link'));
  await utimes(join(src, 'secret'), new Date('2020-02-02T02:02:02.123Z'), new Date('2020-02-02T02:02:02.123Z'));
  await utimes(join(src, 'empty folder'), new Date('2019-01-01T00:00:00Z'), new Date('2019-01-01T00:00:00Z'));

  const storage = await LocalStorage.open(join(dir, 'store'), { create: true });
  const key = generateBackupKey(crypto);
  const repo = await Repository.init(storage, crypto, key);
  const codec = workerCodec(repo.keys, repo.config);
  try {
    await backup(repo, new FolderSource(src), { codec });
    const out = join(dir, 'out');
    await restore(repo, new FolderTarget(out), { codec });
    const walk = async (root: string, rel = ''): Promise<string[]> => {
      const lines: string[] = [];
      for (const name of (await readdir(join(root, rel))).sort()) {
        const p = rel ? `${rel}/${name}` : name;
        const st = await lstat(join(root, p));
        const kind = st.isSymbolicLink() ? `link:${await readlink(join(root, p))}` : st.isDirectory() ? 'dir' : `file:${(await readFile(join(root, p))).toString('base64').slice(0, 40)}:${st.size}`;
        lines.push(`${p} ${kind} ${st.isSymbolicLink() ? '' : (st.mode & 0o7777).toString(8)} ${st.isSymbolicLink() ? '' : Math.round(st.mtimeMs)}`);
        if (st.isDirectory()) lines.push(...(await walk(root, p)));
      }
      return lines;
    };
    assert.deepEqual(await walk(out), await walk(src));
    assert.deepEqual((await readdir(dir)).sort(), ['out', 'src', 'store'], 'no temporary folder is left behind');

    // A non-empty target is refused and left alone; --overwrite replaces it.
    await assert.rejects(restore(repo, new FolderTarget(out), { codec }), TargetNotEmptyError);
    await writeFile(join(out, 'extra'), 'x');
    await restore(repo, new FolderTarget(out, { overwrite: true }), { codec });
    assert.deepEqual(await walk(out), await walk(src));
    assert.deepEqual((await readdir(dir)).sort(), ['out', 'src', 'store']);
  } finally {
    await codec.close();
  }
});

test('a failed restore leaves no target and no temporary folder', async (t) => {
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(src);
  await writeFile(join(src, 'a'), crypto.randomBytes(2 * 1024 * 1024));
  const storage = await LocalStorage.open(join(dir, 'store'), { create: true });
  const repo = await Repository.init(storage, crypto, generateBackupKey(crypto));
  await backup(repo, new FolderSource(src));
  const [victim] = await storage.list('packs/');
  await rm(join(dir, 'store', 'packs', victim!.slice(6, 8), victim!.slice(6)));
  await assert.rejects(restore(repo, new FolderTarget(join(dir, 'out'))), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'missing');
  assert.deepEqual((await readdir(dir)).sort(), ['src', 'store']);
});
