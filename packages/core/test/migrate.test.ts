/**
 * Migration of version 1 stores (spec/format.md §10.2), with version 1 stores written by the
 * test-only writer (v1-store.ts) from core's primitives, and by the spec's v1 vector.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  backup, ConflictError, DamagedBackupError, generateBackupKey, MemoryStorage, migrate, parseRecoveryKey, Repository, restore, SecretKey,
  verify, type CryptoProvider, type MigrateOptions, type Storage,
} from '@coffer/core';
import { PACKS_PER_INDEX } from '#src/engine.js';
import { parseManifestName } from '#src/layout.js';
import { migratedWriter } from '#src/migrate.js';
import { PackBuilder } from '#src/pack.js';
import { manifestName } from '@coffer/core/testing';
import { FolderTarget, LocalStorage, nodeCryptoProvider } from '@coffer/node';
import { MemorySource, MemoryTarget, providers, sameTree, type MemFile } from './helpers.js';
import { backupV1, initV1 } from './v1-store.js';

/** Chunks of 16 KiB in packs of 64 KiB: small stores, yet several packs and index objects. */
const CHUNK = 16 * 1024;
const PACK = 64 * 1024;
const VECTORS = new URL('../../../../spec/vectors/', import.meta.url).pathname;

/** A random tree: folders, a symlink, files of 0 to 5 chunks, and a file every version shares. */
function randomTree(crypto: CryptoProvider, files: number, shared: Uint8Array, chunk = CHUNK): Map<string, MemFile> {
  const t = new Map<string, MemFile>();
  const time = () => String(1_700_000_000_000_000_000n + BigInt(Math.floor(Math.random() * 1e15)));
  t.set('chats', { kind: 'dir', mode: 0o755, mtimeNs: time() });
  t.set('media', { kind: 'dir', mode: 0o700, mtimeNs: time() });
  t.set('chats/shared.db', { kind: 'file', data: shared, mode: 0o600, mtimeNs: '1000' });
  t.set('latest', { kind: 'symlink', target: 'chats/shared.db', mode: 0o777, mtimeNs: time() });
  for (let i = 0; i < files; i++) {
    const size = i % 7 === 0 ? 0 : i % 5 === 1 ? Math.floor(Math.random() * 100) + 1 : chunk + Math.floor(Math.random() * 2 * chunk);
    t.set(`media/f${i}-${Math.random().toString(36).slice(2, 6)}.bin`, { kind: 'file', data: crypto.randomBytes(size), mode: 0o644, mtimeNs: time() });
  }
  t.set('empty.txt', { kind: 'file', data: new Uint8Array(0), mode: 0o644, mtimeNs: time() });
  return t;
}

interface V1Store {
  storage: MemoryStorage;
  key: SecretKey;
  /** The tree of each backup, by seq. */
  trees: Map<number, Map<string, MemFile>>;
}

async function v1Store(crypto: CryptoProvider, backups = 3, files = 12, chunk = CHUNK): Promise<V1Store> {
  const storage = new MemoryStorage();
  const key = generateBackupKey(crypto);
  await initV1(storage, crypto, key, { chunkSize: chunk });
  const shared = crypto.randomBytes(3 * chunk + 17);
  const trees = new Map<number, Map<string, MemFile>>();
  for (let i = 0; i < backups; i++) {
    const tree = randomTree(crypto, files, shared, chunk);
    const r = await backupV1(storage, crypto, key, new MemorySource(tree), { now: new Date(Date.UTC(2026, 0, 1 + i)) });
    trees.set(r.seq, tree);
  }
  return { storage, key, trees };
}

const clone = (s: MemoryStorage): MemoryStorage => {
  const c = new MemoryStorage();
  for (const [k, v] of s.objects) c.objects.set(k, v.slice());
  return c;
};

const names = (s: MemoryStorage, prefix: string) => [...s.objects.keys()].filter((n) => n.startsWith(prefix)).sort();

/** Every backup of `store` restores to its tree, byte for byte, from `storage`; returns the store's version. */
async function restoresAll(storage: Storage, crypto: CryptoProvider, store: V1Store): Promise<1 | 2> {
  const repo = await Repository.open(storage, crypto, store.key);
  for (const [seq, tree] of store.trees) {
    const out = new MemoryTarget();
    await restore(repo, out, { seq });
    assert.ok(sameTree(tree, out.committed!), `backup #${seq} restores byte for byte (version ${repo.version})`);
  }
  return repo.version;
}

/** A finished migration: version 2, nothing of version 1 left, every backup restores, verify is clean. */
async function assertMigrated(storage: MemoryStorage, crypto: CryptoProvider, store: V1Store): Promise<void> {
  assert.equal(await restoresAll(storage, crypto, store), 2);
  assert.deepEqual(names(storage, 'data/'), [], 'no version 1 data objects left');
  assert.deepEqual(names(storage, 'manifests/').filter((n) => parseManifestName(n)?.writer === null), [], 'no version 1 manifests left');
  assert.equal(storage.objects.has('config.v2'), false, 'config.v2 removed');
  assert.deepEqual(names(storage, 'locks/'), [], 'no lock left');
  const repo = await Repository.open(storage, crypto, store.key);
  const v = await verify(repo);
  assert.deepEqual(v.damaged, []);
  assert.deepEqual(v.manifests, [...store.trees.keys()]);
}

for (const crypto of providers) {
  test(`migrate: every version 1 backup restores byte for byte from version 2, chained, and verify is clean (${crypto.name})`, async () => {
    const store = await v1Store(crypto);
    const v1Data = names(store.storage, 'data/').length;
    const v1Config = JSON.parse(new TextDecoder().decode(store.storage.objects.get('config')));
    const repo = await Repository.open(store.storage, crypto, store.key);
    const progress: string[] = [];
    const r = await migrate(repo, { packSize: PACK, host: 'here', pid: 1, onProgress: (p) => progress.push(p.phase) });
    assert.equal(r.fromVersion, 1);
    assert.equal(r.objects, v1Data);
    assert.equal(r.objectsPacked, v1Data);
    assert.equal(r.objectsDeleted, v1Data);
    assert.equal(r.manifests, 3);
    assert.equal(r.manifestsWritten, 3);
    assert.equal(r.manifestsDeleted, 3);
    assert.equal(r.switched, true);
    assert.deepEqual(r.damaged, []);
    assert.ok(r.packsWritten >= 5, `several packs (${r.packsWritten}), so index objects were written along the way`);
    assert.ok(names(store.storage, 'index/').length >= 2, 'an index object every few packs');
    assert.deepEqual([...new Set(progress)], ['pack', 'manifests', 'switch', 'cleanup', 'done']);
    await assertMigrated(store.storage, crypto, store);

    // The new config: same identity and sizes, a MAC, and exactly what Repository.makeConfig gives.
    const config: Record<string, unknown> = JSON.parse(new TextDecoder().decode(store.storage.objects.get('config')));
    assert.deepEqual({ ...config }, r.config);
    assert.equal(config.version, 2);
    for (const k of ['backupId', 'chunkSize', 'segmentSize', 'keyCheck']) assert.equal(config[k], v1Config[k], k);
    assert.equal(config.packSize, PACK);
    assert.match(String(config.mac), /^[0-9a-f]{64}$/);

    // Manifests: named by seq, chained by the hash of the parent as stored, createdAt kept.
    const v2 = await Repository.open(store.storage, crypto, store.key);
    const refs = await v2.manifests();
    assert.deepEqual(refs.map((x) => x.name), [1, 2, 3].map((s) => manifestName(s, migratedWriter(s))));
    for (const ref of refs) {
      const h = (await v2.readManifest(ref)).header;
      assert.equal(h.version, 2);
      assert.equal(h.createdAt, new Date(Date.UTC(2026, 0, ref.seq)).toISOString());
      if (ref.seq === 1) assert.equal(h.parent, null);
      else {
        const parent = manifestName(ref.seq - 1, migratedWriter(ref.seq - 1));
        assert.deepEqual(h.parent, { name: parent, hash: createHash('sha256').update(store.storage.objects.get(parent)!).digest('hex') });
      }
    }

    // A second run has nothing to do and writes nothing.
    const before = clone(store.storage);
    const again = await migrate(v2, { host: 'here', pid: 1 });
    assert.equal(again.nothingToDo, true);
    assert.deepEqual([...store.storage.objects.keys()].sort(), [...before.objects.keys()].sort());

    // Backups go on in version 2, incrementally: the shared file's blobs are found in the migrated packs.
    const tree4 = new Map(store.trees.get(3)!);
    tree4.set('new.txt', { kind: 'file', data: crypto.randomBytes(100), mode: 0o644, mtimeNs: '5' });
    const b = await backup(v2, new MemorySource(tree4), { lastSeenSeq: 3 });
    assert.equal(b.seq, 4);
    assert.equal(b.chunksUploaded, 1, 'only the new file is uploaded');
    const out = new MemoryTarget();
    await restore(await Repository.open(store.storage, crypto, store.key), out);
    assert.ok(sameTree(tree4, out.committed!));
  });
}

test('migrate --dry-run says what a run would do and changes nothing', async () => {
  const crypto = nodeCryptoProvider;
  const store = await v1Store(crypto);
  const before = clone(store.storage);
  const repo = await Repository.open(store.storage, crypto, store.key);
  const dry = await migrate(repo, { dryRun: true, packSize: PACK });
  assert.deepEqual(store.storage.objects, before.objects, 'the store is unchanged, byte for byte');
  const real = await migrate(repo, { packSize: PACK });
  assert.equal(dry.dryRun, true);
  for (const k of ['objects', 'objectsPacked', 'bytesPacked', 'manifests', 'manifestsWritten', 'switched', 'objectsDeleted', 'manifestsDeleted'] as const) {
    assert.equal(dry[k], real[k], k);
  }
  assert.deepEqual(dry.config, real.config, 'the config a dry run shows is the one written');
});

test('migrate the spec v1/valid vector in a local folder: the newest backup restores to the vector files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-migrate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(join(VECTORS, 'v1', 'valid', 'repo'), join(dir, 'repo'), { recursive: true });
  const v = JSON.parse(await readFile(join(VECTORS, 'v1', 'valid', 'vector.json'), 'utf8'));
  const storage = await LocalStorage.open(join(dir, 'repo'));
  const key = parseRecoveryKey(v.recoveryKey);
  const r = await migrate(await Repository.open(storage, nodeCryptoProvider, key), { host: 'here', pid: 1 });
  assert.equal(r.objectsPacked, 3);
  assert.equal(r.manifestsWritten, 2);
  assert.deepEqual(await storage.list('data/'), []);
  const repo = await Repository.open(storage, nodeCryptoProvider, key);
  assert.equal(repo.version, 2);
  await restore(repo, new FolderTarget(join(dir, 'out')), { lastSeenSeq: v.lastSeenSeq });
  for (const [path, sha] of Object.entries(v.files as Record<string, string>)) {
    assert.equal(createHash('sha256').update(await readFile(join(dir, 'out', path))).digest('hex'), sha, path);
  }
  assert.deepEqual((await verify(repo)).damaged, []);
});

/* ------------------------------------------------------------------------------------------------
 * Killed at every storage operation
 * --------------------------------------------------------------------------------------------- */

/**
 * A store whose process dies after `crashAt` operations: every later operation throws. With
 * `loseUnflushed`, the crash also undoes every put and delete since the last flush (a power loss
 * on a store whose flush is what makes writes durable).
 */
class CrashingStorage implements Storage {
  readonly label = 'crashing:';
  ops = 0;
  crashed = false;
  private undo: (() => void)[] = [];
  constructor(readonly inner: MemoryStorage, private readonly crashAt: number, private readonly loseUnflushed: boolean) {}
  private step(what: string): void {
    if (!this.crashed && this.ops < this.crashAt) {
      this.ops++;
      return;
    }
    if (!this.crashed) {
      this.crashed = true;
      if (this.loseUnflushed) for (const u of this.undo.reverse()) u();
    }
    throw new Error(`the process died (operation ${this.crashAt}: ${what})`);
  }
  async put(name: string, data: Uint8Array) {
    this.step(`put ${name}`);
    const had = this.inner.objects.has(name);
    const done = this.inner.put(name, data);
    if (!had) this.undo.push(() => this.inner.objects.delete(name));
    await done;
  }
  async delete(name: string) {
    this.step(`delete ${name}`);
    const old = this.inner.objects.get(name);
    const done = this.inner.delete(name);
    if (old) this.undo.push(() => this.inner.objects.set(name, old));
    await done;
  }
  async flush() {
    this.step('flush');
    this.undo = [];
  }
  async get(name: string, range?: { offset: number; length: number }) {
    this.step(`get ${name}`);
    return this.inner.get(name, range);
  }
  async stat(name: string) {
    this.step(`stat ${name}`);
    return this.inner.stat(name);
  }
  async list(prefix: string) {
    this.step(`list ${prefix}`);
    return this.inner.list(prefix);
  }
}

/** A migration that may die on the way (only of that). */
async function killedRun(storage: CrashingStorage, crypto: CryptoProvider, store: V1Store, o: MigrateOptions): Promise<void> {
  try {
    await migrate(await Repository.open(storage, crypto, store.key), o);
  } catch (e) {
    if (!/the process died/.test((e as Error).message)) throw e;
  }
}

/** The killed run was host `h`, process 1; a re-run (process 2) on the same host knows process 1 is gone. */
const options = (pid: number): MigrateOptions => ({ packSize: PACK, host: 'h', pid, lockIsDead: (l) => l.host === 'h' && l.pid !== pid });

for (const loseUnflushed of [false, true]) {
  test(`migrate killed at every storage operation${loseUnflushed ? ', losing unflushed writes' : ''}: the store restores, as version 1 before the switch and 2 after, and a re-run completes`, async () => {
    const crypto = nodeCryptoProvider;

    const store = await v1Store(crypto, 2, 6);
    const counter = new CrashingStorage(clone(store.storage), Infinity, false);
    const full = await migrate(await Repository.open(counter, crypto, store.key), options(1));
    assert.ok(full.packsWritten > PACKS_PER_INDEX, `index objects are written along the way (${full.packsWritten} packs)`);
    const total = counter.ops;
    assert.ok(total > 50, `a migration is many operations (${total})`);
    const seen = new Set<number>();
    for (let n = 0; n < total; n++) {
      const storage = clone(store.storage);
      const crashing = new CrashingStorage(storage, n, loseUnflushed);
      await killedRun(crashing, crypto, store, options(1));
      assert.ok(crashing.crashed, `killed at operation ${n}`);
      seen.add(await restoresAll(storage, crypto, store));
      const r = await migrate(await Repository.open(storage, crypto, store.key), options(2));
      assert.deepEqual(r.damaged, [], `operation ${n}`);
      await assertMigrated(storage, crypto, store);
    }
    assert.deepEqual([...seen].sort(), [1, 2], 'killed before the switch the store reads as version 1, after it as version 2');
  });
}

test('migrate killed again and again at random points: every state restores, and the last run completes', async () => {
  const crypto = nodeCryptoProvider;
  const store = await v1Store(crypto, 2, 6);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 150 }), { minLength: 1, maxLength: 4 }), fc.boolean(), async (kills, lose) => {
      const storage = clone(store.storage);
      for (const [i, n] of kills.entries()) {
        await killedRun(new CrashingStorage(storage, n, lose), crypto, store, options(10 + i));
        await restoresAll(storage, crypto, store);
      }
      await migrate(await Repository.open(storage, crypto, store.key), options(99));
      await assertMigrated(storage, crypto, store);
    }),
    { numRuns: 15 },
  );
});

/* ------------------------------------------------------------------------------------------------
 * Locks, damage and an altered config
 * --------------------------------------------------------------------------------------------- */

test('migrate refuses while another lock is alive, and changes nothing', async () => {
  const crypto = nodeCryptoProvider;
  const store = await v1Store(crypto, 1, 4);
  // A killed migration's lock (host h, process 1) still counts for anyone who cannot tell that process is gone.
  const crashing = new CrashingStorage(store.storage, 20, false);
  await assert.rejects((async () => migrate(await Repository.open(crashing, crypto, store.key), options(1)))());
  assert.equal(names(store.storage, 'locks/').length, 1, 'the killed run left its lock');
  const before = names(store.storage, '');
  const refused = migrate(await Repository.open(store.storage, crypto, store.key), { packSize: PACK, host: 'elsewhere', pid: 7 });
  await assert.rejects(refused, (e: unknown) => e instanceof ConflictError && /a migrate on h \(process 1/.test((e as Error).message));
  assert.deepEqual(names(store.storage, ''), before, 'nothing written but the refused run\'s own lock, which it removed');
  // The same host knows process 1 is gone: it goes ahead, and removes the dead lock.
  await migrate(await Repository.open(store.storage, crypto, store.key), options(2));
  await assertMigrated(store.storage, crypto, store);
});

test('damaged version 1 objects are reported and left in place; everything else migrates', async () => {
  const crypto = nodeCryptoProvider;
  const store = await v1Store(crypto, 3, 6);
  const repo1 = await Repository.open(store.storage, crypto, store.key);
  // Objects only backup #1 uses, so #2 and #3 stay whole.
  const m1 = await repo1.readManifest(1);
  const later = new Set<string>();
  for (const seq of [2, 3]) for (const e of (await repo1.readManifest(seq)).entries) for (const c of e.chunks ?? []) later.add(c);
  const only1 = [...new Set(m1.entries.flatMap((e) => e.chunks ?? []))].filter((c) => !later.has(c));
  assert.ok(only1.length >= 3);
  const [flipped, cut, other] = only1.map((id) => `data/${id}`);
  store.storage.objects.get(flipped!)![5] = 0x07; // header: wrong type
  store.storage.objects.set(cut!, store.storage.objects.get(cut!)!.slice(0, 50)); // cut short of a header and a tag
  store.storage.objects.set(other!, store.storage.objects.get(`data/${[...later][0]}`)!.slice()); // another object under its name
  const junk = manifestName(4, null);
  store.storage.objects.set(junk, crypto.randomBytes(500)); // a manifest that does not open

  const r = await migrate(repo1, { packSize: PACK, host: 'h', pid: 1 });
  const byObject = new Map(r.damaged.map((d) => [d.object, d.reason]));
  assert.equal(byObject.get(flipped!), 'corrupt');
  assert.equal(byObject.get(cut!), 'truncated');
  assert.equal(byObject.get(other!), 'misplaced');
  assert.equal(byObject.get(junk), 'corrupt');
  assert.equal(r.switched, true);
  assert.deepEqual(names(store.storage, 'data/'), [cut, flipped, other].sort(), 'damaged objects stay, the others are gone');
  assert.ok(store.storage.objects.has(junk), 'the manifest that does not open stays');

  const repo = await Repository.open(store.storage, crypto, store.key);
  assert.equal(repo.version, 2);
  for (const seq of [2, 3]) {
    const out = new MemoryTarget();
    await restore(repo, out, { seq });
    assert.ok(sameTree(store.trees.get(seq)!, out.committed!), `#${seq}`);
  }
  await assert.rejects(restore(repo, new MemoryTarget(), { seq: 1 }), (e: unknown) => e instanceof DamagedBackupError && e.reason === 'missing');
  // Each later run reports the same leftovers, and changes nothing else.
  const again = await migrate(repo, { host: 'h', pid: 1 });
  assert.equal(again.nothingToDo, false);
  assert.deepEqual(new Set(again.damaged.map((d) => d.object)), new Set([flipped, cut, other, junk]));
  assert.equal(again.objectsPacked + again.manifestsWritten + again.objectsDeleted + again.manifestsDeleted, 0);
});

test('an altered version 1 config is caught before migration would authenticate it', async () => {
  const crypto = nodeCryptoProvider;
  const alter = (s: MemoryStorage, chunkSize: number) => {
    const c = JSON.parse(new TextDecoder().decode(s.objects.get('config')));
    s.objects.set('config', new TextEncoder().encode(JSON.stringify({ ...c, chunkSize }) + '\n'));
  };
  // chunkSize lowered (dedup would leak at a finer grain): a full chunk is longer than the config allows.
  const store = await v1Store(crypto, 2, 6);
  const orig = clone(store.storage);
  const key = store.key;
  const small = new MemoryStorage();
  await initV1(small, crypto, key, { chunkSize: 8192 });
  await backupV1(small, crypto, key, new MemorySource(randomTree(crypto, 4, crypto.randomBytes(3 * 8192), 8192)));
  alter(small, 4096);
  const before = clone(small);
  await assert.rejects(
    migrate(await Repository.open(small, crypto, key), { packSize: PACK, host: 'h', pid: 1 }),
    (e: unknown) => e instanceof DamagedBackupError && e.reason === 'config' && /the config was altered/.test((e as Error).message),
  );
  assert.equal((await Repository.open(small, crypto, key)).version, 1, 'still version 1');
  assert.deepEqual(names(small, 'data/'), names(before, 'data/'));
  assert.equal(small.objects.has('config.v2'), false);

  // chunkSize raised: no manifest with a file of several chunks opens, and the migration stops before the switch.
  alter(store.storage, 64 * 1024);
  await assert.rejects(
    migrate(await Repository.open(store.storage, crypto, key), { packSize: PACK, host: 'h', pid: 1 }),
    (e: unknown) => e instanceof DamagedBackupError && /none of the 2 version 1 backups opens/.test((e as Error).message),
  );
  assert.equal(store.storage.objects.has('config.v2'), false, 'no switch');
  assert.deepEqual(names(store.storage, 'data/'), names(orig, 'data/'), 'nothing deleted');
});

/** A memory store that runs `beforeSwitch` (once) just before a migration writes `config.v2`. */
class SwitchHookStorage extends MemoryStorage {
  constructor(public beforeSwitch: (() => Promise<unknown>) | null) {
    super();
  }
  override async put(name: string, data: Uint8Array): Promise<void> {
    if (name === 'config.v2' && this.beforeSwitch) {
      const hook = this.beforeSwitch;
      this.beforeSwitch = null;
      await hook();
    }
    return super.put(name, data);
  }
}

test('a version 1 backup that an older coffer writes during the migration is kept, and migrated by the next run', async () => {
  const crypto = nodeCryptoProvider;
  const store = await v1Store(crypto, 2, 5);
  const late = randomTree(crypto, 3, crypto.randomBytes(10));
  const storage: SwitchHookStorage = new SwitchHookStorage((): Promise<unknown> => backupV1(storage, crypto, store.key, new MemorySource(late), { now: new Date(Date.UTC(2026, 0, 3)) }));
  for (const [k, v] of store.storage.objects) storage.objects.set(k, v);
  const r = await migrate(await Repository.open(storage, crypto, store.key), { packSize: PACK, host: 'h', pid: 1 });
  assert.equal(r.manifests, 2);
  assert.ok(storage.objects.has(manifestName(3, null)), 'the late version 1 manifest was not deleted');
  assert.ok(names(storage, 'data/').length > 0, 'nor the objects it wrote');
  const again = await migrate(await Repository.open(storage, crypto, store.key), { packSize: PACK, host: 'h', pid: 1 });
  assert.equal(again.fromVersion, 2);
  assert.equal(again.manifestsWritten, 1);
  assert.ok(again.objectsPacked > 0, 'its new objects are packed');
  store.trees.set(3, late);
  await assertMigrated(storage, crypto, store);
});

test('memory stays bounded: a slow store makes the readers wait, not more packs fill up', async () => {
  const crypto = nodeCryptoProvider;
  const store = await v1Store(crypto, 2, 40);
  /** Pack puts take a while, as on a cloud store: full packs queue up behind them. */
  class SlowPacks extends MemoryStorage {
    override async put(name: string, data: Uint8Array): Promise<void> {
      if (name.startsWith('packs/')) await new Promise((r) => setTimeout(r, 5));
      return super.put(name, data);
    }
  }
  const storage = new SlowPacks();
  for (const [k, v] of store.storage.objects) storage.objects.set(k, v);
  // Every pack buffer a migration allocates goes through PackBuilder.capacity.
  const capacity = PackBuilder.capacity;
  let buffers = 0;
  PackBuilder.capacity = (packSize: number, maxBlob: number) => {
    buffers++;
    return capacity(packSize, maxBlob);
  };
  try {
    const r = await migrate(await Repository.open(storage, crypto, store.key), { packSize: PACK, readsInFlight: 8, packsInFlight: 2 });
    assert.ok(r.packsWritten > 20, `${r.packsWritten} packs`);
    assert.ok(buffers <= 4, `${buffers} pack buffers for ${r.packsWritten} packs: the two being written, the one filling, and one spare`);
  } finally {
    PackBuilder.capacity = capacity;
  }
  await assertMigrated(storage, crypto, store);
});
