/** Backup, restore and verify (spec/format.md §6) over a Storage, a source tree and a restore target. */
import type { CryptoProvider } from './crypto.js';
import { DamagedBackupError, ObjectExistsError, ObjectNotFoundError } from './errors.js';
import type { DerivedKeys } from './keys.js';
import { compareEntryPaths, type Manifest, type TreeEntry } from './manifest.js';
import { chunkId, ObjectType, openObject, sealObject } from './object.js';
import { dataObjectName, storageCall, type Repository } from './repo.js';

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

/** What a backup reads: a tree of files (Node: a folder; browsers: app data). */
export interface BackupSource {
  /** Every entry below the root, without chunk lists. Order does not matter. */
  scan(): Promise<TreeEntry[]>;
  /**
   * The file's content in pieces of exactly `chunkSize` bytes (the last one shorter), read into
   * buffers from `alloc` when given.
   */
  read(path: string, chunkSize: number, alloc?: (size: number) => Uint8Array): AsyncIterable<Uint8Array>;
}

export interface FileSink {
  write(offset: number, data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Where a restore writes. Nothing is visible at the final place until `commit`. */
export interface RestoreTarget {
  begin(): Promise<void>;
  dir(entry: TreeEntry): Promise<void>;
  symlink(entry: TreeEntry): Promise<void>;
  file(entry: TreeEntry): Promise<FileSink>;
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
    const latest = await repo.latest(options.lastSeenSeq);
    const previous = latest === null ? null : await repo.readManifest(latest);
    const entries = (await source.scan()).sort((a, b) => compareEntryPaths(a.path, b.path));
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
    for (const entry of files) {
      const prev = prevFiles.get(entry.path);
      if (sameFile(entry, prev) && prev!.chunks!.every((c) => known.has(c))) {
        entry.chunks = prev!.chunks!.slice();
        result.chunksReused += entry.chunks.length;
        progress.bytesDone += entry.size ?? 0;
        progress.filesDone++;
        report();
        continue;
      }
      result.filesRead++;
      // Chunks of many files are in flight at once; the list fills in as they finish.
      const chunks: string[] = [];
      entry.chunks = chunks;
      let size = 0;
      let index = 0;
      for await (const piece of source.read(entry.path, config.chunkSize, codec.alloc?.bind(codec))) {
        const i = index++;
        const n = piece.length;
        size += n;
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
      // The file may have changed size while it was read: record what was read.
      progress.bytesTotal += size - (entry.size ?? 0);
      entry.size = size;
      progress.filesDone++;
      report();
    }
    await limiter.drain();
    await storageCall(storage, 'flush', () => storage.flush());

    const seq = (latest ?? 0) + 1;
    const bytes = files.reduce((n, f) => n + (f.size ?? 0), 0);
    const manifest: Manifest = {
      header: {
        type: 'coffer-manifest', version: 1, backupId: config.backupId, seq, parentSeq: latest,
        createdAt: (options.now?.() ?? new Date()).toISOString(), entries: entries.length, files: files.length, bytes,
      },
      entries,
    };
    options.onProgress?.({ ...progress, phase: 'manifest' });
    await repo.writeManifest(manifest);
    options.onProgress?.({ ...progress, phase: 'done' });
    return { seq, files: files.length, entries: entries.length, bytes, ...result };
  } finally {
    if (ownCodec) await codec.close();
  }
}

export interface RestoreOptions {
  codec?: ChunkCodec;
  /** Which backup; the newest by default. */
  seq?: number;
  lastSeenSeq?: number | null;
  allowRollback?: boolean;
  onProgress?: (p: Progress) => void;
  concurrency?: number;
}

export interface RestoreResult {
  seq: number;
  files: number;
  entries: number;
  bytes: number;
  createdAt: string;
}

/** Expected plaintext length of chunk `i` of a file of `size` bytes. */
const chunkLength = (size: number, i: number, chunkSize: number) => Math.min(chunkSize, size - i * chunkSize);

async function fetchChunk(repo: Repository, id: string, codec: ChunkCodec): Promise<Uint8Array> {
  const name = dataObjectName(id);
  try {
    return await storageCall(repo.storage, `reading ${name}`, () => repo.storage.get(name, undefined, codec.alloc?.bind(codec)));
  } catch (e) {
    if (e instanceof ObjectNotFoundError) throw new DamagedBackupError('missing', name, { cause: e });
    throw e;
  }
}

/** §6: restores a backup into `target`; nothing appears at the final place unless all of it verified. */
export async function restore(repo: Repository, target: RestoreTarget, options: RestoreOptions = {}): Promise<RestoreResult> {
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, repo.config.segmentSize);
  const ownCodec = options.codec === undefined;
  const latest = await repo.latest(options.lastSeenSeq, options.allowRollback);
  const seq = options.seq ?? latest;
  if (seq === null || seq === undefined) {
    if (ownCodec) await codec.close();
    throw new DamagedBackupError('missing', undefined, { detail: 'there is no completed backup in this store yet' });
  }
  const manifest = await repo.readManifest(seq);
  const { entries } = manifest;
  const files = entries.filter((e) => e.kind === 'file');
  const progress: Progress = {
    phase: 'restore', bytesDone: 0, filesDone: 0, uploadedBytes: 0,
    bytesTotal: manifest.header.bytes, filesTotal: files.length,
  };
  const report = () => options.onProgress?.({ ...progress });
  let begun = false;
  try {
    await target.begin();
    begun = true;
    report();
    const limiter = new Limiter(options.concurrency ?? DEFAULT_CONCURRENCY);
    const chunkSize = repo.config.chunkSize;
    for (const entry of entries) {
      if (entry.kind === 'dir') await target.dir(entry);
      else if (entry.kind === 'symlink') await target.symlink(entry);
      else {
        const size = entry.size!;
        const ids = entry.chunks!;
        if (ids.length !== Math.ceil(size / chunkSize)) {
          throw new DamagedBackupError('corrupt', `manifest ${seq}`, { detail: `chunk list of an entry does not fit its size` });
        }
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
            const plain = await codec.open(id, await fetchChunk(repo, id, codec), len, false);
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
    await target.commit(entries);
  } catch (e) {
    if (begun) await target.abort().catch(() => {});
    throw e;
  } finally {
    if (ownCodec) await codec.close();
  }
  options.onProgress?.({ ...progress, phase: 'done' });
  return { seq, files: files.length, entries: entries.length, bytes: manifest.header.bytes, createdAt: manifest.header.createdAt };
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
          const plain = await codec.open(id, await fetchChunk(repo, id, codec), len, true);
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
