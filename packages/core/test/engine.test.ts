import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  backup, ConflictError, DamagedBackupError, generateBackupKey, MemoryStorage, Repository, restore, SecretKey, StorageUnavailableError,
  verify, WrongKeyError, type Storage,
} from '@coffer/core';
import { entryPathProblem } from '#src/manifest.js';
import { padme, readPackHeader } from '#src/pack.js';
import { manifestName, storageConformance } from '@coffer/core/testing';
import { MemorySource, MemoryTarget, providers, sameTree, type MemFile } from './helpers.js';

const CHUNK = 4096; // small chunks so small trees have many of them

for (const c of storageConformance) {
  test(`memory storage conformance: ${c.name}`, () => c.run(new MemoryStorage()));
}

const fileArb = fc.record({
  kind: fc.constantFrom('file', 'file', 'dir', 'symlink') as fc.Arbitrary<'file' | 'dir' | 'symlink'>,
  data: fc.oneof(fc.uint8Array({ maxLength: 3 * CHUNK + 10 }), fc.constant(new Uint8Array(CHUNK))),
  mode: fc.constantFrom(0o644, 0o600, 0o755, 0o700),
  mtimeNs: fc.bigInt({ min: 0n, max: 2n ** 62n }).map(String),
});
const nameArb = fc.stringMatching(/^[a-zA-Z0-9 éü☕👨‍👩‍👧._-]{1,8}$/).filter((s) => entryPathProblem(s) === null);

function treeFrom(items: { path: string[]; f: { kind: 'file' | 'dir' | 'symlink'; data: Uint8Array; mode: number; mtimeNs: string } }[]): Map<string, MemFile> {
  const tree = new Map<string, MemFile>();
  for (const { path, f } of items) {
    // Parents are folders; a path under a file is dropped.
    let ok = true;
    for (let i = 1; i < path.length; i++) {
      const parent = path.slice(0, i).join('/');
      const existing = tree.get(parent);
      if (existing && existing.kind !== 'dir') ok = false;
      else if (!existing) tree.set(parent, { kind: 'dir', mode: 0o755, mtimeNs: '1000' });
    }
    const p = path.join('/');
    if (!ok || tree.has(p)) continue;
    tree.set(p, f.kind === 'file' ? { kind: 'file', data: f.data, mode: f.mode, mtimeNs: f.mtimeNs } : f.kind === 'dir' ? { kind: 'dir', mode: f.mode, mtimeNs: f.mtimeNs } : { kind: 'symlink', target: 'somewhere/else', mode: 0o777, mtimeNs: f.mtimeNs });
  }
  // As on a real file system, nothing lies below a file or a symlink.
  for (const p of [...tree.keys()]) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) if (tree.get(parts.slice(0, i).join('/'))?.kind !== 'dir') tree.delete(p);
  }
  return tree;
}

const treeArb = fc.array(fc.record({ path: fc.array(nameArb, { minLength: 1, maxLength: 3 }), f: fileArb }), { maxLength: 12 }).map(treeFrom);

for (const [crypto, streamed] of providers.flatMap((p) => [[p, true], [p, false]] as const)) {
  test(`backup then restore gives back the same tree, for any tree (${crypto.name}, packs ${streamed ? 'streamed' : 'put whole'})`, async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, treeArb, async (t1, t2) => {
        const storage = new MemoryStorage({ writer: streamed });
        const key = generateBackupKey(crypto);
        // Packs of a few chunks: many packs, filled by several files at once.
        const repo = await Repository.init(storage, crypto, key, { chunkSize: CHUNK, packSize: 64 * 1024 });
        const r1 = await backup(repo, new MemorySource(t1));
        const r2 = await backup(repo, new MemorySource(t2), { lastSeenSeq: r1.seq });
        assert.equal(r2.seq, 2);
        const again = await Repository.open(storage, crypto, key);
        const out2 = new MemoryTarget();
        await restore(again, out2);
        assert.ok(sameTree(t2, out2.committed!), 'newest backup restores the second tree');
        const out1 = new MemoryTarget();
        await restore(again, out1, { seq: 1 });
        assert.ok(sameTree(t1, out1.committed!), 'first backup is intact');
        assert.deepEqual((await verify(again)).damaged, []);
      }),
      { numRuns: crypto.name === 'node' ? 40 : 15 },
    );
  });
}

const crypto = providers[0]!;

async function setup(tree: Map<string, MemFile>) {
  const storage = new MemoryStorage();
  const key = new SecretKey(new Uint8Array(32).fill(3));
  const repo = await Repository.init(storage, crypto, key, { chunkSize: CHUNK });
  const first = await backup(repo, new MemorySource(tree));
  return { storage, key, repo, first };
}

const bigTree = () =>
  new Map<string, MemFile>([
    ['a.bin', { kind: 'file', data: crypto.randomBytes(10 * CHUNK), mode: 0o644, mtimeNs: '1' }],
    // A last chunk of many bytes: two random trees must not share it by chance (1 byte would, 1 time in 256).
    ['b.bin', { kind: 'file', data: crypto.randomBytes(5 * CHUNK + 999), mode: 0o644, mtimeNs: '2' }],
    ['same.bin', { kind: 'file', data: new Uint8Array(3 * CHUNK), mode: 0o644, mtimeNs: '3' }],
  ]);

test('incremental: unchanged files are not read; changed ones upload only new chunks', async () => {
  const tree = bigTree();
  const { repo, first } = await setup(tree);
  // The three zero chunks of same.bin are one object.
  assert.equal(first.chunksUploaded, 10 + 6 + 1);
  const again = await backup(repo, new MemorySource(tree), { lastSeenSeq: 1 });
  assert.deepEqual([again.filesRead, again.chunksUploaded, again.bytesUploaded], [0, 0, 0]);
  // Change one chunk of a.bin and add a file.
  const a = tree.get('a.bin')!;
  a.data = a.data!.slice();
  a.data[4 * CHUNK + 7]! ^= 1;
  a.mtimeNs = '99';
  tree.set('c.bin', { kind: 'file', data: crypto.randomBytes(2 * CHUNK), mode: 0o600, mtimeNs: '4' });
  const third = await backup(repo, new MemorySource(tree), { lastSeenSeq: 2 });
  assert.equal(third.filesRead, 2);
  assert.equal(third.chunksUploaded, 1 + 2);
  const out = new MemoryTarget();
  await restore(repo, out);
  assert.ok(sameTree(tree, out.committed!));
});

test('the wrong key is "wrong key", never "damaged"', async () => {
  const { storage } = await setup(bigTree());
  await assert.rejects(Repository.open(storage, crypto, new SecretKey(new Uint8Array(32).fill(4))), WrongKeyError);
});

test('rollback: a store older than what this device saw is refused (and can be allowed)', async () => {
  const { storage, repo } = await setup(bigTree());
  const second = await backup(repo, new MemorySource(bigTree()), { lastSeenSeq: 1 });
  await storage.delete(second.name);
  const isRollback = (e: unknown) => e instanceof DamagedBackupError && e.reason === 'rolled-back';
  await assert.rejects(restore(repo, new MemoryTarget(), { lastSeenSeq: 2 }), isRollback);
  await assert.rejects(backup(repo, new MemorySource(bigTree()), { lastSeenSeq: 2 }), isRollback);
  const out = new MemoryTarget();
  assert.equal((await restore(repo, out, { lastSeenSeq: 2, allowRollback: true })).seq, 1);
  // A manifest copied to a newer number does not open there (misplaced): restore falls back past it and says so.
  const first = (await repo.manifests())[0]!;
  const copy = manifestName(5, first.writer);
  storage.objects.set(copy, storage.objects.get(first.name)!);
  const fell = await restore(repo, new MemoryTarget());
  assert.equal(fell.seq, 1);
  assert.deepEqual(fell.skippedManifests.map((k) => [k.seq, k.reason]), [[5, 'misplaced']]);
  // A device that has seen #2 does not accept the fall back to #1 without --allow-rollback.
  await assert.rejects(restore(repo, new MemoryTarget(), { lastSeenSeq: 2 }), isRollback);
});

/** Small packs, so that a small tree's blobs lie in several packs. */
const PACK = 64 * 1024;

async function setupPacks(tree: Map<string, MemFile>, storage = new MemoryStorage()) {
  const key = new SecretKey(new Uint8Array(32).fill(3));
  const repo = await Repository.init(storage, crypto, key, { chunkSize: CHUNK, packSize: PACK });
  const first = await backup(repo, new MemorySource(tree));
  return { storage, key, repo, first };
}

test('blobs go into packs of about packSize, listed by one index object per backup (§3)', async () => {
  const { storage, repo, first } = await setupPacks(bigTree());
  const packs = await storage.list('packs/');
  assert.equal(packs.length, first.packsWritten);
  assert.ok(packs.length >= 2, `several packs: ${packs.length}`);
  assert.equal((await storage.list('index/')).length, 1);
  assert.equal((await storage.list('data/')).length, 0, 'no loose blobs');
  for (const p of packs) {
    const size = storage.objects.get(p)!.length;
    assert.equal(size, padme(size), 'every pack is padded to a Padmé length');
    assert.ok(size <= padme(PACK + CHUNK + 4096), `${p}: ${size}`);
  }
  const index = await repo.loadIndex();
  assert.equal(index.size, first.chunksUploaded);
  // The pack header alone says what the pack holds.
  for (const p of packs) {
    const listed = (await readPackHeader(crypto, repo.keys, storage.objects.get(p)!, p.slice(6), repo.config.segmentSize)).map((b) => b.id).sort();
    assert.deepEqual(listed, index.packs.get(p.slice(6))!.blobs.map((b) => b.id).sort());
  }
  // Nothing changed: no pack, no index object.
  const again = await backup(repo, new MemorySource(new Map()), { lastSeenSeq: 1 });
  assert.equal(again.packsWritten, 0);
});

test('a missing pack or a damaged blob fails the restore before anything is committed, and verify lists each', async () => {
  const { storage, repo } = await setupPacks(bigTree());
  const index = await repo.loadIndex();
  const packs = (await storage.list('packs/')).sort();
  storage.objects.delete(packs[0]!);
  const victim = packs[1]!;
  const blob = index.packs.get(victim.slice(6))!.blobs[0]!;
  storage.objects.get(victim)![blob.offset + 100]! ^= 0x10;
  const out = new MemoryTarget();
  await assert.rejects(restore(repo, out), DamagedBackupError);
  assert.equal(out.committed, null);
  assert.ok(out.aborted);
  const v = await verify(repo);
  const reasons = new Map(v.damaged.map((d) => [d.object, d.reason]));
  assert.equal(reasons.get(packs[0]!), 'missing');
  assert.equal(reasons.get(`${victim}@${blob.offset}`), 'corrupt');
  assert.equal(v.damaged.length, 2, JSON.stringify(v.damaged));
});

test('exchanged packs are detected as misplaced', async () => {
  const { storage, repo } = await setupPacks(bigTree());
  const [a, b] = (await storage.list('packs/')).sort();
  const A = storage.objects.get(a!)!;
  storage.objects.set(a!, storage.objects.get(b!)!);
  storage.objects.set(b!, A);
  const v = await verify(repo);
  assert.ok(v.damaged.length > 0 && v.damaged.every((d) => d.reason === 'misplaced' || d.reason === 'truncated' || d.reason === 'corrupt'), JSON.stringify(v.damaged));
  assert.ok(v.damaged.some((d) => d.reason === 'misplaced'));
});

/** Fails every put after `budget` puts: a store that goes away in the middle of a backup. */
class FailingStorage extends MemoryStorage {
  constructor(public budget: number) {
    super();
  }
  override async put(name: string, data: Uint8Array) {
    if (this.budget-- <= 0) throw new Error('connection reset');
    return super.put(name, data);
  }
}

test('an interrupted backup leaves the previous one intact, and the re-run stores what is missing', async () => {
  const storage = new FailingStorage(1000);
  const { repo } = await setupPacks(bigTree(), storage);
  const t1 = (await (async () => {
    const out = new MemoryTarget();
    await restore(repo, out);
    return out.committed!;
  })());
  const t2 = bigTree();
  storage.budget = 2; // its lock and one pack, then the store goes away
  await assert.rejects(backup(repo, new MemorySource(t2), { lastSeenSeq: 1, concurrency: 1 }), StorageUnavailableError);
  assert.deepEqual((await repo.manifests()).map((r) => r.seq), [1]);
  const out = new MemoryTarget();
  await restore(repo, out);
  assert.ok(sameTree(t1, out.committed!));
  storage.budget = 1000;
  const rerun = await backup(repo, new MemorySource(t2), { lastSeenSeq: 1 });
  assert.equal(rerun.seq, 2);
  const out2 = new MemoryTarget();
  await restore(repo, out2);
  assert.ok(sameTree(t2, out2.committed!));
  assert.deepEqual((await verify(repo)).damaged, []);
});

test('two devices backing up at the same moment: both backups are kept, under names of their own (§6)', async () => {
  const { repo } = await setupPacks(bigTree());
  const trees = [bigTree(), bigTree()];
  const results = await Promise.all(trees.map((t) => backup(repo, new MemorySource(t))));
  assert.deepEqual(results.map((r) => r.seq), [2, 2]);
  assert.notEqual(results[0]!.name, results[1]!.name);
  for (let i = 0; i < 2; i++) {
    const out = new MemoryTarget();
    await restore(repo, out, { seq: (await repo.manifests()).find((r) => r.name === results[i]!.name)! });
    assert.ok(sameTree(trees[i]!, out.committed!), `backup ${i} restores`);
  }
  // The next backup numbers past both, and names one of them as its parent.
  const next = await backup(repo, new MemorySource(bigTree()));
  assert.equal(next.seq, 3);
  const parent = (await repo.readManifest(3)).header.parent!;
  assert.ok(results.some((r) => r.name === parent.name));
});

test('the config is authenticated: a changed field, or a tampered key check with the right key, is "config" damage, not "wrong key" (§2)', async () => {
  const { utf8 } = await import('#src/bytes.js');
  const { storage, key } = await setupPacks(bigTree());
  const original = storage.objects.get('config')!;
  const config = JSON.parse(new TextDecoder().decode(original));
  const isConfig = (detail: RegExp) => (e: unknown) => e instanceof DamagedBackupError && e.reason === 'config' && detail.test(e.message);
  storage.objects.set('config', utf8(JSON.stringify({ ...config, chunkSize: 8192 })));
  await assert.rejects(Repository.open(storage, crypto, key), isConfig(/MAC does not match/));
  storage.objects.set('config', utf8(JSON.stringify({ ...config, keyCheck: '00'.repeat(32) })));
  await assert.rejects(Repository.open(storage, crypto, key), isConfig(/key check does not match, but the key opens/));
  await assert.rejects(Repository.open(storage, crypto, new SecretKey(new Uint8Array(32).fill(4))), WrongKeyError);
  storage.objects.set('config', original);
  // A device pins the config it connected to.
  const repo = await Repository.open(storage, crypto, key, { pinnedMac: config.mac });
  assert.equal(repo.config.mac, config.mac);
  await assert.rejects(Repository.open(storage, crypto, key, { pinnedMac: 'ab'.repeat(32) }), isConfig(/changed since this device connected/));
});

test('init refuses a store that already holds a backup', async () => {
  const { storage } = await setup(bigTree());
  await assert.rejects(Repository.init(storage as Storage, crypto, generateBackupKey(crypto)), ConflictError);
});

test('a config from a newer format version is "unsupported"; an unreadable one is "damaged", never "wrong key"', async () => {
  const { UnsupportedFormatError } = await import('@coffer/core');
  const { utf8 } = await import('#src/bytes.js');
  const { storage, key } = await setup(bigTree());
  const config = JSON.parse(new TextDecoder().decode(storage.objects.get('config')!));
  storage.objects.set('config', utf8(JSON.stringify({ ...config, version: 3 })));
  await assert.rejects(Repository.open(storage, crypto, key), UnsupportedFormatError);
  storage.objects.set('config', utf8('{"format":"coffer-backup","version":1,"backupId":"zz"}'));
  await assert.rejects(Repository.open(storage, crypto, key), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'config');
  storage.objects.set('config', utf8('not json'));
  await assert.rejects(Repository.open(storage, crypto, key), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'config');
});

test('packs stay within their size while many files fill them and the store is slow (blobs that wait for a pack to ship look again)', async () => {
  class SlowStorage extends MemoryStorage {
    override async put(name: string, data: Uint8Array) {
      await new Promise((r) => setTimeout(r, 3));
      return super.put(name, data);
    }
  }
  const storage = new SlowStorage();
  // Chunks as large as a pack: every blob closes a pack, and many wait for the one being written.
  const big = 64 * 1024;
  const repo = await Repository.init(storage, crypto, new SecretKey(new Uint8Array(32).fill(8)), { chunkSize: big, packSize: big });
  const tree = new Map<string, MemFile>();
  for (let i = 0; i < 40; i++) tree.set(`f${i}`, { kind: 'file', data: crypto.randomBytes(3 * big + i + 1), mode: 0o644, mtimeNs: String(i) });
  const r = await backup(repo, new MemorySource(tree), { packsInFlight: 1, filesInFlight: 8 });
  for (const p of await storage.list('packs/')) assert.ok(storage.objects.get(p)!.length <= padme(2 * big + 8192), `${p} is ${storage.objects.get(p)!.length} bytes`);
  assert.equal(r.chunksUploaded, 40 * 4);
  const out = new MemoryTarget();
  await restore(repo, out);
  assert.ok(sameTree(tree, out.committed!));
});

test('a streamed pack holds each blob at the offset its header gives, whatever mix of small and large blobs (§3.2)', async () => {
  const { PackStream, PackBuilder } = await import('#src/pack.js');
  const { sealChunks } = await import('#src/codec.js');
  const { deriveKeys } = await import('#src/keys.js');
  const keys = await deriveKeys(crypto, new SecretKey(new Uint8Array(32).fill(6)));
  const sizes = [100, 40_000, 300, 9_000, 200, 70_000, 10, 33_000, 5];
  const { ids, sealed } = await sealChunks(crypto, keys, 65536, sizes.map((n) => crypto.randomBytes(n)));
  const storage = new MemoryStorage();
  const writer = await storage.writer!('packs/' + 'ab'.repeat(32));
  const stream = new PackStream('ab'.repeat(32), writer, new Uint8Array(16_384)); // large blobs go out as they are
  const builder = new PackBuilder('ab'.repeat(32), 1 << 20, 1 << 20);
  for (let i = 0; i < ids.length; i++) {
    await stream.add(ids[i]!, sealed[i]!, sizes[i]!);
    builder.add(ids[i]!, sealed[i]!, sizes[i]!);
  }
  await stream.finish(crypto, keys, 65536);
  const pack = storage.objects.get('packs/' + 'ab'.repeat(32))!;
  const listed = await readPackHeader(crypto, keys, pack, 'ab'.repeat(32), 65536);
  assert.deepEqual(listed, builder.blobs, 'the same table as a pack built in memory');
  for (const [i, b] of listed.entries()) assert.deepEqual(pack.subarray(b.offset, b.offset + b.sealedLength), sealed[i], `blob ${i} at its offset`);
  assert.equal(pack.length, padme(pack.length));
});

test('messages first (§6.3): the database is restored and reported first, read in gets of its own, before any other', async () => {
  const gets: { name: string; offset: number; length: number }[] = [];
  /** Pack gets as they start and end. */
  const events: string[] = [];
  class Recording extends MemoryStorage {
    override async get(name: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
      if (!name.startsWith('packs/') || !range) return super.get(name, range);
      const k = gets.push({ name, offset: range.offset, length: range.length }) - 1;
      events.push(`start ${k}`);
      await new Promise((r) => setTimeout(r, 5));
      events.push(`end ${k}`);
      return super.get(name, range);
    }
  }
  // The database is stored just before small files (names in order), so its last blob lies right
  // before theirs in the pack: one ranged get would read both, were a database not read alone.
  const file = (size: number, mtimeNs: string): MemFile => ({ kind: 'file', data: crypto.randomBytes(size), mode: 0o644, mtimeNs });
  const tree = new Map<string, MemFile>([
    ['chat.db', file(CHUNK + 100, '1')],
    ['media', { kind: 'dir', mode: 0o755, mtimeNs: '1' }],
    // An empty file comes right after the database in the order, with nothing to read.
    ['media/.nomedia', file(0, '1')],
    ['media/a.jpg', file(300, '2')],
    ['media/b.jpg', file(2 * CHUNK, '3')],
    ['media/c.mp4', file(6 * CHUNK, '4')],
  ]);
  const repo = await Repository.init(new Recording(), crypto, new SecretKey(new Uint8Array(32).fill(3)), { chunkSize: CHUNK, packSize: PACK });
  // One chunk in flight: the blobs go into the pack in the order of the names.
  await backup(repo, new MemorySource(tree), { concurrency: 1 });
  const manifest = await repo.readManifest(1);
  const index = await repo.loadIndex();
  const db = manifest.entries.find((e) => e.path === 'chat.db')!;
  const dbBlobs = db.chunks!.map((id, i) => repo.locate(index, id, i === 0 ? CHUNK : 100));
  const next = manifest.entries.find((e) => e.path === 'media/a.jpg')!;
  const after = repo.locate(index, next.chunks![0]!, 300);
  assert.equal(after.offset, dbBlobs[1]!.offset + dbBlobs[1]!.sealedLength, 'the test needs a small file right after the database');
  gets.length = 0;
  const order: string[] = [];
  const out = new MemoryTarget();
  await restore(repo, out, { onFile: (e) => order.push(e.path) });
  assert.ok(sameTree(tree, out.committed!));
  // (Empty files are done before anything is read.)
  assert.equal(order.filter((p) => tree.get(p)!.data!.length > 0)[0], 'chat.db');
  const start = dbBlobs[0]!.offset;
  const end = dbBlobs[1]!.offset + dbBlobs[1]!.sealedLength;
  const reading = gets.filter((g) => g.name === dbBlobs[0]!.name && g.offset < end && g.offset + g.length > start);
  assert.deepEqual(reading, [{ name: dbBlobs[0]!.name, offset: start, length: end - start }], 'one get, of the database alone');
  // The other files' gets start once the database is in: it has the store and the codec to itself.
  const k = gets.indexOf(reading[0]!);
  assert.equal(k, 0, 'the database is read first');
  assert.deepEqual(events.slice(0, 2), ['start 0', 'end 0'], `the other gets waited for the database's: ${events.join(', ')}`);
  assert.ok(gets.length > 1);
});

test('verify follows the chain of parents: a manifest the store dropped is reported, one a forget removed is not (§5, §9.1)', async () => {
  const { writeJournal } = await import('#src/journal.js');
  const { storage, repo } = await setupPacks(bigTree());
  const second = await backup(repo, new MemorySource(bigTree()));
  await backup(repo, new MemorySource(bigTree()));
  assert.deepEqual((await verify(repo)).damaged, []);
  const kept = storage.objects.get(second.name)!;
  storage.objects.delete(second.name);
  const v = await verify(repo);
  assert.deepEqual(v.damaged.map((d) => [d.object, d.reason]), [[second.name, 'missing']]);
  assert.match(v.damaged[0]!.message, /no forget removed it: the store dropped it/);
  await writeJournal(repo, { kind: 'forget', time: new Date().toISOString(), manifests: [second.name] });
  assert.deepEqual((await verify(repo)).damaged, [], 'a forget says why it is gone');
  // Another object under the parent's name is caught by its hash (here: a copy of another backup).
  storage.objects.set(second.name, kept.slice());
  storage.objects.get(second.name)![100]! ^= 1;
  assert.ok((await verify(repo)).damaged.some((d) => d.object === second.name));
});
