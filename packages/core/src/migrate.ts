/**
 * Migration of a version 1 store to version 2, in place (spec/format.md §10.2): data objects are
 * copied into packs as they are, manifests re-encoded and chained, the config switched, and the
 * version 1 objects removed. Every step looks at the store before it writes, so a run that was
 * killed at any point is finished by the next one, and a store that is already version 2 is left
 * alone.
 */
import { equalBytes, toHex, utf8 } from './bytes.js';
import { Limiter, Packer } from './engine.js';
import { ConflictError, DamagedBackupError, ObjectNotFoundError } from './errors.js';
import { listLocks, takeLock, type LockInfo } from './journal.js';
import { CONFIG, CONFIG_V2, dataObjectName, idOf, manifestName, parseManifestName, type ManifestRef } from './layout.js';
import { MAX_MANIFEST_BYTES, type Manifest } from './manifest.js';
import { expectedBindingTag, HEADER_BYTES, ObjectType, openObject, sealedSize, TAG_BYTES } from './object.js';
import { DEFAULT_PACK_SIZE, readBounded, Repository, storageCall, type IndexCache, type RepoConfig } from './repo.js';

/** How far a {@link migrate} has come, by phase. */
export interface MigrateProgress {
  phase: 'pack' | 'manifests' | 'switch' | 'cleanup' | 'done';
  /** Data objects copied into packs (phase `pack`), manifests (`manifests`), objects deleted (`cleanup`). */
  objectsDone: number;
  objectsTotal: number;
  /** Sealed bytes copied so far, against an estimate of the total (exact once every object is read). */
  bytesDone: number;
  bytesTotal: number;
}

/** What {@link migrate} takes: all optional. */
export interface MigrateOptions {
  /** Report what a run would do; write nothing (no lock either). */
  dryRun?: boolean;
  onProgress?: (p: MigrateProgress) => void;
  /** Copies of the index objects (the profile's cache, §3.3). */
  indexCache?: IndexCache;
  /** Who holds the lock (§9.3). */
  host?: string;
  pid?: number;
  now?: () => Date;
  /**
   * True for a lock whose process is known to be gone (the CLI: this host, and no process with
   * that id), such as the lock of a migration that was killed: it does not block this one.
   */
  lockIsDead?: (lock: LockInfo) => boolean;
  /** Data objects read at once (default 8). */
  readsInFlight?: number;
  /** Packs being written at once (default 2; each holds up to packSize bytes). */
  packsInFlight?: number;
  /** The new config's packSize (default 16 MiB); an earlier run's choice stands. */
  packSize?: number;
}

/** An object a migration could not move because it was already damaged. */
export interface MigrateDamage {
  object: string;
  reason: string;
  message: string;
}

/** What {@link migrate} did (or would do, in a dry run). */
export interface MigrateResult {
  dryRun: boolean;
  /** The store was version 2 already, with nothing of version 1 left in it. */
  nothingToDo: boolean;
  /** The store's version when this run began (2: an earlier run switched it already). */
  fromVersion: 1 | 2;
  /** Version 1 data objects found in `data/`. */
  objects: number;
  /** Data objects this run copied (or, in a dry run, would copy) into packs, and their bytes. */
  objectsPacked: number;
  bytesPacked: number;
  /** Data objects an earlier, interrupted run had packed already. */
  objectsAlreadyPacked: number;
  packsWritten: number;
  /** Bytes of the packs written (blobs, padding and pack headers). */
  bytesWritten: number;
  /** Version 1 manifests found. */
  manifests: number;
  /** Version 2 manifests this run wrote (or would write). */
  manifestsWritten: number;
  /** This run replaced (or would replace) `config` by the version 2 config. */
  switched: boolean;
  /** Version 1 objects this run deleted (or would delete). */
  objectsDeleted: number;
  manifestsDeleted: number;
  /** Objects that did not pass the checks: left in place, reported (also on every later run). */
  damaged: MigrateDamage[];
  /** The version 2 config (in a dry run: the one a run would write). */
  config: RepoConfig;
}

/** §10.2 step 2: a migrated manifest's writer is its seq in 16 hex digits, so a re-run finds it. */
export const migratedWriter = (seq: number): string => seq.toString(16).padStart(16, '0');

/** The plaintext length of a sealed object of `length` bytes (§4.3), or null when no plaintext seals to it. */
function plainLengthOf(length: number, segmentSize: number): number | null {
  const body = length - HEADER_BYTES;
  if (body < TAG_BYTES) return null;
  const segments = Math.max(1, Math.ceil(body / (segmentSize + TAG_BYTES)));
  const plain = body - segments * TAG_BYTES;
  return plain >= 0 && sealedSize(plain, segmentSize) === length ? plain : null;
}

const configBytes = (c: RepoConfig): Uint8Array => utf8(JSON.stringify(c) + '\n');

/** The largest data object any version 1 writer could have made (chunkSize is at most 64 MiB). */
const MAX_V1_OBJECT = (segmentSize: number) => sealedSize(64 * 1024 * 1024, segmentSize);

/** §10.2: rewrites the version 1 store of `repo` as version 2, or finishes a migration that was interrupted. */
export async function migrate(repo: Repository, options: MigrateOptions = {}): Promise<MigrateResult> {
  const { storage, crypto, keys } = repo;
  const { chunkSize, segmentSize } = repo.config;
  const call = <T>(what: string, fn: () => Promise<T>) => storageCall(storage, what, fn);
  const now = options.now ?? (() => new Date());

  // What is there: data objects, manifests of both versions, the two configs.
  const dataIds = (await call('listing data/', () => storage.list('data/'))).map((n) => idOf(n, 'data')).filter((id): id is string => id !== null).sort();
  const manifestNames = new Set(await call('listing manifests', () => storage.list('manifests/')));
  const v1Refs = [...manifestNames]
    .map(parseManifestName)
    .filter((r): r is ManifestRef => r !== null && r.writer === null)
    .sort((a, b) => a.seq - b.seq);
  const hasConfigV2 = (await call('reading the config', () => storage.stat(CONFIG_V2))) !== null;
  // The version 2 config: the one the store already switched to (checked by Repository.open), or a new one.
  const target = repo.version === 2 ? repo.config : await Repository.makeConfig(crypto, keys, repo.backupId, chunkSize, segmentSize, options.packSize ?? DEFAULT_PACK_SIZE);
  const targetBytes = configBytes(target);
  const currentConfig = await readRaw(repo, CONFIG);
  const needSwitch = !currentConfig || !equalBytes(currentConfig, targetBytes);
  const next = repo.version === 2 ? repo : repo.withConfig(target);

  const result: MigrateResult = {
    dryRun: !!options.dryRun, nothingToDo: false, fromVersion: repo.version, objects: dataIds.length, objectsPacked: 0, bytesPacked: 0,
    objectsAlreadyPacked: 0, packsWritten: 0, bytesWritten: 0, manifests: v1Refs.length, manifestsWritten: 0, switched: needSwitch,
    objectsDeleted: 0, manifestsDeleted: 0, damaged: [], config: target,
  };
  if (repo.version === 2 && dataIds.length === 0 && v1Refs.length === 0 && !hasConfigV2 && !needSwitch) {
    result.nothingToDo = true;
    // A run killed at its very end leaves only its lock.
    if (!options.dryRun && options.lockIsDead) await removeDeadLocks(repo, await listLocks(repo, now().getTime()), null, options.lockIsDead);
    return result;
  }
  if (options.dryRun) return dryRun(repo, next, result, dataIds, v1Refs, manifestNames);

  const lock = await takeLock(repo, 'migrate', { host: options.host ?? 'unknown', pid: options.pid ?? 0 }, now);
  try {
    const locks = await listLocks(repo, now().getTime());
    const other = locks.find((l) => l.name !== lock.name && !l.stale && !options.lockIsDead?.(l));
    if (other) {
      throw new ConflictError(
        `a ${other.kind} on ${other.host} (process ${other.pid}, started ${other.started}) is using the store; run the migration when it is done (a lock that is not refreshed for 30 minutes no longer counts)`,
      );
    }
    const progress: MigrateProgress = { phase: 'pack', objectsDone: 0, objectsTotal: 0, bytesDone: 0, bytesTotal: 0 };
    const report = () => options.onProgress?.({ ...progress });
    const damage = (object: string, reason: string, message: string) => {
      if (!result.damaged.some((d) => d.object === object)) result.damaged.push({ object, reason, message });
    };

    // Step 1: every data object that no index lists goes into a pack, as its sealed bytes.
    const index = await next.loadIndex(options.indexCache);
    const todo = dataIds.filter((id) => !index.has(id));
    result.objectsAlreadyPacked = dataIds.length - todo.length;
    progress.objectsTotal = todo.length;
    progress.bytesTotal = todo.length * sealedSize(chunkSize, segmentSize);
    report();
    const packer = new Packer(next, options.packsInFlight ?? 2, (n) => {
      result.bytesWritten += n;
    }, options.indexCache);
    const maxSealed = sealedSize(chunkSize, segmentSize);
    const reads = new Limiter(options.readsInFlight ?? 8);
    // Objects are read into a few buffers used over and over (memory stays flat whatever the store holds).
    const ours = new WeakSet<ArrayBufferLike>();
    const free: Uint8Array[] = [];
    const alloc = (size: number): Uint8Array => {
      const b = free.pop() ?? new Uint8Array(maxSealed + 1);
      ours.add(b.buffer);
      return size <= b.length ? b.subarray(0, size) : new Uint8Array(size);
    };
    const recycle = (b: Uint8Array) => {
      if (ours.has(b.buffer)) free.push(new Uint8Array(b.buffer, 0, maxSealed + 1));
    };
    let oversized: Promise<void> = Promise.resolve();
    const skipped = (name: string, reason: string, message: string) => {
      damage(name, reason, message);
      progress.objectsDone++;
      report();
    };
    for (const id of todo) {
      await reads.run(async () => {
        const name = dataObjectName(id);
        let sealed: Uint8Array;
        try {
          sealed = await readBounded(storage, name, maxSealed, alloc);
        } catch (e) {
          if (!(e instanceof DamagedBackupError)) throw e;
          // Longer than a chunk may be: damage, or a config whose chunkSize was lowered. One such
          // object is read at a time (each may be up to 64 MiB).
          if (e.reason === 'corrupt') {
            const check = oversized.then(() => checkOversized(repo, id));
            oversized = check.catch(() => {});
            await check;
          }
          skipped(name, e.reason, e.message);
          return;
        }
        try {
          const problem = await blobProblem(repo, id, sealed);
          if (problem) {
            skipped(name, problem.reason, problem.message);
            return;
          }
          // Blobs join packs one at a time: while a full pack waits for its turn to be written, the
          // readers wait too, instead of filling more packs (memory: a few packs and a few objects).
          // The pack copies the bytes, so the buffer is free again once add returns.
          await packer.add(id, sealed, plainLengthOf(sealed.length, segmentSize)!);
        } finally {
          recycle(sealed);
        }
        result.objectsPacked++;
        result.bytesPacked += sealed.length;
        progress.objectsDone++;
        progress.bytesDone += sealed.length;
        // The estimate of the total follows the sizes seen so far.
        progress.bytesTotal = progress.bytesDone + Math.round((progress.bytesDone / progress.objectsDone) * (todo.length - progress.objectsDone));
        report();
      });
    }
    await reads.drain();
    const packs = await packer.finish();
    result.packsWritten = packs.length;
    for (const p of packs) index.add(p);

    // Step 2: manifests, oldest first, so that each one's parent is final before it is linked.
    progress.phase = 'manifests';
    progress.objectsDone = 0;
    progress.objectsTotal = v1Refs.length;
    report();
    const v1Seqs = new Set(v1Refs.map((r) => r.seq));
    const migrated = new Map<number, { name: string; hash: string }>();
    /** A migrated manifest already in the store: its header and hash, or null when it does not open. */
    const readTwin = async (seq: number): Promise<{ manifest: Manifest; hash: string } | null> => {
      const ref: ManifestRef = { name: manifestName(seq, migratedWriter(seq)), seq, writer: migratedWriter(seq) };
      if (!manifestNames.has(ref.name)) return null;
      try {
        const sealed = await readBounded(storage, ref.name, sealedSize(MAX_MANIFEST_BYTES, segmentSize));
        return { manifest: await next.decodeManifest(ref, sealed), hash: toHex(await crypto.sha256(sealed)) };
      } catch (e) {
        if (e instanceof DamagedBackupError) return null;
        throw e;
      }
    };
    const parentOf = async (seq: number | null | undefined) => {
      if (seq == null) return null;
      const known = migrated.get(seq);
      if (known) return known;
      // Its version 1 manifest is gone (an earlier run's cleanup): the migrated one stands alone.
      if (v1Seqs.has(seq)) return null;
      const twin = await readTwin(seq);
      return twin ? { name: manifestName(seq, migratedWriter(seq)), hash: twin.hash } : null;
    };
    const twinned: ManifestRef[] = [];
    let opened = 0;
    let firstFailure: DamagedBackupError | null = null;
    for (const ref of v1Refs) {
      let v1: Manifest;
      try {
        v1 = await repo.readManifest(ref);
      } catch (e) {
        if (!(e instanceof DamagedBackupError)) throw e;
        firstFailure ??= e;
        // Damaged after an earlier run migrated it: the migrated manifest is what counts now.
        const twin = await readTwin(ref.seq);
        if (twin) {
          migrated.set(ref.seq, { name: manifestName(ref.seq, migratedWriter(ref.seq)), hash: twin.hash });
          twinned.push(ref);
          opened++;
        } else damage(ref.name, e.reason, e.message);
        continue;
      }
      opened++;
      for (const e of v1.entries) {
        e.chunks?.forEach((id, i) => {
          const loc = index.get(id);
          if (!loc) damage(dataObjectName(id), 'missing', `backup #${ref.seq} names it, and no pack holds it: it was missing or damaged in the version 1 store`);
          else if (loc.plainLength !== Math.min(chunkSize, e.size! - i * chunkSize)) {
            damage(dataObjectName(id), 'corrupt', `backup #${ref.seq} names it, and its length is not what the backup says: it was damaged in the version 1 store`);
          }
        });
      }
      const parent = await parentOf(v1.header.parentSeq);
      const writer = migratedWriter(ref.seq);
      const name = manifestName(ref.seq, writer);
      const twin = await readTwin(ref.seq);
      if (twin && twin.manifest.header.parent?.name === parent?.name && twin.manifest.header.parent?.hash === parent?.hash) {
        migrated.set(ref.seq, { name, hash: twin.hash });
      } else {
        // A twin that does not open, or names another parent (its parent was written again): replace it.
        if (manifestNames.has(name)) await call(`deleting ${name}`, () => storage.delete(name));
        const { header } = v1;
        const written = await next.writeManifest({
          header: {
            type: 'coffer-manifest', version: 2, backupId: header.backupId, seq: ref.seq, writer, parent,
            createdAt: header.createdAt, entries: header.entries, files: header.files, bytes: header.bytes,
          },
          entries: v1.entries,
        });
        manifestNames.add(name);
        migrated.set(ref.seq, { name, hash: await next.manifestHash(written) });
        result.manifestsWritten++;
      }
      twinned.push(ref);
      progress.objectsDone++;
      report();
    }
    if (v1Refs.length > 0 && opened === 0 && needSwitch) {
      throw new DamagedBackupError(firstFailure!.reason, firstFailure!.object, {
        detail: `none of the ${v1Refs.length} version 1 backups opens, so the migration stopped before switching the store to version 2 (${firstFailure!.detail ?? firstFailure!.message})`,
      });
    }
    await call('flush', () => storage.flush());

    // Step 3: config.v2, then `config` replaced by the same bytes.
    progress.phase = 'switch';
    report();
    if (needSwitch) {
      const waiting = await readRaw(repo, CONFIG_V2);
      if (!waiting || !equalBytes(waiting, targetBytes)) {
        if (waiting) await call(`deleting ${CONFIG_V2}`, () => storage.delete(CONFIG_V2));
        await call(`writing ${CONFIG_V2}`, () => storage.put(CONFIG_V2, targetBytes));
        await call('flush', () => storage.flush());
      }
      await call('replacing the config', () => storage.delete(CONFIG));
      await call('replacing the config', () => storage.put(CONFIG, targetBytes));
      await call('flush', () => storage.flush());
    }

    // Step 4: what version 2 no longer needs. Anything that did not migrate stays.
    progress.phase = 'cleanup';
    const gone = dataIds.filter((id) => index.has(id));
    progress.objectsDone = 0;
    progress.objectsTotal = twinned.length + gone.length;
    report();
    const deletes = new Limiter(8);
    const remove = async (name: string) => {
      await deletes.run(async () => {
        await call(`deleting ${name}`, () => storage.delete(name));
        progress.objectsDone++;
        report();
      });
    };
    for (const ref of twinned) await remove(ref.name);
    await deletes.drain();
    result.manifestsDeleted = twinned.length;
    for (const id of gone) await remove(dataObjectName(id));
    await deletes.drain();
    result.objectsDeleted = gone.length;
    await call('flush', () => storage.flush());
    if (hasConfigV2 || needSwitch) {
      await call(`deleting ${CONFIG_V2}`, () => storage.delete(CONFIG_V2));
      await call('flush', () => storage.flush());
    }
    if (options.lockIsDead) await removeDeadLocks(repo, locks, lock.name, options.lockIsDead);
    progress.phase = 'done';
    report();
    return result;
  } finally {
    await lock.release();
  }
}

/** Deletes the locks of earlier migrations whose process is gone. */
async function removeDeadLocks(repo: Repository, locks: LockInfo[], own: string | null, isDead: (l: LockInfo) => boolean): Promise<void> {
  for (const l of locks) {
    if (l.kind === 'migrate' && l.name !== own && isDead(l)) await storageCall(repo.storage, `deleting ${l.name}`, () => repo.storage.delete(l.name));
  }
}

/** The bytes of a config object, or null when it is missing. */
async function readRaw(repo: Repository, name: string): Promise<Uint8Array | null> {
  try {
    return await storageCall(repo.storage, 'reading the config', () => repo.storage.get(name, { offset: 0, length: 64 * 1024 + 1 }));
  } catch (e) {
    if (e instanceof ObjectNotFoundError) return null;
    throw e;
  }
}

/** §10.2 step 1: what is wrong with a data object, judged without opening it; null when it can be packed. */
async function blobProblem(repo: Repository, id: string, sealed: Uint8Array): Promise<{ reason: string; message: string } | null> {
  const name = dataObjectName(id);
  const bad = (e: DamagedBackupError) => ({ reason: e.reason, message: e.message });
  if (sealed.length < HEADER_BYTES + TAG_BYTES) return bad(new DamagedBackupError('truncated', name, { detail: 'shorter than a header' }));
  const magic = [0x43, 0x4f, 0x46, 0x52];
  if (!magic.every((m, i) => sealed[i] === m) || sealed[4] !== 1 || sealed[5] !== ObjectType.data || sealed[6] !== 0 || sealed[7] !== 0) {
    return bad(new DamagedBackupError('corrupt', name, { detail: 'bad header' }));
  }
  const tag = await expectedBindingTag(repo.crypto, repo.keys, { type: ObjectType.data, id });
  if (!equalBytes(sealed.subarray(24, 40), tag)) return bad(new DamagedBackupError('misplaced', name));
  if (plainLengthOf(sealed.length, repo.config.segmentSize) === null) {
    return bad(new DamagedBackupError('truncated', name, { detail: 'its length is not that of a sealed chunk' }));
  }
  return null;
}

/**
 * A data object longer than `chunkSize` allows (§10.2 step 1). When it opens with this key, its
 * writer used a larger chunk size than the unauthenticated version 1 config says: the config was
 * altered, and migrating would authenticate the altered value. Otherwise it is just damaged.
 */
async function checkOversized(repo: Repository, id: string): Promise<void> {
  const name = dataObjectName(id);
  let sealed: Uint8Array;
  try {
    sealed = await readBounded(repo.storage, name, MAX_V1_OBJECT(repo.config.segmentSize));
  } catch (e) {
    if (e instanceof DamagedBackupError) return;
    throw e;
  }
  const plain = await openObject(repo.crypto, repo.keys, { type: ObjectType.data, id }, sealed, name, { segmentSize: repo.config.segmentSize }).catch(() => null);
  if (plain && plain.length > repo.config.chunkSize) {
    throw new DamagedBackupError('config', CONFIG, {
      detail: `the version 1 config says chunks are ${repo.config.chunkSize} bytes, but ${name} holds a chunk of ${plain.length} bytes sealed with this key: the config was altered, and the migration stopped before changing anything`,
    });
  }
}

/** What a run would do, found by listing and measuring only. */
async function dryRun(repo: Repository, next: Repository, result: MigrateResult, dataIds: string[], v1Refs: ManifestRef[], manifestNames: Set<string>): Promise<MigrateResult> {
  const index = await next.loadIndex();
  const todo = dataIds.filter((id) => !index.has(id));
  result.objectsAlreadyPacked = dataIds.length - todo.length;
  result.objectsPacked = todo.length;
  const stats = new Limiter(8);
  for (const id of todo) {
    await stats.run(async () => {
      const st = await storageCall(repo.storage, `reading ${dataObjectName(id)}`, () => repo.storage.stat(dataObjectName(id)));
      result.bytesPacked += st?.size ?? 0;
    });
  }
  await stats.drain();
  result.manifestsWritten = v1Refs.filter((r) => !manifestNames.has(manifestName(r.seq, migratedWriter(r.seq)))).length;
  result.objectsDeleted = dataIds.length;
  result.manifestsDeleted = v1Refs.length;
  return result;
}

