/**
 * Restore never leaves its target (spec/format.md §5.1, §6.1), and a live folder under a backup
 * (§6.2): hostile manifests against the real FolderTarget, and files that vanish or change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFile, chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import {
  backup, CofferError, DamagedBackupError, MemoryStorage, Repository, restore, SecretKey, type BackupSource, type TreeEntry,
} from '@coffer/core';
import { manifestName, ObjectType, sealObject, utf8 } from '@coffer/core/testing';
import { FolderSource, FolderTarget, nodeCryptoProvider as crypto } from '@coffer/node';
import { globMatcher } from '../src/fs-tree.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'coffer-safety-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Everything below `root` except `skip`, with kind, mode, size, mtime, content hash or link target. */
async function snapshot(root: string, skip: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const full = join(dir, name);
      if (full === skip) continue;
      const st = await lstat(full, { bigint: true });
      // The target's own parent changes when the target appears in it; nothing else may.
      let what = full === dirname(skip) ? st.mode.toString(8) : `${st.mode.toString(8)} ${st.mtimeNs}`;
      if (st.isDirectory()) {
        out.set(full, what);
        await walk(full);
        continue;
      }
      if (st.isFile()) what += ` ${st.size} ${createHash('sha256').update(await readFile(full)).digest('hex')}`;
      if (st.isSymbolicLink()) what += ` -> ${await readlink(full)}`;
      out.set(full, what);
    }
  };
  await walk(root);
  return out;
}

const CHUNK = 4096;

/** A repository in memory with three stored chunks of known content, for crafted manifests. */
async function craftRepo() {
  const storage = new MemoryStorage();
  const key = new SecretKey(new Uint8Array(32).fill(7));
  const repo = await Repository.init(storage, crypto, key, { chunkSize: CHUNK });
  const src = new Map<string, Uint8Array>([['a', new Uint8Array(CHUNK).fill(1)], ['b', new Uint8Array(100).fill(2)], ['c', utf8('owned\n')]]);
  const source: BackupSource = {
    async scan() {
      return [...src].map(([path, d]): TreeEntry => ({ path, kind: 'file', mode: 0o644, mtimeNs: '1', size: d.length }));
    },
    async *read(e) {
      yield src.get(e.path)!.slice();
    },
  };
  await backup(repo, source);
  const m = await repo.readManifest(1);
  const ids = Object.fromEntries(m.entries.map((e) => [e.path, e.chunks!]));
  return { storage, repo, ids };
}

/** Stores raw manifest lines (any entries at all, as someone holding K could) as backup `seq`. */
async function writeRawManifest(repo: Repository, storage: MemoryStorage, seq: number, entries: unknown[], header: Record<string, unknown> = {}) {
  const files = entries.filter((e) => (e as TreeEntry)?.kind === 'file') as TreeEntry[];
  const head = {
    type: 'coffer-manifest', version: 2, backupId: repo.config.backupId, seq, writer: WRITER, parent: null, createdAt: '2026-11-29T00:00:00.000Z',
    entries: entries.length, files: files.length, bytes: files.reduce((n, f) => n + (typeof f.size === 'number' ? f.size : 0), 0), ...header,
  };
  const text = [head, ...entries].map((l) => JSON.stringify(l)).join('\n') + '\n';
  storage.objects.delete(manifestName(seq, WRITER));
  await storage.put(manifestName(seq, WRITER), await sealObject(crypto, repo.keys, { type: ObjectType.manifest, backupId: repo.backupId, seq, writer: WRITER }, utf8(text)));
}
const WRITER = 'c0ffee00c0ffee00';

test('§6.1: a symlink followed by entries below it never writes outside the target, and leaves nothing behind', async (t) => {
  const dir = await tempDir(t);
  const outside = join(dir, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'keep.txt'), 'mine');
  const { storage, repo, ids } = await craftRepo();
  const file = (path: string) => ({ path, kind: 'file', mode: 0o644, mtimeNs: '1', size: 6, chunks: ids['c'] });
  for (const target of [outside, '../outside', '../../../../../../../../..' + outside, '..']) {
    for (const below of [file('link/planted'), { path: 'link/d', kind: 'dir', mode: 0o755, mtimeNs: '1' }, { path: 'link/s', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: '/etc' }]) {
      await writeRawManifest(repo, storage, 2, [{ path: 'link', kind: 'symlink', mode: 0o777, mtimeNs: '1', target }, below]);
      const before = await snapshot(dir, join(dir, 'target'));
      await assert.rejects(restore(repo, new FolderTarget(join(dir, 'target')), { seq: 2 }), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'corrupt' && /below a symlink/.test(e.message));
      assert.deepEqual(await snapshot(dir, join(dir, 'target')), before, `${target} / ${(below as { path: string }).path}`);
      assert.deepEqual(await readdir(dir), ['outside'], 'no target and no temporary folder');
    }
  }
  // Asked for the newest backup, restore skips the hostile one, says so, and restores the one before.
  const r = await restore(repo, new FolderTarget(join(dir, 'target')));
  assert.deepEqual([r.seq, r.skippedManifests.map((k) => [k.seq, k.reason])], [1, [[2, 'corrupt']]]);
  assert.deepEqual(await readdir(join(dir, 'outside')), ['keep.txt']);
});

test('§6.1: the target refuses, by itself, to create below a symlink or outside a folder it made', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'outside'));
  const target = new FolderTarget(join(dir, 'target'));
  await target.begin();
  const e = (path: string, kind: TreeEntry['kind'], extra: Partial<TreeEntry> = {}): TreeEntry => ({ path, kind, mode: 0o755, mtimeNs: '1', ...extra });
  await target.dir(e('d', 'dir'));
  await assert.rejects(target.file(e('nodir/f', 'file', { size: 0, chunks: [] })), /outside a folder this restore made/);
  assert.equal(await target.symlink(e('d/link', 'symlink', { target: join(dir, 'outside') })), true);
  await assert.rejects(target.file(e('d/link/f', 'file', { size: 0, chunks: [] })), /after symlinks/);
  await assert.rejects(target.dir(e('d/z', 'dir')), /after symlinks/);
  await target.abort();
  assert.deepEqual(await readdir(dir), ['outside']);
  assert.deepEqual(await readdir(join(dir, 'outside')), []);
});

test('§6.1: a restore that fails late removes everything it made, parents of the target included', async (t) => {
  const dir = await tempDir(t);
  const { storage, repo, ids } = await craftRepo();
  const missing = 'ee'.repeat(32);
  await writeRawManifest(repo, storage, 2, [
    { path: 'd', kind: 'dir', mode: 0o755, mtimeNs: '1' },
    { path: 'd/ok', kind: 'file', mode: 0o644, mtimeNs: '1', size: 6, chunks: ids['c'] },
    { path: 'd/s', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: '/etc' },
    { path: 'z', kind: 'file', mode: 0o644, mtimeNs: '1', size: 6, chunks: [missing] },
  ]);
  await assert.rejects(restore(repo, new FolderTarget(join(dir, 'new', 'parents', 'target'))), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'missing');
  assert.deepEqual(await readdir(dir), [], 'the parents made for the target are gone too');
});

test('§6.1: a killed restore leaves a temporary folder that the next restore to that target removes', async (t) => {
  const dir = await tempDir(t);
  const { repo } = await craftRepo();
  const stale = join(dir, '.target.coffer-restore-999999999-0123456789ab');
  await mkdir(stale, { mode: 0o700 });
  await mkdir(join(stale, 'half'), { mode: 0o500 });
  // Look-alikes that are not ours to remove: open to others, or of a process still running.
  const planted = join(dir, '.target.coffer-restore-999999998-0123456789ab');
  await mkdir(planted, { mode: 0o777 });
  await chmod(planted, 0o777);
  const running = join(dir, `.target.coffer-restore-${process.pid}-0123456789ab`);
  await mkdir(running, { mode: 0o700 });
  await restore(repo, new FolderTarget(join(dir, 'target')));
  assert.deepEqual((await readdir(dir)).sort(), [planted, running].map((p) => p.slice(dir.length + 1)).concat('target').sort());
});

test('§6.1 rule 5: setuid, setgid and sticky bits are dropped and counted unless kept', async (t) => {
  const dir = await tempDir(t);
  const { storage, repo, ids } = await craftRepo();
  await writeRawManifest(repo, storage, 2, [
    { path: 'sticky', kind: 'dir', mode: 0o1777, mtimeNs: '1' },
    { path: 'suid', kind: 'file', mode: 0o6755, mtimeNs: '1', size: 6, chunks: ids['c'] },
  ]);
  const r = await restore(repo, new FolderTarget(join(dir, 'a')));
  assert.equal(r.specialModesDropped, 2);
  assert.equal((await stat(join(dir, 'a', 'suid'))).mode & 0o7777, 0o755);
  assert.equal((await stat(join(dir, 'a', 'sticky'))).mode & 0o7777, 0o777);
  const kept = await restore(repo, new FolderTarget(join(dir, 'b')), { keepSpecialModes: true });
  assert.equal(kept.specialModesDropped, 0);
  assert.equal((await stat(join(dir, 'b', 'suid'))).mode & 0o7777, 0o6755);
});

/* ------------------------------------------------------------------------------------------------
 * The property: whatever a manifest holds, nothing outside the target changes.
 * --------------------------------------------------------------------------------------------- */

const component = fc.constantFrom('a', 'b', 'link', 'up', '..', '.', '', 'x\u0000y', 'é', 'A', '\ud800', 'd/e', '/', 'n'.repeat(300));
const pathArb = fc.oneof(
  fc.array(component, { minLength: 1, maxLength: 4 }).map((p) => p.join('/')),
  fc.constantFrom('/etc/passwd', '../escape', 'a/../../escape', '', 'link/../..', '//', 'a//b'),
);
const modeArb = fc.constantFrom(0o644, 0o755, 0o4755, 0o6755, 0o1777, 0o7777, 0o10000, -1, 1.5);
const sizeArb = fc.constantFrom(0, 6, 100, CHUNK, 2 ** 53 - 1, 1e15, -1, 3 * 1024 ** 3);

test('property (fast-check, 500 cases): manifests of random hostile entries never change anything outside the target', async (t) => {
  const dir = await tempDir(t);
  const sandbox = join(dir, 'sandbox');
  const outside = join(sandbox, 'outside');
  await mkdir(join(outside, 'deep'), { recursive: true });
  await writeFile(join(outside, 'keep.txt'), 'mine');
  await writeFile(join(outside, 'deep', 'cron'), '* * * * * true\n');
  await mkdir(join(sandbox, 'parent'));
  const targetPath = join(sandbox, 'parent', 'target');
  const { storage, repo, ids } = await craftRepo();
  const linkTargets = [outside, '../outside', '../../outside', '..', '.', '/', 'a', join(outside, 'deep'), '../../../../../../../../../..' + outside];
  const entryArb = fc.record({
    path: pathArb,
    kind: fc.constantFrom('file', 'file', 'dir', 'dir', 'symlink', 'symlink', 'fifo'),
    mode: modeArb,
    size: sizeArb,
    chunks: fc.constantFrom('right', 'wrong', 'missing'),
    target: fc.constantFrom(...linkTargets),
  });
  const before = await snapshot(sandbox, targetPath);
  let restored = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(entryArb, { maxLength: 8 }), fc.boolean(), fc.boolean(), async (raw, sorted, honestHeader) => {
      const entries = raw.map((r) => {
        const base = { path: r.path, kind: r.kind, mode: r.mode, mtimeNs: '1700000000000000000' };
        if (r.kind === 'symlink') return { ...base, target: r.target };
        if (r.kind !== 'file') return base;
        const size = r.chunks === 'right' ? [0, 6, 100, CHUNK][Math.abs(r.size) % 4]! : r.size;
        const chunks = size === 0 ? [] : size === 6 ? ids['c']! : size === 100 ? ids['b']! : size === CHUNK ? ids['a']! : ['ff'.repeat(32)];
        return { ...base, size, chunks: r.chunks === 'missing' ? chunks.map(() => 'ee'.repeat(32)) : chunks };
      });
      if (sorted) entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      await writeRawManifest(repo, storage, 2, entries, honestHeader ? {} : { files: 99 });
      await rm(targetPath, { recursive: true, force: true });
      try {
        await restore(repo, new FolderTarget(targetPath), { seq: 2 });
        restored++;
      } catch (e) {
        assert.ok(e instanceof CofferError, `a named error, not ${String(e)}`);
        refused++;
      }
      assert.deepEqual(await snapshot(sandbox, targetPath), before);
    }),
    { numRuns: 500 },
  );
  // The generator must reach both outcomes, or the property proves little.
  assert.ok(restored > 20 && refused > 20, `restored ${restored}, refused ${refused}`);
});

/* ------------------------------------------------------------------------------------------------
 * §6.2 A live folder under a backup
 * --------------------------------------------------------------------------------------------- */

test('§6.2: files and folders that vanish between the scan and the read are skipped, and the backup completes', async (t) => {
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(join(src, 'cache'), { recursive: true });
  await writeFile(join(src, 'keep.txt'), 'kept');
  await writeFile(join(src, 'cache', 'tmp1'), 'gone soon');
  await writeFile(join(src, 'gone.txt'), 'gone soon');
  const repo = await Repository.init(new MemoryStorage(), crypto, new SecretKey(new Uint8Array(32).fill(9)));
  // A real folder that changes after the scan: the files are deleted before they are read.
  class Changing extends FolderSource {
    override async scan() {
      const entries = await super.scan();
      await unlink(join(src, 'gone.txt'));
      await rm(join(src, 'cache'), { recursive: true });
      return entries;
    }
  }
  const r = await backup(repo, new Changing(src));
  assert.deepEqual(r.skipped.map((k) => [k.path, k.reason]).sort(), [['cache/tmp1', 'vanished'], ['gone.txt', 'vanished']]);
  const m = await repo.readManifest(r.seq);
  assert.deepEqual(m.entries.map((e) => e.path), ['cache', 'keep.txt']);
  assert.equal(m.header.files, 1);
});

test('§6.2: a file that keeps changing while it is read is read three times, then stored marked "changed"', async (t) => {
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(src);
  await writeFile(join(src, 'log.txt'), 'line\n');
  await writeFile(join(src, 'calm.txt'), 'calm\n');
  const repo = await Repository.init(new MemoryStorage(), crypto, new SecretKey(new Uint8Array(32).fill(9)));
  let reads = 0;
  // A real file, appended to during every read of it.
  class Appending extends FolderSource {
    override async *read(entry: TreeEntry, chunkSize: number, alloc?: (n: number) => Uint8Array) {
      if (entry.path === 'log.txt') reads++;
      for await (const piece of super.read(entry, chunkSize, alloc)) {
        if (entry.path === 'log.txt') await appendFile(join(src, 'log.txt'), 'more\n');
        yield piece;
      }
    }
  }
  const r = await backup(repo, new Appending(src));
  assert.equal(reads, 3);
  assert.deepEqual(r.changed, ['log.txt']);
  const m = await repo.readManifest(r.seq);
  assert.equal(m.entries.find((e) => e.path === 'log.txt')!.changed, true);
  assert.equal(m.entries.find((e) => e.path === 'calm.txt')!.changed, undefined);
  const out = await restore(repo, new FolderTarget(join(dir, 'out')));
  assert.deepEqual(out.changed, ['log.txt'], 'restore reports it, never as consistent');
  // A file truncated during its read is caught the same way; one that settles is stored clean.
  let cut = false;
  class Truncating extends FolderSource {
    override async *read(entry: TreeEntry, chunkSize: number, alloc?: (n: number) => Uint8Array) {
      for await (const piece of super.read(entry, chunkSize, alloc)) {
        if (entry.path === 'calm.txt' && !cut) {
          cut = true;
          await truncate(join(src, 'calm.txt'), 2);
        }
        yield piece;
      }
    }
  }
  await writeFile(join(src, 'calm.txt'), 'calm again\n');
  await writeFile(join(src, 'log.txt'), 'settled\n');
  const r2 = await backup(repo, new Truncating(src));
  assert.deepEqual(r2.changed, []);
  const m2 = await repo.readManifest(r2.seq);
  assert.equal(m2.entries.find((e) => e.path === 'calm.txt')!.size, 2, 'the second read, after the change, is what is stored');
});

test('--sqlite globs: * and ? stay within a name, ** spans folders, a glob without / matches the name', () => {
  assert.ok(globMatcher('*.db')('a/b/chat.db'));
  assert.ok(!globMatcher('*.db')('a/b/chat.db-wal'));
  assert.ok(globMatcher('databases/*.sqlite')('databases/msg.sqlite'));
  assert.ok(!globMatcher('databases/*.sqlite')('x/databases/msg.sqlite'));
  assert.ok(globMatcher('**/msg?.db')('x/y/msg1.db'));
  assert.ok(!globMatcher('a.db')('xa.db'));
});

test('§6.2: the special bits of a source file are read as they are; a changed mode is caught as a change', async (t) => {
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(src);
  await writeFile(join(src, 'tool'), 'x');
  await chmod(join(src, 'tool'), 0o6755);
  const repo = await Repository.init(new MemoryStorage(), crypto, new SecretKey(new Uint8Array(32).fill(9)));
  const r = await backup(repo, new FolderSource(src));
  assert.equal((await repo.readManifest(r.seq)).entries[0]!.mode, 0o6755);
});

test('§6.1: a parent folder other users may change is refused (sticky folders like /tmp are fine)', async (t) => {
  const dir = await tempDir(t);
  const { repo } = await craftRepo();
  const open = join(dir, 'open');
  await mkdir(open);
  await chmod(open, 0o777);
  await assert.rejects(restore(repo, new FolderTarget(join(open, 'target'))), (e: unknown) => e instanceof CofferError && e.code === 'unsafe-target');
  assert.deepEqual(await readdir(open), []);
  const sticky = join(dir, 'sticky');
  await mkdir(sticky);
  await chmod(sticky, 0o1777);
  await restore(repo, new FolderTarget(join(sticky, 'target')));
  assert.equal((await stat(join(sticky, 'target'))).mode & 0o777, 0o777 & ~process.umask());
});

test('§6.2: a live database no snapshot can be taken of (locked exclusively) is read raw with its WAL, and marked changed', async (t) => {
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(src);
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(join(src, 'chat.db'));
  t.after(() => db.close());
  db.pragma('journal_mode = WAL');
  db.pragma('locking_mode = EXCLUSIVE');
  db.exec('CREATE TABLE m (x); INSERT INTO m VALUES (1)');
  const repo = await Repository.init(new MemoryStorage(), crypto, new SecretKey(new Uint8Array(32).fill(9)));
  const source = new FolderSource(src, { tempDir: join(dir, 'tmp') });
  const r = await backup(repo, source);
  await source.close();
  assert.deepEqual(source.snapshotted, []);
  assert.deepEqual(r.changed, ['chat.db'], 'never presented as consistent');
  const paths = (await repo.readManifest(r.seq)).entries.map((e) => e.path);
  assert.ok(paths.includes('chat.db-wal'), `the WAL is kept when there is no snapshot: ${paths}`);
  assert.deepEqual(await readdir(join(dir, 'tmp')), [], 'no snapshot left behind');
});
