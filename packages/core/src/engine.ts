/**
 * Backup, restore and verify (spec/format.md §3, §6) over a Storage, a source tree and a restore
 * target. Backups write version 2 (packs); restore and verify read versions 1 and 2.
 */
import { toHex } from './bytes.js';
import { inlineCodec, type ChunkCodec, type SealedBatch } from './codec.js';
import { ConflictError, DamagedBackupError, ObjectNotFoundError, SourceChangedError, SourceSkipError } from './errors.js';
import { condemnedPacks, readJournal, takeLock } from './journal.js';
import { idOf, packName, type ManifestRef } from './layout.js';
import { compareEntryPaths, entryPathProblem, parentPath, type Manifest, type TreeEntry } from './manifest.js';
import { ObjectType, openObject, sealedSize } from './object.js';
import { decodePackHeader, MAX_PACK_HEADER_BYTES, PackBuilder, PackStream, type PackedBlob, type PackEntry } from './pack.js';
import { storageCall, type BlobIndex, type IndexCache, type Repository, type SkippedManifest } from './repo.js';

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

/** One file being restored: chunks are written at their offsets, in any order, then the file is closed. */
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
  /** Sets folder modes and times, makes everything durable and moves the tree into place. */
  commit(entries: TreeEntry[]): Promise<void>;
  /** Removes whatever `begin` and later calls created. */
  abort(): Promise<void>;
}

/** How far a backup, restore, verify or prune has come: reported through `onProgress`. */
export interface Progress {
  /** `mark`, `repack` and `sweep`: a prune (maintenance.ts); files there count manifests, then packs. */
  phase: 'scan' | 'backup' | 'restore' | 'verify' | 'manifest' | 'mark' | 'repack' | 'sweep' | 'done';
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Backup: bytes of new packs written. */
  uploadedBytes: number;
}

/** Chunks in flight at once, by default: each holds at most a plaintext and a sealed chunk. */
export const DEFAULT_CONCURRENCY = 8;
/**
 * Files read at once: a small file is mostly waiting (open, read, fstat, close), so many at once
 * keep the disk and the thread pool busy; memory stays bounded by the chunks in flight.
 */
export const DEFAULT_FILES_IN_FLIGHT = 32;
/** Reads of a file that keeps changing before it is stored marked `changed` (§6.2). */
export const READ_ATTEMPTS = 3;

/** Runs async tasks with at most `limit` in flight; `run` waits for a free slot. */
export class Limiter {
  private active = 0;
  private waiters: (() => void)[] = [];
  private failure: unknown = null;
  private readonly pending = new Set<Promise<void>>();
  constructor(private readonly limit: number) {}
  async run(task: () => Promise<void>): Promise<void> {
    await this.slot();
    this.start(task);
  }
  /** Waits until a task may start (then `start` it in the same turn). */
  async slot(): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
  }
  start(task: () => Promise<void>): void {
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

/** A budget of bytes in flight: `take` waits until the bytes fit (one oversized take is let through alone). */
class ByteBudget {
  private used = 0;
  private waiters: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async take(n: number): Promise<void> {
    while (this.used > 0 && this.used + n > this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.used += n;
  }
  give(n: number): void {
    this.used -= n;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

function sameFile(a: TreeEntry, b: TreeEntry | undefined): boolean {
  return (
    b !== undefined && b.kind === 'file' && a.size === b.size && a.mtimeNs === b.mtimeNs && a.mode === b.mode &&
    a.hint?.ino === b.hint?.ino && a.hint?.ctimeNs === b.hint?.ctimeNs
  );
}

/* ------------------------------------------------------------------------------------------------
 * Backup
 * --------------------------------------------------------------------------------------------- */

/** What {@link backup} takes: all optional. */
export interface BackupOptions {
  codec?: ChunkCodec;
  /** Newest seq this device has seen (rollback check); `null` for none. */
  lastSeenSeq?: number | null;
  onProgress?: (p: Progress) => void;
  /** Chunks in flight at once (memory is about 2 x this x chunkSize). */
  concurrency?: number;
  /** Packs being written at once (each holds up to packSize bytes). */
  packsInFlight?: number;
  /** Files read at once (small files gain from several). */
  filesInFlight?: number;
  /** Copies of the index objects, kept between backups (§3.3). */
  indexCache?: IndexCache;
  /** Who holds the lock (§9.3). */
  host?: string;
  pid?: number;
  now?: () => Date;
}

/** What {@link backup} did: the new backup's seq and name, what it read, uploaded and left out. */
export interface BackupResult {
  seq: number;
  /** The manifest's name. */
  name: string;
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
  packsWritten: number;
}

/** Small chunks go to the codec in batches of up to this many bytes (one message per batch). */
const BATCH_BYTES = 1024 * 1024;
const BATCH_CHUNKS = 128;

/** Collects chunks into batches for the codec; each `seal` resolves with its chunk's id and sealed view. */
class SealBatcher {
  private chunks: Uint8Array[] = [];
  private waiting: { resolve(v: { id: string; sealed: Uint8Array; batch: SealedBatch; done(): void }): void; reject(e: unknown): void }[] = [];
  private bytes = 0;
  private scheduled = false;
  constructor(private readonly codec: ChunkCodec) {}

  seal(chunk: Uint8Array): Promise<{ id: string; sealed: Uint8Array; done(): void }> {
    return new Promise((resolve, reject) => {
      this.chunks.push(chunk);
      this.waiting.push({ resolve, reject });
      this.bytes += chunk.length;
      if (this.bytes >= BATCH_BYTES || this.chunks.length >= BATCH_CHUNKS) this.flush();
      else if (!this.scheduled) {
        // Whatever arrives in the same turn joins the batch; a lone chunk waits no longer.
        this.scheduled = true;
        setTimeout(() => this.flush(), 0);
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.chunks.length === 0) return;
    const chunks = this.chunks;
    const waiting = this.waiting;
    this.chunks = [];
    this.waiting = [];
    this.bytes = 0;
    this.codec.seal(chunks).then(
      (batch) => {
        // The batch's buffer goes back to the codec once every chunk in it is copied into a pack.
        let left = waiting.length;
        const done = () => {
          if (--left === 0) this.codec.release?.(batch.buffer);
        };
        waiting.forEach((w, i) => w.resolve({ id: batch.ids[i]!, sealed: batch.sealed[i]!, batch, done }));
      },
      (e) => waiting.forEach((w) => w.reject(e)),
    );
  }
}

/** An index object is written after this many packs (or at the end), so a killed backup's packs count. */
export const PACKS_PER_INDEX = 4;

/** A pack being filled: in memory (then put whole) or streamed to the store (Storage.writer). */
interface OpenPack {
  readonly id: string;
  readonly blobs: PackedBlob[];
  readonly size: number;
  add(id: string, sealed: Uint8Array, plainLength: number): Promise<void>;
  /** Writes the pack; resolves with its length once it is in the store. */
  finish(): Promise<number>;
  abort(): Promise<void>;
}

/** Bytes of small blobs a streamed pack gathers before it writes them. */
const STAGING_BYTES = 1024 * 1024;

/**
 * Fills packs with sealed blobs and writes each when full (§3.2); every few packs it makes them
 * durable and lists them in an index object (§3.3), so that a backup killed midway leaves packs the
 * next run finds and reuses. Blobs are added one at a time, in order. Where the store can take an
 * object in pieces, packs stream to it as they fill; otherwise one pack fills in memory while at most
 * `inFlight` are put.
 */
export class Packer {
  readonly written: PackEntry[] = [];
  /** The index objects written so far. */
  private readonly indexes: string[] = [];
  private unindexed: PackEntry[] = [];
  private indexing: Promise<void> = Promise.resolve();
  private current: OpenPack | null = null;
  private readonly ids = new Set<string>();
  private readonly limiter: Limiter;
  private readonly free: Uint8Array[] = [];
  /** Adds run one after another: a pack's bytes go out in order. */
  private queue: Promise<void> = Promise.resolve();
  private readonly opened = new Set<OpenPack>();
  bytesWritten = 0;
  constructor(
    private readonly repo: Repository,
    inFlight: number,
    private readonly onWritten: (bytes: number) => void,
    private readonly indexCache?: IndexCache,
  ) {
    this.limiter = new Limiter(inFlight);
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string, sealed: Uint8Array, plainLength: number): Promise<void> {
    this.ids.add(id);
    const step = this.queue.then(async () => {
      if (this.current && this.current.size > 0 && this.current.size + sealed.length > this.repo.packSize) await this.close();
      this.current ??= await this.open();
      await this.current.add(id, sealed, plainLength);
    });
    this.queue = step;
    return step;
  }

  private async open(): Promise<OpenPack> {
    const { repo } = this;
    const id = toHex(repo.crypto.randomBytes(32));
    const name = packName(id);
    const { crypto, keys } = repo;
    const { segmentSize } = repo.config;
    let pack: OpenPack;
    if (repo.storage.writer) {
      const writer = await storageCall(repo.storage, `writing ${name}`, () => repo.storage.writer!(name));
      const stream = new PackStream(id, writer, this.free.pop() ?? new Uint8Array(STAGING_BYTES));
      pack = {
        id, blobs: stream.blobs,
        get size() {
          return stream.size;
        },
        add: (i, s, n) => storageCall(repo.storage, `writing ${name}`, () => stream.add(i, s, n)),
        finish: async () => {
          const total = await storageCall(repo.storage, `writing ${name}`, () => stream.finish(crypto, keys, segmentSize));
          this.free.push(stream.staging);
          return total;
        },
        abort: () => stream.abort(),
      };
    } else {
      const maxBlob = sealedSize(repo.config.chunkSize, segmentSize);
      const builder = new PackBuilder(id, repo.packSize, maxBlob, this.free.pop());
      pack = {
        id, blobs: builder.blobs,
        get size() {
          return builder.size;
        },
        add: async (i, s, n) => builder.add(i, s, n),
        finish: async () => {
          const bytes = await builder.finish(crypto, keys, segmentSize);
          await storageCall(repo.storage, `writing ${name}`, () => repo.storage.put(name, bytes));
          this.free.push(builder.buffer);
          return bytes.length;
        },
        abort: async () => {},
      };
    }
    this.opened.add(pack);
    return pack;
  }

  /** Hands the current pack to a writer once one is free; the next add opens a new one. */
  private async close(): Promise<void> {
    const pack = this.current;
    this.current = null;
    if (!pack) return;
    if (pack.blobs.length === 0) {
      this.opened.delete(pack);
      await pack.abort();
      return;
    }
    await this.limiter.slot();
    this.limiter.start(async () => {
      const bytes = await pack.finish();
      this.opened.delete(pack);
      const entry = { id: pack.id, blobs: pack.blobs };
      this.written.push(entry);
      this.unindexed.push(entry);
      this.bytesWritten += bytes;
      this.onWritten(bytes);
      if (this.unindexed.length >= PACKS_PER_INDEX) await this.index();
    });
  }

  /** Makes the packs written so far durable, then lists them in an index object (one at a time). */
  private index(): Promise<void> {
    const packs = this.unindexed;
    this.unindexed = [];
    if (packs.length === 0) return this.indexing;
    this.indexing = this.indexing.then(async () => {
      await storageCall(this.repo.storage, 'flush', () => this.repo.storage.flush());
      this.indexes.push(await this.repo.writeIndex(packs, this.indexCache));
    });
    return this.indexing;
  }

  /**
   * A prune removed some of our packs (our lock went stale: §9.2 (d)): one index object lists the
   * ones left, and ours, which list the removed ones too, go, so no index points at a missing pack.
   */
  async relist(present: Set<string | null>): Promise<void> {
    const left = this.written.filter((p) => present.has(p.id));
    if (left.length) await this.repo.writeIndex(left, this.indexCache);
    await storageCall(this.repo.storage, 'flush', () => this.repo.storage.flush());
    for (const name of this.indexes) await storageCall(this.repo.storage, `removing ${name}`, () => this.repo.storage.delete(name));
  }

  async finish(): Promise<PackEntry[]> {
    await this.queue;
    await this.close();
    await this.limiter.drain();
    await this.index();
    return this.written;
  }

  /** After a failure: drops packs that were being streamed (their temporary files go too). */
  async abort(): Promise<void> {
    await Promise.allSettled([...this.opened].map((p) => p.abort()));
    this.opened.clear();
  }
}

/** §6: backs up `source` as a new manifest; only chunks the store lacks are stored. */
export async function backup(repo: Repository, source: BackupSource, options: BackupOptions = {}): Promise<BackupResult> {
  if (repo.version !== 2) {
    throw new ConflictError('this store uses backup format version 1; run `coffer migrate` to convert it to version 2 before backing up');
  }
  const { storage, config } = repo;
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, config.segmentSize);
  const ownCodec = options.codec === undefined;
  const now = options.now ?? (() => new Date());
  // §6 step 1: the lock comes before the journal is read (§9.2 safety argument).
  const lock = await takeLock(repo, 'backup', { host: options.host ?? 'unknown', pid: options.pid ?? 0 }, now);
  let packer: Packer | undefined;
  try {
    // Numbered past every manifest name, junk included; incremental from the newest that opens (§4.4).
    const latest = await repo.latest(options.lastSeenSeq);
    // A store whose every manifest is junk still takes a new (full) backup.
    const previous = await repo.newestReadable().catch((e) => {
      if (e instanceof DamagedBackupError) return null;
      throw e;
    });
    // §6 step 2: the journal before the index, so a prune's sweep cannot slip between them (§9.2 (b));
    // then the packs, so that an index entry whose pack is gone (§9.2 (d)) is not reused either.
    const condemned = await condemnedPacks(repo);
    const index = await repo.loadIndex(options.indexCache);
    const present = new Set((await storageCall(storage, 'listing packs', () => storage.list('packs/'))).map((n) => idOf(n, 'packs')));
    for (const id of index.packs.keys()) if (!present.has(id)) condemned.add(id);
    index.exclude(condemned);

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

    const prevFiles = new Map<string, TreeEntry>();
    for (const e of previous?.manifest.entries ?? []) if (e.kind === 'file') prevFiles.set(e.path, e);

    const result = { filesRead: 0, chunksUploaded: 0, bytesUploaded: 0, chunksReused: 0 };
    const reusedPacks = new Set<string>();
    const packing = new Packer(
      repo,
      options.packsInFlight ?? 1,
      (n) => {
        result.bytesUploaded += n;
        progress.uploadedBytes += n;
      },
      options.indexCache,
    );
    packer = packing;
    const batcher = new SealBatcher(codec);
    const budget = new ByteBudget((options.concurrency ?? DEFAULT_CONCURRENCY) * config.chunkSize);
    const left = new Set<TreeEntry>();
    const changed: string[] = [];

    /** Reads one file and stores its new chunks; resolves when every chunk has a place. */
    const readFile = async (entry: TreeEntry, chunks: string[], got: { size: number }): Promise<void> => {
      const stored: Promise<void>[] = [];
      let index_ = 0;
      const pieces = source.read(entry, config.chunkSize, codec.alloc?.bind(codec))[Symbol.asyncIterator]();
      try {
        for (;;) {
          // The budget is taken before the read, for the piece the file's size promises, so files
          // read at once never hold more than the budget in memory.
          const expected = Math.min(config.chunkSize, Math.max(1, (entry.size ?? 0) - got.size));
          await budget.take(expected);
          let next: IteratorResult<Uint8Array>;
          try {
            next = await pieces.next();
          } catch (e) {
            budget.give(expected);
            throw e;
          }
          if (next.done) {
            budget.give(expected);
            break;
          }
          const piece = next.value;
          const i = index_++;
          const n = piece.length;
          got.size += n;
          budget.give(expected - n);
          const storing = batcher.seal(piece).then(async ({ id, sealed, done }) => {
              try {
                chunks[i] = id;
                const loc = index.get(id);
                if (loc) {
                  reusedPacks.add(loc.pack);
                  result.chunksReused++;
                } else if (packing.has(id)) {
                  result.chunksReused++;
                } else {
                  await packing.add(id, sealed, n);
                  result.chunksUploaded++;
                }
              } finally {
                done();
                budget.give(n);
              }
              progress.bytesDone += n;
              report();
            });
          // Judged below, once the file is read; a failure before then is not an unhandled rejection.
          storing.catch(() => {});
          stored.push(storing);
        }
      } finally {
        await pieces.return?.();
        // Every piece handed out is accounted for before the file's outcome is decided.
        const outcomes = await Promise.allSettled(stored);
        const failed = outcomes.find((o) => o.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
      }
    };

    const backupFile = async (entry: TreeEntry): Promise<void> => {
      const prev = prevFiles.get(entry.path);
      if (sameFile(entry, prev) && prev!.chunks!.every((c) => index.has(c))) {
        entry.chunks = prev!.chunks!.slice();
        if (prev!.changed) entry.changed = true;
        for (const c of entry.chunks) reusedPacks.add(index.get(c)!.pack);
        result.chunksReused += entry.chunks.length;
        progress.bytesDone += entry.size ?? 0;
        progress.filesDone++;
        report();
        return;
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
    };

    const fileLimiter = new Limiter(options.filesInFlight ?? DEFAULT_FILES_IN_FLIGHT);
    for (const entry of files) await fileLimiter.run(() => backupFile(entry));
    await fileLimiter.drain();
    const packs = await packing.finish();
    await storageCall(storage, 'flush', () => storage.flush());

    const seq = (latest ?? 0) + 1;
    const kept = left.size ? entries.filter((e) => !left.has(e)) : entries;
    const keptFiles = kept.filter((e) => e.kind === 'file');
    const bytes = keptFiles.reduce((n, f) => n + (f.size ?? 0), 0);
    const parent = previous ? { name: previous.ref.name, hash: await repo.manifestHash(previous.ref) } : null;
    const manifest: Manifest = {
      header: {
        type: 'coffer-manifest', version: 2, backupId: config.backupId, seq, writer: toHex(repo.crypto.randomBytes(8)), parent,
        createdAt: now().toISOString(), entries: kept.length, files: keptFiles.length, bytes,
      },
      entries: kept,
    };
    // §6 step 6 (§9.2 (d)): a prune may have removed a pack this backup reused, or (its lock gone
    // stale) wrote, while it ran. Checked before the manifest is written, and once more after it.
    const relied = new Set([...reusedPacks, ...packs.map((p) => p.id)]);
    const checkRelied = async (written: ManifestRef | null, paused: boolean) => {
      if (relied.size === 0 && !paused) return;
      const present = new Set((await storageCall(storage, 'listing packs', () => storage.list('packs/'))).map((n) => idOf(n, 'packs')));
      const gone = [...relied].filter((p) => !present.has(p));
      if (gone.length === 0 && !paused) return;
      if (written) await storageCall(storage, `removing ${written.name}`, () => storage.delete(written.name));
      if (packs.some((p) => !present.has(p.id))) await packing.relist(present);
      throw new ConflictError(
        gone.length
          ? `a prune removed ${gone.length} packs this backup relies on while it ran; run the backup again to store those chunks anew`
          : 'this backup was paused for longer than its lock lasts, so a prune may have removed what it relies on; run the backup again (what it uploaded is reused)',
      );
    };
    await checkRelied(null, !lock.fresh(now().getTime()));
    options.onProgress?.({ ...progress, phase: 'manifest' });
    const ref = await repo.writeManifest(manifest);
    await checkRelied(ref, false);
    options.onProgress?.({ ...progress, phase: 'done' });
    return { seq, name: ref.name, files: keptFiles.length, entries: kept.length, bytes, skipped, changed, packsWritten: packs.length, ...result };
  } catch (e) {
    await packer?.abort();
    throw e;
  } finally {
    await lock.release();
    if (ownCodec) await codec.close();
  }
}

/* ------------------------------------------------------------------------------------------------
 * Reading blobs: restore and verify
 * --------------------------------------------------------------------------------------------- */

/** Expected plaintext length of chunk `i` of a file of `size` bytes. */
const chunkLength = (size: number, i: number, chunkSize: number) => Math.min(chunkSize, size - i * chunkSize);

/** One blob to read, and where its plaintext goes. */
interface BlobRead {
  id: string;
  plainLength: number;
  name: string;
  offset: number;
  sealedLength: number;
  /**
   * Blobs are read in one ranged get only with blobs of the same `group` (undefined is a group
   * too): a restore gives each database a group of its own, so that the chats wait for the
   * database's bytes alone (§6.3).
   */
  group?: number;
  /**
   * Its get starts only once every earlier blob is delivered: a restore marks the first file after
   * its databases, so that the databases have the network and the codec to themselves (§6.3).
   */
  afterEarlier?: boolean;
  /** Called with the verified plaintext (a view that is only valid during the call). */
  deliver(plain: Uint8Array): Promise<void>;
}

/**
 * One ranged get reads adjacent blobs of one pack, up to this many sealed chunks' worth of bytes
 * (a size the codec's buffer pool keeps a class for: READ_CHUNKS x sealedSize(chunkSize)).
 */
const READ_CHUNKS = 4;
/** Blobs of one request delivered at once (each may create, write and close a small file). */
const DELIVER_AT_ONCE = 16;

/**
 * Reads blobs in the given order, merging blobs that lie next to each other in one object into one
 * ranged get, with at most `inFlight` bytes being fetched or opened at once.
 */
async function readBlobs(repo: Repository, codec: ChunkCodec, reads: Iterable<BlobRead>, options: { inFlight: number; checkId: boolean; onDamage?: (e: DamagedBackupError, r: BlobRead) => void }): Promise<void> {
  const maxRead = READ_CHUNKS * sealedSize(repo.config.chunkSize, repo.config.segmentSize);
  const budget = new ByteBudget(options.inFlight);
  const limiter = new Limiter(64);
  // Version 1 blobs are whole objects: one byte more shows an object longer than it may be (§4.4).
  const extra = repo.version === 1 ? 1 : 0;
  const run = async (group: BlobRead[]) => {
    const first = group[0]!;
    if (first.afterEarlier) await limiter.drain();
    const length = group.reduce((n, r) => n + r.sealedLength, 0);
    await budget.take(length);
    await limiter.run(async () => {
      try {
        let bytes: Uint8Array;
        try {
          bytes = await storageCall(repo.storage, `reading ${first.name}`, () =>
            repo.storage.get(first.name, { offset: first.offset, length: length + extra }, codec.alloc?.bind(codec)),
          );
        } catch (e) {
          if (e instanceof ObjectNotFoundError) throw new DamagedBackupError('missing', first.name, { cause: e });
          throw e;
        }
        // Each blob is judged by §4.4 on what arrived: past the end of a cut object it is short
        // (truncated), and a version 1 object with a byte too many is longer than expected (corrupt).
        let o = 0;
        const blobs = group.map((r, i) => {
          const sealed = i === group.length - 1 ? bytes.subarray(o) : bytes.subarray(o, o + r.sealedLength);
          o += r.sealedLength;
          return { id: r.id, sealed, plainLength: r.plainLength };
        });
        let opened;
        try {
          opened = await codec.open(blobs, options.checkId);
        } catch (e) {
          // A blob in a pack is named by where it is: `packs/<id>@<offset>` (§3.2).
          const r = e instanceof DamagedBackupError && repo.version === 2 ? group.find((g) => e.object === `data/${g.id}`) : undefined;
          if (r) throw new DamagedBackupError((e as DamagedBackupError).reason, `${r.name}@${r.offset}`, { cause: e, detail: (e as DamagedBackupError).detail });
          throw e;
        }
        // Several files at once, a new one starting as each finishes: small files are mostly
        // waiting on their own creation.
        let next = 0;
        await Promise.all(Array.from({ length: Math.min(DELIVER_AT_ONCE, group.length) }, async () => {
          for (let k = next++; k < group.length; k = next++) await group[k]!.deliver(opened.plain[k]!);
        }));
        codec.release?.(opened.buffer);
      } catch (e) {
        if (!(e instanceof DamagedBackupError) || !options.onDamage) throw e;
        // One bad blob among many: read them one by one to say which (and check the good ones).
        if (group.length > 1) for (const r of group) await readBlobs(repo, codec, [r], options);
        else options.onDamage(e, first);
      } finally {
        budget.give(length);
      }
    });
  };
  let group: BlobRead[] = [];
  let groupBytes = 0;
  for (const r of reads) {
    const last = group[group.length - 1];
    if (last && (r.afterEarlier || last.group !== r.group || last.name !== r.name || last.offset + last.sealedLength !== r.offset || groupBytes + r.sealedLength > maxRead)) {
      await run(group);
      group = [];
      groupBytes = 0;
    }
    group.push(r);
    groupBytes += r.sealedLength;
  }
  if (group.length) await run(group);
  await limiter.drain();
}

/** Reads the sealed header at the end of a pack (§3.2), with bounded reads. */
async function readPackHeaderOf(repo: Repository, id: string): Promise<PackedBlob[]> {
  const name = packName(id);
  const st = await storageCall(repo.storage, `reading ${name}`, () => repo.storage.stat(name));
  if (!st) throw new DamagedBackupError('missing', name);
  if (st.size < 4) throw new DamagedBackupError('truncated', name);
  const get = (offset: number, length: number) => storageCall(repo.storage, `reading ${name}`, () => repo.storage.get(name, { offset, length }));
  const tail = await get(st.size - 4, 4);
  if (tail.length < 4) throw new DamagedBackupError('truncated', name);
  const n = new DataView(tail.buffer, tail.byteOffset, 4).getUint32(0);
  if (n > MAX_PACK_HEADER_BYTES || n + 4 > st.size) throw new DamagedBackupError('corrupt', name, { detail: 'bad header length' });
  const sealed = await get(st.size - 4 - n, n);
  const plain = await openObject(repo.crypto, repo.keys, { type: ObjectType.packHeader, id }, sealed, name, { segmentSize: repo.config.segmentSize });
  return decodePackHeader(plain, name);
}

/** A database, by its name (§6.3). */
const isDatabase = (path: string) => /\.(db|sqlite|sqlite3)$/i.test(path);
/** A small file (§6.3): not a database, under 1 MiB. */
const isSmallFile = (e: TreeEntry) => !isDatabase(e.path) && (e.size ?? 0) < 1024 * 1024;

/** §6.3: databases first, then small files (in the order they are stored), then the rest, newest first. */
export function restoreOrder(files: TreeEntry[]): TreeEntry[] {
  const rank = (e: TreeEntry) => (isDatabase(e.path) ? 0 : isSmallFile(e) ? 1 : 2);
  return files
    .map((e, i) => ({ e, i, r: rank(e) }))
    .sort((a, b) => a.r - b.r || (a.r === 0 ? (a.e.size ?? 0) - (b.e.size ?? 0) : a.r === 2 ? (BigInt(b.e.mtimeNs) > BigInt(a.e.mtimeNs) ? 1 : BigInt(b.e.mtimeNs) < BigInt(a.e.mtimeNs) ? -1 : 0) : 0) || a.i - b.i)
    .map((x) => x.e);
}

/** What {@link restore} takes: all optional. `onFile` hears of each file as soon as it is verified; `priority` orders the files (spec/format.md §6.3: databases first by default). */
export interface RestoreOptions {
  codec?: ChunkCodec;
  /** Which backup: a seq (the newest of that number) or a manifest; the newest that opens by default. */
  seq?: number | ManifestRef;
  lastSeenSeq?: number | null;
  allowRollback?: boolean;
  /** Keep setuid, setgid and sticky bits (dropped by default, §6.1 rule 5). */
  keepSpecialModes?: boolean;
  onProgress?: (p: Progress) => void;
  /** Called as each file is complete and verified (§6.3), in the order files finish. */
  onFile?: (entry: TreeEntry) => void;
  /** The order of files (§6.3 by default). */
  priority?: (files: TreeEntry[]) => TreeEntry[];
  /** Bytes being read or opened at once. */
  readAhead?: number;
  /** Kept for compatibility: chunks in flight (readAhead = this x chunkSize). */
  concurrency?: number;
  indexCache?: IndexCache;
}

/** What {@link restore} did: which backup, how much, and what it warned about. */
export interface RestoreResult {
  seq: number;
  name: string;
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

/** The manifest a restore or verify reads: a given one, or the newest that opens. */
async function chooseManifest(repo: Repository, options: { seq?: number | ManifestRef; lastSeenSeq?: number | null; allowRollback?: boolean }) {
  await repo.latest(options.lastSeenSeq, options.allowRollback);
  if (options.seq !== undefined) {
    const ref = typeof options.seq === 'number' ? null : options.seq;
    const manifest = await repo.readManifest(options.seq);
    return { manifest, ref: ref ?? { name: '', seq: manifest.header.seq, writer: manifest.header.writer ?? null }, skipped: [] as SkippedManifest[] };
  }
  const found = await repo.newestReadable({ lastSeenSeq: options.lastSeenSeq ?? null, allowRollback: options.allowRollback ?? false });
  if (!found) throw new DamagedBackupError('missing', undefined, { detail: 'there is no completed backup in this store yet' });
  return found;
}

/** §6: restores a backup into `target`; nothing appears at the final place unless all of it verified. */
export async function restore(repo: Repository, target: RestoreTarget, options: RestoreOptions = {}): Promise<RestoreResult> {
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, repo.config.segmentSize);
  const ownCodec = options.codec === undefined;
  let begun = false;
  try {
    const { manifest, ref, skipped: skippedManifests } = await chooseManifest(repo, options);
    const seq = manifest.header.seq;
    const { entries, specialModesDropped } = restorePlan(manifest, options.keepSpecialModes ?? false);
    const files = entries.filter((e) => e.kind === 'file');
    const index: BlobIndex = await repo.loadIndex(options.indexCache);
    const chunkSize = repo.config.chunkSize;
    // Every blob is located before anything is written: a missing one fails the restore at once.
    // Reads locate them again as they go (a map lookup), so nothing per chunk is kept meanwhile.
    const locate = (e: TreeEntry, i: number) => repo.locate(index, e.chunks![i]!, chunkLength(e.size!, i, chunkSize));
    for (const e of files) for (let i = 0; i < e.chunks!.length; i++) locate(e, i);
    let ordered = (options.priority ?? restoreOrder)(files);
    if (!options.priority) {
      // §6.3: small files (not databases) in the order they are stored, so that neighbours in a
      // pack are read with one ranged get.
      const smalls = ordered.filter(isSmallFile);
      const keys = new Map(smalls.map((e) => [e, e.chunks!.length === 0 ? null : locate(e, 0)]));
      smalls.sort((a, b) => {
        const x = keys.get(a);
        const y = keys.get(b);
        if (!x || !y) return (x ? 1 : 0) - (y ? 1 : 0);
        return x.name < y.name ? -1 : x.name > y.name ? 1 : x.offset - y.offset;
      });
      let k = 0;
      ordered = ordered.map((e) => (isSmallFile(e) ? smalls[k++]! : e));
    }
    const progress: Progress = {
      phase: 'restore', bytesDone: 0, filesDone: 0, uploadedBytes: 0,
      bytesTotal: manifest.header.bytes, filesTotal: files.length,
    };
    const report = () => options.onProgress?.({ ...progress });
    await target.begin();
    begun = true;
    report();
    for (const entry of entries) if (entry.kind === 'dir') await target.dir(entry);

    const finished = async (entry: TreeEntry, sink: FileSink) => {
      await sink.close();
      progress.filesDone++;
      report();
      options.onFile?.(entry);
    };
    // Files open at their first chunk and close at their last, so only a few are open at once.
    const sinks = new Map<TreeEntry, { sink: Promise<FileSink>; left: number }>();
    const sinkFor = (entry: TreeEntry) => {
      let s = sinks.get(entry);
      if (!s) sinks.set(entry, (s = { sink: target.file(entry), left: entry.chunks!.length }));
      return s;
    };
    function* reads(): Iterable<BlobRead> {
      let afterDatabase = false;
      for (let f = 0; f < ordered.length; f++) {
        const entry = ordered[f]!;
        // A database is read in gets of its own, and the files after the databases wait for them:
        // the chats wait for the databases' bytes alone (§6.3).
        const group = isDatabase(entry.path) ? f : undefined;
        for (let i = 0; i < entry.chunks!.length; i++) {
          const loc = locate(entry, i);
          yield {
            id: entry.chunks![i]!, plainLength: chunkLength(entry.size!, i, chunkSize), name: loc.name, offset: loc.offset, sealedLength: loc.sealedLength, group,
            afterEarlier: afterDatabase && group === undefined,
            async deliver(plain) {
              const s = sinkFor(entry);
              const sink = await s.sink;
              await sink.write(i * chunkSize, plain);
              progress.bytesDone += plain.length;
              report();
              if (--s.left === 0) {
                sinks.delete(entry);
                await finished(entry, sink);
              }
            },
          };
          afterDatabase = group !== undefined;
        }
      }
    }
    // Empty files first: they need no reads.
    for (const entry of ordered) if (entry.chunks!.length === 0) await finished(entry, await target.file(entry));
    try {
      await readBlobs(repo, codec, reads(), { inFlight: options.readAhead ?? (options.concurrency ?? DEFAULT_CONCURRENCY) * chunkSize, checkId: false });
    } finally {
      // A failure leaves files open: close them before the target removes what it made.
      await Promise.allSettled([...sinks.values()].map(async (s) => (await s.sink).close()));
    }
    // Symlinks last, once every file is closed: nothing is created below one (§6.1 rule 4).
    let symlinksSkipped = 0;
    for (const entry of entries) if (entry.kind === 'symlink' && (await target.symlink(entry)) === false) symlinksSkipped++;
    await target.commit(entries);
    options.onProgress?.({ ...progress, phase: 'done' });
    return {
      seq, name: ref.name, files: files.length, entries: manifest.entries.length, bytes: manifest.header.bytes, createdAt: manifest.header.createdAt,
      skippedManifests, specialModesDropped, changed: files.filter((f) => f.changed).map((f) => f.path), symlinksSkipped,
    };
  } catch (e) {
    if (begun) await target.abort().catch(() => {});
    throw e;
  } finally {
    if (ownCodec) await codec.close();
  }
}

/** What {@link verify} takes: all optional. */
export interface VerifyOptions {
  /** The chunk codec (default: the repository's crypto on this thread). */
  codec?: ChunkCodec;
  /** Which backups to check, by seq (default: every one). */
  seqs?: number[];
  /** Newest seq this device has seen (rollback check); `null` for none. */
  lastSeenSeq?: number | null;
  onProgress?: (p: Progress) => void;
  /** Blobs checked at once. */
  concurrency?: number;
  /** Copies of the index objects, kept between runs (§3.3). */
  indexCache?: IndexCache;
}

/** What {@link verify} found: the backups and objects checked, and each damaged object. */
export interface VerifyResult {
  manifests: number[];
  objectsChecked: number;
  bytesChecked: number;
  damaged: { object: string; reason: string; message: string }[];
}

/** Reads back every blob that the chosen manifests (all by default) name and checks it (§4.4). */
export async function verify(
  repo: Repository,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const codec = options.codec ?? inlineCodec(repo.crypto, repo.keys, repo.config.segmentSize);
  const ownCodec = options.codec === undefined;
  try {
    await repo.latest(options.lastSeenSeq);
    const refs = (await repo.manifests()).filter((r) => !options.seqs || options.seqs.includes(r.seq));
    // Junk under manifests/ that is not even a manifest name of this store's version.
    const named = new Set((await repo.manifests()).map((r) => r.name));
    const junk = options.seqs ? [] : (await storageCall(repo.storage, 'listing manifests', () => repo.storage.list('manifests/'))).filter((n) => !named.has(n));
    const damaged: VerifyResult['damaged'] = [];
    const seen = new Set<string>();
    const record = (e: unknown, fallback: string, object = (e as DamagedBackupError).object ?? fallback) => {
      if (!(e instanceof DamagedBackupError)) throw e;
      const key = `${object}:${e.reason}`;
      if (seen.has(key)) return;
      seen.add(key);
      damaged.push({ object, reason: e.reason, message: e.message });
    };
    for (const name of junk) record(new DamagedBackupError('corrupt', name, { detail: 'not a manifest name of this store' }), name);
    const index = await repo.loadIndex(options.indexCache).catch((e) => {
      record(e, 'index/');
      return repo.loadIndex().catch(() => null);
    });
    const chunks = new Map<string, number>();
    const parents: { child: string; parent: { name: string; hash: string } }[] = [];
    for (const ref of refs) {
      try {
        const m = await repo.readManifest(ref);
        if (m.header.parent) parents.push({ child: ref.name, parent: m.header.parent });
        for (const e of m.entries) {
          if (e.kind !== 'file') continue;
          e.chunks!.forEach((id, i) => chunks.set(id, chunkLength(e.size!, i, repo.config.chunkSize)));
        }
      } catch (e) {
        record(e, ref.name);
      }
    }
    // §5: each backup names its parent by name and hash. A parent that is gone must have been
    // removed by a forget (its journal record says so); otherwise the store dropped it.
    if (!options.seqs && parents.length) {
      const present = new Set((await repo.manifests()).map((r) => r.name));
      const forgotten = new Set<string>();
      for (const { record: j } of (await readJournal(repo)).records) if (j.kind === 'forget') for (const n of j.manifests) forgotten.add(n);
      for (const { child, parent } of parents) {
        if (present.has(parent.name)) {
          const hash = await repo.manifestHash({ name: parent.name, seq: 0, writer: null }).catch(() => null);
          if (hash !== null && hash !== parent.hash) record(new DamagedBackupError('misplaced', parent.name, { detail: `it is not the backup ${child} was made from (another object under its name)` }), parent.name);
        } else if (!forgotten.has(parent.name)) {
          record(new DamagedBackupError('missing', parent.name, { detail: `${child} was made from it, and no forget removed it: the store dropped it` }), parent.name);
        }
      }
    }
    const progress: Progress = {
      phase: 'verify', bytesDone: 0, filesDone: 0, uploadedBytes: 0, filesTotal: chunks.size,
      bytesTotal: [...chunks.values()].reduce((a, b) => a + b, 0),
    };
    const reads: BlobRead[] = [];
    for (const [id, len] of chunks) {
      try {
        const loc = repo.locate(index ?? (await repo.loadIndex()), id, len);
        reads.push({
          id, plainLength: len, ...loc,
          async deliver(plain) {
            progress.bytesDone += plain.length;
            progress.filesDone++;
            options.onProgress?.({ ...progress });
          },
        });
      } catch (e) {
        record(e, `data/${id}`);
      }
    }
    // In storage order, so adjacent blobs are read together.
    reads.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.offset - b.offset));
    await readBlobs(repo, codec, reads, {
      inFlight: (options.concurrency ?? DEFAULT_CONCURRENCY) * repo.config.chunkSize * 2,
      checkId: true,
      onDamage: (e, r) => record(e, r.name),
    });
    // Every pack's own header must list what the index says it holds (§3.2): `repair index` needs it.
    for (const pack of index?.packs.values() ?? []) {
      const name = packName(pack.id);
      try {
        const listed = await readPackHeaderOf(repo, pack.id);
        const want = new Set(pack.blobs.map((b) => `${b.id}@${b.offset}+${b.sealedLength}`));
        if (listed.length !== want.size || !listed.every((b) => want.has(`${b.id}@${b.offset}+${b.sealedLength}`))) {
          throw new DamagedBackupError('corrupt', name, { detail: 'its header and the index disagree' });
        }
      } catch (e) {
        record(e, name);
      }
    }
    return { manifests: refs.map((r) => r.seq), objectsChecked: chunks.size, bytesChecked: progress.bytesDone, damaged };
  } finally {
    if (ownCodec) await codec.close();
  }
}
