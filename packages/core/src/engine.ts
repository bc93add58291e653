/** Backup, restore and verify (spec/format.md §6) over a Storage, a source tree and a restore target. */
import type { CryptoProvider } from './crypto.js';
import { DamagedBackupError, ObjectExistsError, SourceChangedError, SourceSkipError } from './errors.js';
import type { DerivedKeys } from './keys.js';
import { compareEntryPaths, entryPathProblem, parentPath, type Manifest, type TreeEntry } from './manifest.js';
import { chunkId, ObjectType, openObject, sealedSize, sealObject } from './object.js';
import { dataObjectName, readBounded, storageCall, type Repository, type SkippedManifest } from './repo.js';

/** Turns chunks into named sealed objects and back. Node runs these on worker threads. */
export interface ChunkCodec {
  /** Names and seals one chunk. May take ownership of `plaintext` (it may be transferred). */
  seal(plaintext: Uint8Array): Promise<{ id: string; sealed: Uint8Array }>;
  /**
   * Opens the sealed chunk stored as `data/<id>`, whose plaintext the manifest says has
   * `expectedLength` bytes; with `checkId` also recomputes the id (§4.4 step 4).
   */
  open(id: string, sealed: Uint8Array, expectedLength: number, checkId: boolean): Promise<Uint8Array>;
  /**
   * Optional buffer recycling, so memory stays flat however much data flows: `alloc` hands out a
   * buffer for reading chunks into, and `release` takes back any buffer from `alloc`, `seal` or
   * `open` once the caller no longer uses it.
   */
  alloc?(size: number): Uint8Array;
  release?(buffer: Uint8Array): void;
  close(): Promise<void>;
}

/** A ChunkCodec on the calling thread, using any CryptoProvider (browsers, tests). */
export function inlineCodec(crypto: CryptoProvider, keys: DerivedKeys, segmentSize: number): ChunkCodec {
  return {
    async seal(plaintext) {
      const id = await chunkId(crypto, keys, plaintext);
      return { id, sealed: await sealObject(crypto, keys, { type: ObjectType.data, id }, plaintext, { segmentSize }) };
    },
    async open(id, sealed, expectedLength, checkId) {
      const name = dataObjectName(id);
      const plain = await openObject(crypto, keys, { type: ObjectType.data, id }, sealed, name, { segmentSize, expectedLength });
      if (checkId && (await chunkId(crypto, keys, plain)) !== id) throw new DamagedBackupError('misplaced', name, { detail: 'content does not match its name' });
      return plain;
    },
    async close() {},
  };
}

/** A file or folder a backup left out, and why (spec/format.md §6.2). */
export interface SkippedFile {
  path: string;
  /**
   * `special`: a socket, pipe or device (never backed up); the others are warnings: it vanished,
   * could not be read, or has a name that cannot be stored (not valid Unicode, §5).
   */
  reason: 'special' | 'vanished' | 'unreadable' | 'bad-name';
}

/** What a backup reads: a tree of files (Node: a folder; browsers: app data). */
export interface BackupSource {
  /** Every entry below the root, without chunk lists. Order does not matter. */
  scan(): Promise<TreeEntry[]>;
  /** What the last scan left out (it may also throw on a root it cannot read). */
  readonly skipped?: readonly SkippedFile[];
  /**
   * The file's content in pieces of exactly `chunkSize` bytes (the last one shorter), read into
   * buffers from `alloc` when given. The source may update `entry`'s mode, mtime and hints to
   * those of the file it actually read. Throws SourceSkipError when the file vanished or cannot
   * be read, and SourceChangedError, after the last piece, when it changed while it was read.
   */
  read(entry: TreeEntry, chunkSize: number, alloc?: (size: number) => Uint8Array): AsyncIterable<Uint8Array>;
}

export interface FileSink {
  write(offset: number, data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where a restore writes. Nothing is visible at the final place until `commit`. The engine calls
 * `dir` and `file` parents first, each parent being a folder made by `dir`, and `symlink` only
 * after every file is closed (spec/format.md §6.1): a target never has to create anything below
 * a symlink, and must refuse to.
 */
export interface RestoreTarget {
  begin(): Promise<void>;
  dir(entry: TreeEntry): Promise<void>;
  file(entry: TreeEntry): Promise<FileSink>;
  /** Returns false when the target cannot hold symlinks (the browser's OPFS) and skipped it. */
  symlink(entry: TreeEntry): Promise<boolean | void>;
  /** Sets modes and times, makes everything durable and moves the tree into place. */
  commit(entries: TreeEntry[]): Promise<void>;
  /** Removes whatever `begin` and later calls created. */
  abort(): Promise<void>;
}

export interface Progress {
  phase: 'scan' | 'backup' | 'restore' | 'verify' | 'manifest' | 'done';
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Backup: bytes of new objects written. */
  uploadedBytes: number;
}

export interface BackupOptions {
  codec?: ChunkCodec;
  /** Newest seq this device has seen (rollback check); `null` for none. */
  lastSeenSeq?: number | null;
  onProgress?: (p: Progress) => void;
  /** Chunks in flight at once (memory is about 2 x this x chunkSize). */
  concurrency?: number;
  now?: () => Date;
}

export interface BackupResult {
  seq: number;
  /** Left out of this backup: special files, and files that vanished or could not be read. */
  skipped: SkippedFile[];
  /** Files stored from a read during which they kept changing (marked `changed`). */
  changed: string[];
  files: number;
  entries: number;
  bytes: number;
  /** Files read this time (others were unchanged since the previous backup). */
  filesRead: number;
  chunksUploaded: number;
  bytesUploaded: number;
  chunksReused: number;
}

/**
 * Chunks in flight at once. Each holds at most a plaintext and a sealed chunk (2 MiB), and enough
 * must be in flight for storage writes that wait on the disk or the network to overlap.
 */
export const DEFAULT_CONCURRENCY = 16;

/** Reads of a file that keeps changing before it is stored marked `changed` (§6.2). */
export const READ_ATTEMPTS = 3;

/** Runs async tasks with at most `limit` in flight; `run` waits for a free slot. */
class Limiter {
  private active = 0;
  private waiters: (() => void)[] = [];
  private failure: unknown = null;
  private readonly pending = new Set<Promise<void>>();
  constructor(private readonly limit: number) {}
  async run(task: () => Promise<void>): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    this.active++;
    const p = task()
      .catch((e) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.active--;
        this.pending.delete(p);
        this.waiters.shift()?.();
      });
    this.pending.add(p);
  }
  async drain(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    if (this.failure) throw this.failure;
  }
}

function sameFile(a: TreeEntry, b: TreeEntry | undefined): boolean {
  return (
    b !== undefined && b.kind === 'file' && a.size === b.size && a.mtimeNs === b.mtimeNs && a.mode === b.mode &&
    a.hint?.ino === b.hint?.ino && a.hint?.ctimeNs === b.hint?.ctimeNs
  );
}

/** §6: backs up `source` as a new manifest; only chunks the store lacks are uploaded. */
export async function backup(repo: Repository, source: BackupSource, options: BackupOptions = {}): Promise<BackupResult> {
  const { storage, config } = repo;
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, config.segmentSize);
  const ownCodec = options.codec === undefined;
  try {
    // Numbered past every manifest name, junk included; incremental from the newest that opens (§4.4).
    const latest = await repo.latest(options.lastSeenSeq);
    const previous = (await repo.newestReadable())?.manifest ?? null;
    const scanned = await source.scan();
    const skipped: SkippedFile[] = [...(source.skipped ?? [])];
    // A name no restore could create is left out (with everything below it) rather than stored.
    const badNames = scanned.filter((e) => entryPathProblem(e.path) !== null).map((e) => e.path);
    for (const path of badNames) skipped.push({ path, reason: 'bad-name' });
    const entries = (badNames.length ? scanned.filter((e) => !badNames.some((b) => e.path === b || e.path.startsWith(b + '/'))) : scanned).sort((a, b) =>
      compareEntryPaths(a.path, b.path),
    );
    const files = entries.filter((e) => e.kind === 'file');
    const progress: Progress = {
      phase: 'backup', bytesDone: 0, filesDone: 0, uploadedBytes: 0,
      bytesTotal: files.reduce((n, f) => n + (f.size ?? 0), 0), filesTotal: files.length,
    };
    const report = () => options.onProgress?.({ ...progress });
    report();

    const known = new Set<string>();
    for (const name of await storageCall(storage, 'listing data', () => storage.list('data/'))) known.add(name.slice(5));
    const prevFiles = new Map<string, TreeEntry>();
    for (const e of previous?.entries ?? []) if (e.kind === 'file') prevFiles.set(e.path, e);

    const limiter = new Limiter(options.concurrency ?? DEFAULT_CONCURRENCY);
    const result = { filesRead: 0, chunksUploaded: 0, bytesUploaded: 0, chunksReused: 0 };
    const left = new Set<TreeEntry>();
    const changed: string[] = [];
    /** Reads one file and seals its chunks (in flight; the list fills in as they finish). */
    const readFile = async (entry: TreeEntry, chunks: string[], got: { size: number }): Promise<void> => {
      let index = 0;
      for await (const piece of source.read(entry, config.chunkSize, codec.alloc?.bind(codec))) {
        const i = index++;
        const n = piece.length;
        got.size += n;
        await limiter.run(async () => {
          const { id, sealed } = await codec.seal(piece);
          chunks[i] = id;
          if (known.has(id)) {
            result.chunksReused++;
          } else {
            known.add(id);
            try {
              await storageCall(storage, `writing ${dataObjectName(id)}`, () => storage.put(dataObjectName(id), sealed));
              result.chunksUploaded++;
              result.bytesUploaded += sealed.length;
              progress.uploadedBytes += sealed.length;
            } catch (e) {
              // Same name, same plaintext (§3): someone stored it first.
              if (!(e instanceof ObjectExistsError)) {
                known.delete(id);
                throw e;
              }
            }
          }
          codec.release?.(sealed);
          progress.bytesDone += n;
          report();
        });
      }
    };
    for (const entry of files) {
      const prev = prevFiles.get(entry.path);
      if (sameFile(entry, prev) && prev!.chunks!.every((c) => known.has(c))) {
        entry.chunks = prev!.chunks!.slice();
        if (prev!.changed) entry.changed = true;
        result.chunksReused += entry.chunks.length;
        progress.bytesDone += entry.size ?? 0;
        progress.filesDone++;
        report();
        continue;
      }
      result.filesRead++;
      // §6.2: a file that changes while it is read is read again, up to READ_ATTEMPTS times.
      for (let attempt = 1; ; attempt++) {
        const chunks: string[] = [];
        entry.chunks = chunks;
        const got = { size: 0 };
        try {
          await readFile(entry, chunks, got);
        } catch (e) {
          if (e instanceof SourceSkipError) {
            skipped.push({ path: entry.path, reason: e.reason });
            left.add(entry);
            progress.bytesTotal -= entry.size ?? 0;
            break;
          }
          if (!(e instanceof SourceChangedError)) throw e;
          if (attempt < READ_ATTEMPTS) {
            progress.bytesTotal += got.size;
            continue;
          }
          // Stored from the last read, and marked: it is never presented as consistent.
          entry.changed = true;
          changed.push(entry.path);
        }
        // The file may have changed size since the scan: record what was read.
        progress.bytesTotal += got.size - (entry.size ?? 0);
        entry.size = got.size;
        break;
      }
      progress.filesDone++;
      report();
    }
    await limiter.drain();
    await storageCall(storage, 'flush', () => storage.flush());

    const seq = (latest ?? 0) + 1;
    const kept = left.size ? entries.filter((e) => !left.has(e)) : entries;
    const keptFiles = kept.filter((e) => e.kind === 'file');
    const bytes = keptFiles.reduce((n, f) => n + (f.size ?? 0), 0);
    const manifest: Manifest = {
      header: {
        type: 'coffer-manifest', version: 1, backupId: config.backupId, seq, parentSeq: previous?.header.seq ?? null,
        createdAt: (options.now?.() ?? new Date()).toISOString(), entries: kept.length, files: keptFiles.length, bytes,
      },
      entries: kept,
    };
    options.onProgress?.({ ...progress, phase: 'manifest' });
    await repo.writeManifest(manifest);
    options.onProgress?.({ ...progress, phase: 'done' });
    return { seq, files: keptFiles.length, entries: kept.length, bytes, skipped, changed, ...result };
  } finally {
    if (ownCodec) await codec.close();
  }
}

export interface RestoreOptions {
  codec?: ChunkCodec;
  /** Which backup; the newest that opens by default. */
  seq?: number;
  lastSeenSeq?: number | null;
  allowRollback?: boolean;
  /** Keep setuid, setgid and sticky bits (dropped by default, §6.1 rule 5). */
  keepSpecialModes?: boolean;
  onProgress?: (p: Progress) => void;
  concurrency?: number;
}

export interface RestoreResult {
  seq: number;
  files: number;
  entries: number;
  bytes: number;
  createdAt: string;
  /** Newer manifest names that did not open, skipped to reach this one (§4.4). */
  skippedManifests: SkippedManifest[];
  /** Entries whose setuid, setgid or sticky bits were dropped. */
  specialModesDropped: number;
  /** Files the backup marked as changing while they were read: possibly inconsistent. */
  changed: string[];
  /** Symlinks the target could not hold (the browser's OPFS). */
  symlinksSkipped: number;
}

/** Expected plaintext length of chunk `i` of a file of `size` bytes. */
const chunkLength = (size: number, i: number, chunkSize: number) => Math.min(chunkSize, size - i * chunkSize);

/** Reads one sealed chunk, bounded by the size its plaintext length allows (§4.4). */
function fetchChunk(repo: Repository, id: string, plainLength: number, codec: ChunkCodec): Promise<Uint8Array> {
  return readBounded(repo.storage, dataObjectName(id), sealedSize(plainLength, repo.config.segmentSize), codec.alloc?.bind(codec));
}

/**
 * What a restore creates, in order (§6.1): the manifest's entries, with the special mode bits
 * dropped unless kept, and a folder (mode 0700) for every parent the manifest does not list.
 */
function restorePlan(manifest: Manifest, keepSpecialModes: boolean): { entries: TreeEntry[]; specialModesDropped: number } {
  const present = new Set(manifest.entries.map((e) => e.path));
  const entries: TreeEntry[] = [];
  let specialModesDropped = 0;
  const created = Date.parse(String(manifest.header.createdAt));
  const implicitTime = (BigInt(Number.isFinite(created) ? created : 0) * 1_000_000n).toString();
  for (const e of manifest.entries) {
    const missing: string[] = [];
    for (let p = parentPath(e.path); p !== null && !present.has(p); p = parentPath(p)) missing.push(p);
    for (const p of missing.reverse()) {
      present.add(p);
      entries.push({ path: p, kind: 'dir', mode: 0o700, mtimeNs: implicitTime });
    }
    if (e.kind !== 'symlink' && e.mode & 0o7000 && !keepSpecialModes) {
      specialModesDropped++;
      entries.push({ ...e, mode: e.mode & 0o777 });
    } else entries.push(e);
  }
  return { entries, specialModesDropped };
}

/** §6: restores a backup into `target`; nothing appears at the final place unless all of it verified. */
export async function restore(repo: Repository, target: RestoreTarget, options: RestoreOptions = {}): Promise<RestoreResult> {
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, repo.config.segmentSize);
  const ownCodec = options.codec === undefined;
  let begun = false;
  try {
    await repo.latest(options.lastSeenSeq, options.allowRollback);
    let manifest: Manifest;
    let skippedManifests: SkippedManifest[] = [];
    if (options.seq !== undefined) manifest = await repo.readManifest(options.seq);
    else {
      const found = await repo.newestReadable({ lastSeenSeq: options.lastSeenSeq ?? null, allowRollback: options.allowRollback ?? false });
      if (!found) throw new DamagedBackupError('missing', undefined, { detail: 'there is no completed backup in this store yet' });
      ({ manifest, skipped: skippedManifests } = found);
    }
    const seq = manifest.header.seq;
    const { entries, specialModesDropped } = restorePlan(manifest, options.keepSpecialModes ?? false);
    const files = entries.filter((e) => e.kind === 'file');
    const progress: Progress = {
      phase: 'restore', bytesDone: 0, filesDone: 0, uploadedBytes: 0,
      bytesTotal: manifest.header.bytes, filesTotal: files.length,
    };
    const report = () => options.onProgress?.({ ...progress });
    await target.begin();
    begun = true;
    report();
    const limiter = new Limiter(options.concurrency ?? DEFAULT_CONCURRENCY);
    const chunkSize = repo.config.chunkSize;
    for (const entry of entries) {
      if (entry.kind === 'dir') await target.dir(entry);
      else if (entry.kind === 'file') {
        const size = entry.size!;
        const ids = entry.chunks!;
        const sink = await target.file(entry);
        let remaining = ids.length;
        const done = async () => {
          await sink.close();
          progress.filesDone++;
          report();
        };
        if (remaining === 0) await done();
        for (let i = 0; i < ids.length; i++) {
          const id = ids[i]!;
          const len = chunkLength(size, i, chunkSize);
          await limiter.run(async () => {
            const plain = await codec.open(id, await fetchChunk(repo, id, len, codec), len, false);
            await sink.write(i * chunkSize, plain);
            codec.release?.(plain);
            progress.bytesDone += len;
            report();
            if (--remaining === 0) await done();
          });
        }
      }
    }
    await limiter.drain();
    // Symlinks last, once every file is closed: nothing is created below one (§6.1 rule 4).
    let symlinksSkipped = 0;
    for (const entry of entries) if (entry.kind === 'symlink' && (await target.symlink(entry)) === false) symlinksSkipped++;
    await target.commit(entries);
    options.onProgress?.({ ...progress, phase: 'done' });
    return {
      seq, files: files.length, entries: manifest.entries.length, bytes: manifest.header.bytes, createdAt: manifest.header.createdAt,
      skippedManifests, specialModesDropped, changed: files.filter((f) => f.changed).map((f) => f.path), symlinksSkipped,
    };
  } catch (e) {
    if (begun) await target.abort().catch(() => {});
    throw e;
  } finally {
    if (ownCodec) await codec.close();
  }
}

export interface VerifyResult {
  manifests: number[];
  objectsChecked: number;
  bytesChecked: number;
  damaged: { object: string; reason: string; message: string }[];
}

/** Reads back every object that the chosen manifests (all by default) name and checks it (§4.4). */
export async function verify(
  repo: Repository,
  options: { codec?: ChunkCodec; seqs?: number[]; lastSeenSeq?: number | null; onProgress?: (p: Progress) => void; concurrency?: number } = {},
): Promise<VerifyResult> {
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, repo.config.segmentSize);
  const ownCodec = options.codec === undefined;
  try {
    await repo.latest(options.lastSeenSeq);
    const seqs = options.seqs ?? (await repo.manifests());
    const damaged: VerifyResult['damaged'] = [];
    const record = (e: unknown, object: string) => {
      if (!(e instanceof DamagedBackupError)) throw e;
      damaged.push({ object: e.object ?? object, reason: e.reason, message: e.message });
    };
    const chunks = new Map<string, number>();
    for (const seq of seqs) {
      try {
        const m = await repo.readManifest(seq);
        for (const e of m.entries) {
          if (e.kind !== 'file') continue;
          e.chunks!.forEach((id, i) => chunks.set(id, chunkLength(e.size!, i, repo.config.chunkSize)));
        }
      } catch (e) {
        record(e, `manifests/${seq}`);
      }
    }
    const progress: Progress = {
      phase: 'verify', bytesDone: 0, filesDone: 0, uploadedBytes: 0, filesTotal: chunks.size,
      bytesTotal: [...chunks.values()].reduce((a, b) => a + b, 0),
    };
    const limiter = new Limiter(options.concurrency ?? DEFAULT_CONCURRENCY);
    for (const [id, len] of chunks) {
      await limiter.run(async () => {
        try {
          const plain = await codec.open(id, await fetchChunk(repo, id, len, codec), len, true);
          codec.release?.(plain);
        } catch (e) {
          record(e, dataObjectName(id));
        }
        progress.bytesDone += len;
        progress.filesDone++;
        options.onProgress?.({ ...progress });
      });
    }
    await limiter.drain();
    return { manifests: seqs, objectsChecked: chunks.size, bytesChecked: progress.bytesDone, damaged };
  } finally {
    if (ownCodec) await codec.close();
  }
}
