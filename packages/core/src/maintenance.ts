/**
 * Retention and prune (spec/format.md §9): `forget` removes manifests by a retention policy;
 * `prune` deletes and repacks what no remaining manifest references, in two phases (mark, sweep)
 * that neither a kill at any point nor a backup running on another device can turn into lost data.
 */
import { toHex } from './bytes.js';
import { openBlobs } from './codec.js';
import { CofferError, DamagedBackupError, ObjectNotFoundError, UsageError } from './errors.js';
import type { Progress } from './engine.js';
import { listLocks, readJournal, takeLock, writeJournal, type HeldLock, type LockInfo } from './journal.js';
import { CONFIG_V2, idOf, packName } from './layout.js';
import { sealedSize } from './object.js';
import { PackBuilder, packLength, type PackEntry, type PackedBlob } from './pack.js';
import { storageCall, type IndexCache, type Repository, type SkippedManifest } from './repo.js';

/* ------------------------------------------------------------------------------------------------
 * Forget (§9.1)
 * --------------------------------------------------------------------------------------------- */

/** §9.1: how many backups to keep; at least one field must be given. */
export interface RetentionPolicy {
  keepLast?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

/** One backup as forget reports it: manifest name, seq and time. */
export interface BackupSummary {
  name: string;
  seq: number;
  createdAt: string;
}

/** Why a retention policy keeps a backup (spec/format.md §9.1). */
export type KeepReason = 'newest' | 'last' | 'daily' | 'weekly' | 'monthly';

export function checkPolicy(policy: RetentionPolicy): void {
  const values = [policy.keepLast, policy.keepDaily, policy.keepWeekly, policy.keepMonthly];
  if (values.every((v) => v === undefined)) throw new UsageError('say which backups to keep', 'for example --keep-last 3, or --keep-daily 7 --keep-weekly 4');
  for (const v of values) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new UsageError(`a --keep-* value must be a whole number of backups, not ${String(v)}`);
  }
}

/** §6: newest first (largest seq, then latest createdAt, then largest name). */
const newestFirst = (a: BackupSummary, b: BackupSummary) =>
  b.seq - a.seq || (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0) || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0);

/** The ISO 8601 week (UTC) of `d`, as `YYYY-Www`. */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  t.setUTCDate(t.getUTCDate() + 4 - (t.getUTCDay() || 7)); // the Thursday of its week names the year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** §9.1: the backups a policy keeps, each with why (pure: dry runs and tests use it as is). */
export function applyRetention(backups: BackupSummary[], policy: RetentionPolicy): Map<string, KeepReason[]> {
  checkPolicy(policy);
  const ordered = [...backups].sort(newestFirst);
  const keep = new Map<string, KeepReason[]>();
  const mark = (b: BackupSummary, r: KeepReason) => keep.set(b.name, [...(keep.get(b.name) ?? []), r]);
  if (ordered[0]) mark(ordered[0], 'newest');
  for (const b of ordered.slice(0, policy.keepLast ?? 0)) mark(b, 'last');
  const buckets: [KeepReason, number | undefined, (d: Date) => string][] = [
    ['daily', policy.keepDaily, (d) => d.toISOString().slice(0, 10)],
    ['weekly', policy.keepWeekly, isoWeek],
    ['monthly', policy.keepMonthly, (d) => d.toISOString().slice(0, 7)],
  ];
  for (const [reason, n, bucketOf] of buckets) {
    const seen = new Set<string>();
    for (const b of ordered) {
      if (seen.size >= (n ?? 0)) break;
      const t = Date.parse(b.createdAt);
      const bucket = Number.isFinite(t) ? bucketOf(new Date(t)) : `?${b.name}`;
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      mark(b, reason);
    }
  }
  return keep;
}

/** What {@link forget} takes: `dryRun` says what would go and changes nothing. */
export interface ForgetOptions {
  dryRun?: boolean;
  now?: () => Date;
}

/** What {@link forget} kept and removed (or would, in a dry run). */
export interface ForgetResult {
  dryRun: boolean;
  kept: (BackupSummary & { reasons: KeepReason[] })[];
  forgotten: BackupSummary[];
  /** Manifests an earlier, interrupted forget recorded and did not delete: deleted first (§9.1). */
  finished: string[];
  /** Manifest names that do not open: never forgotten (and they stop a prune: §9.2). */
  unreadable: SkippedManifest[];
  /** The journal record written, if any. */
  journal: string | null;
}

function requireV2(repo: Repository, what: string): void {
  if (repo.version !== 2) throw new UsageError(`this store uses backup format version 1, which ${what} does not work on`, 'run `coffer migrate` once to convert it to version 2');
}

/** Opens every manifest of the store; names that do not open are returned apart. */
async function openManifests(repo: Repository, onEach?: (done: number, total: number) => void) {
  const refs = await repo.manifests();
  const opened: { summary: BackupSummary; chunks: string[][] }[] = [];
  const unreadable: SkippedManifest[] = [];
  for (const [i, ref] of refs.entries()) {
    try {
      const m = await repo.readManifest(ref);
      opened.push({ summary: { name: ref.name, seq: ref.seq, createdAt: m.header.createdAt }, chunks: m.entries.filter((e) => e.kind === 'file').map((e) => e.chunks!) });
    } catch (e) {
      if (!(e instanceof DamagedBackupError)) throw e;
      unreadable.push({ name: ref.name, seq: ref.seq, reason: e.reason, message: e.message });
    }
    onEach?.(i + 1, refs.length);
  }
  return { opened, unreadable };
}

/** §9.1: deletes the manifests `policy` does not keep, after a journal record that names them. */
export async function forget(repo: Repository, policy: RetentionPolicy, options: ForgetOptions = {}): Promise<ForgetResult> {
  requireV2(repo, 'forget');
  checkPolicy(policy);
  const now = options.now ?? (() => new Date());
  const { opened, unreadable } = await openManifests(repo);
  const backups = opened.map((o) => o.summary).sort(newestFirst);
  const newest = backups[0]?.name;
  // A forget killed midway: what its record names goes first (never the newest backup).
  const recorded = new Set<string>();
  for (const { record } of (await readJournal(repo)).records) if (record.kind === 'forget') for (const m of record.manifests) recorded.add(m);
  const finished = backups.filter((b) => recorded.has(b.name) && b.name !== newest).map((b) => b.name);
  const rest = backups.filter((b) => !finished.includes(b.name));
  const keep = applyRetention(rest, policy);
  const kept = rest.filter((b) => keep.has(b.name)).map((b) => ({ ...b, reasons: keep.get(b.name)! }));
  const forgotten = rest.filter((b) => !keep.has(b.name));
  let journal: string | null = null;
  if (!options.dryRun) {
    if (forgotten.length) journal = await writeJournal(repo, { kind: 'forget', time: now().toISOString(), manifests: forgotten.map((b) => b.name) }, now().getTime());
    for (const name of [...finished, ...forgotten.map((b) => b.name)]) await storageCall(repo.storage, `removing ${name}`, () => repo.storage.delete(name));
    await storageCall(repo.storage, 'flush', () => repo.storage.flush());
  }
  return { dryRun: !!options.dryRun, kept, forgotten, finished, unreadable, journal };
}

/* ------------------------------------------------------------------------------------------------
 * Prune (§9.2)
 * --------------------------------------------------------------------------------------------- */

/** §9.2: the default share of a pack's length that may be unreferenced before it is repacked. */
export const DEFAULT_MAX_UNUSED = 0.1;

/** What {@link prune} takes: all optional. */
export interface PruneOptions {
  dryRun?: boolean;
  /** A pack whose unowned blobs take more than this share of its length is repacked (0 to 1). */
  maxUnused?: number;
  indexCache?: IndexCache;
  /** Who holds the prune's lock (§9.3). */
  host?: string;
  pid?: number;
  now?: () => Date;
  /** §9.3: true when the process holding `lock` is known to be gone (its lock then counts as stale). */
  holderGone?: (lock: LockInfo) => boolean;
  onProgress?: (p: Progress) => void;
}

/** What {@link prune} deleted, repacked and freed (or would, in a dry run). */
export interface PruneResult {
  dryRun: boolean;
  /** The packs the index lists, by what the mark made of them (§9.2). */
  packs: { indexed: number; used: number; unused: number; mostlyUnused: number; unindexed: number; missing: number };
  /** Packs no index lists that were left alone because a backup is running. */
  unindexedKept: number;
  blobsRepacked: number;
  /** Sealed bytes of blobs copied into new packs. */
  bytesRepacked: number;
  packsWritten: number;
  bytesWritten: number;
  packsDeleted: number;
  bytesDeleted: number;
  /** bytesDeleted - bytesWritten (negative while the sweep waits for a backup). */
  bytesFreed: number;
  indexesReplaced: number;
  /** Records of earlier prunes (killed, or waiting) that this one finished. */
  earlierFinished: number;
  /** Running backups the sweep waits for: what was condemned stays until a later prune. */
  waitingFor: { host: string; pid: number; started: string }[];
  staleLocksRemoved: number;
  /** Packs the index lists that the store lacks (left out of the index the sweep writes). */
  missing: string[];
  /** Blobs that did not open when read for a repack: their packs are kept. */
  damaged: { object: string; reason: string; message: string }[];
}

const emptyResult = (dryRun: boolean): PruneResult => ({
  dryRun, packs: { indexed: 0, used: 0, unused: 0, mostlyUnused: 0, unindexed: 0, missing: 0 }, unindexedKept: 0, blobsRepacked: 0, bytesRepacked: 0,
  packsWritten: 0, bytesWritten: 0, packsDeleted: 0, bytesDeleted: 0, bytesFreed: 0, indexesReplaced: 0, earlierFinished: 0, waitingFor: [],
  staleLocksRemoved: 0, missing: [], damaged: [],
});

/** Requests of at most this many bytes read adjacent blobs of a pack being repacked. */
const MAX_READ_BYTES = 8 * 1024 * 1024;

/** One prune run: its options, lock and running totals. */
class Pruner {
  readonly result: PruneResult;
  private lock: HeldLock | null = null;
  private readonly now: () => Date;
  private readonly progress: Progress = { phase: 'mark', bytesDone: 0, bytesTotal: 0, filesDone: 0, filesTotal: 0, uploadedBytes: 0 };

  constructor(private readonly repo: Repository, private readonly options: PruneOptions) {
    this.result = emptyResult(!!options.dryRun);
    this.now = options.now ?? (() => new Date());
  }

  private report(phase: Progress['phase'], change: Partial<Progress> = {}): void {
    Object.assign(this.progress, { phase, ...change });
    this.options.onProgress?.({ ...this.progress });
  }

  private call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return storageCall(this.repo.storage, what, fn);
  }

  async run(): Promise<PruneResult> {
    if (!this.options.dryRun) this.lock = await takeLock(this.repo, 'prune', { host: this.options.host ?? 'unknown', pid: this.options.pid ?? 0 }, this.now);
    try {
      await this.checkLocks();
      // Earlier records first, oldest first; one that must wait holds up every later one.
      const condemnedEarlier = new Set<string>();
      for (const { name, record } of (await readJournal(this.repo)).records) {
        if (record.kind !== 'prune') continue;
        const ids = (names: string[] = []) => new Set(names.map((p) => idOf(p, 'packs')).filter((id) => id !== null));
        const swept = await this.sweep(name, ids(record.packs), ids(record.unindexed));
        if (!swept) return this.done();
        for (const id of swept) condemnedEarlier.add(id);
        this.result.earlierFinished++;
      }
      const plan = await this.mark(condemnedEarlier);
      if (!plan) return this.done();
      if (this.options.dryRun) {
        this.result.packsWritten += plan.newPacks.length;
        this.result.bytesWritten += plan.newPacks.reduce((n, l) => n + l, 0);
        this.result.packsDeleted += plan.condemned.size;
        this.result.bytesDeleted += [...plan.condemned.values()].reduce((n, l) => n + l, 0);
        return this.done();
      }
      const failed = await this.repack(plan.repack);
      for (const id of failed) plan.condemned.delete(id);
      const unindexed = [...plan.condemned.keys()].filter((id) => plan.unindexed.has(id));
      const record = await writeJournal(
        this.repo,
        {
          kind: 'prune', time: this.now().toISOString(), packs: [...plan.condemned.keys()].filter((id) => !plan.unindexed.has(id)).map(packName),
          ...(unindexed.length ? { unindexed: unindexed.map(packName) } : {}), indexes: plan.indexes,
        },
        this.now().getTime(),
      );
      await this.sweep(record, new Set(plan.condemned.keys()), plan.unindexed);
      return this.done();
    } finally {
      await this.lock?.release();
    }
  }

  private done(): PruneResult {
    this.result.bytesFreed = this.result.bytesDeleted - this.result.bytesWritten;
    this.report('done');
    return this.result;
  }

  private isStale(l: LockInfo): boolean {
    return l.stale || (this.options.holderGone?.(l) ?? false);
  }

  /** §9.3: refuses to run beside another prune or a migration; removes stale locks. */
  private async checkLocks(): Promise<void> {
    const others = (await listLocks(this.repo, this.now().getTime())).filter((l) => l.name !== this.lock?.name);
    const busy = others.find((l) => (l.kind === 'prune' || (l.kind as string) === 'migrate') && !this.isStale(l));
    if (busy) {
      const what = busy.kind === 'prune' ? 'another prune' : 'a migration';
      throw new CofferError('prune-running', `${what} of this store is running (on ${busy.host}, process ${busy.pid}, since ${busy.started})`, {
        hint: `wait for it to finish; the lock of a ${busy.kind} that died stops counting 30 minutes after its last refresh`,
      });
    }
    if (this.options.dryRun) return;
    for (const l of others.filter((l) => this.isStale(l))) {
      await this.call(`removing ${l.name}`, () => this.repo.storage.delete(l.name));
      this.result.staleLocksRemoved++;
    }
  }

  /** Backups holding a live lock (§9.3). */
  private async runningBackups(): Promise<LockInfo[]> {
    return (await listLocks(this.repo, this.now().getTime())).filter((l) => l.kind === 'backup' && !this.isStale(l));
  }

  /** Every blob a manifest references; a manifest that does not open stops the prune (§9.2). */
  private async referenced(phase: 'mark' | 'sweep'): Promise<Set<string>> {
    this.report(phase, { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 });
    const { opened, unreadable } = await openManifests(this.repo, (filesDone, filesTotal) => this.report(phase, { filesDone, filesTotal }));
    const bad = unreadable[0];
    if (bad) {
      throw new DamagedBackupError(bad.reason, bad.name, {
        detail: 'prune stops, as it cannot tell which packs that backup needs (if you do not need it, delete the object from the store, then prune again)',
      });
    }
    const refs = new Set<string>();
    for (const o of opened) for (const chunks of o.chunks) for (const c of chunks) refs.add(c);
    return refs;
  }

  private async presentPacks(): Promise<Set<string>> {
    const names = await this.call('listing packs', () => this.repo.storage.list('packs/'));
    return new Set(names.map((n) => idOf(n, 'packs')).filter((id) => id !== null));
  }

  /** The length of a pack: from the index when it lists it, else from the store. */
  private async lengthOf(id: string, listed: PackEntry | undefined): Promise<number> {
    if (listed) return packLength(listed.blobs, this.repo.config.segmentSize);
    return (await this.call(`reading ${packName(id)}`, () => this.repo.storage.stat(packName(id))))?.size ?? 0;
  }

  /**
   * §9.2 mark: which packs to condemn (with their lengths), which blobs to copy first, and the index
   * objects read. Packs condemned by earlier records (only still present in a dry run) are skipped.
   * `null` when there is nothing to do.
   */
  private async mark(earlier: Set<string>) {
    const refs = await this.referenced('mark');
    const index = await this.repo.loadIndex(this.options.indexCache);
    const present = await this.presentPacks();
    const running = await this.runningBackups();
    for (const id of earlier) present.delete(id);
    const listed = [...index.packs.values()].filter((p) => !earlier.has(p.id));
    const indexed = listed.filter((p) => present.has(p.id));
    const missing = listed.filter((p) => !present.has(p.id)).map((p) => packName(p.id));
    this.result.missing.push(...missing);

    // Each referenced blob is owned by one pack: the largest referenced share, the most referenced bytes, the smallest id.
    const stats = new Map<string, { share: number; ref: number }>();
    for (const p of indexed) {
      let ref = 0;
      let all = 0;
      for (const b of p.blobs) {
        all += b.sealedLength;
        if (refs.has(b.id)) ref += b.sealedLength;
      }
      stats.set(p.id, { share: all ? ref / all : 0, ref });
    }
    const better = (a: string, b: string) => {
      const x = stats.get(a)!;
      const y = stats.get(b)!;
      return x.share !== y.share ? x.share > y.share : x.ref !== y.ref ? x.ref > y.ref : a < b;
    };
    const owner = new Map<string, string>();
    for (const p of indexed) for (const b of p.blobs) if (refs.has(b.id) && (!owner.has(b.id) || better(p.id, owner.get(b.id)!))) owner.set(b.id, p.id);

    const maxUnused = this.options.maxUnused ?? DEFAULT_MAX_UNUSED;
    const condemned = new Map<string, number>();
    const repack: { pack: PackEntry; blobs: PackedBlob[] }[] = [];
    const counts = this.result.packs;
    counts.indexed += indexed.length;
    counts.missing += missing.length;
    for (const p of indexed) {
      const owned = p.blobs.filter((b) => owner.get(b.id) === p.id);
      const length = packLength(p.blobs, this.repo.config.segmentSize);
      const unused = p.blobs.reduce((n, b) => n + b.sealedLength, 0) - owned.reduce((n, b) => n + b.sealedLength, 0);
      if (owned.length === 0) {
        counts.unused++;
        condemned.set(p.id, length);
      } else if (unused > maxUnused * length) {
        counts.mostlyUnused++;
        condemned.set(p.id, length);
        repack.push({ pack: p, blobs: owned.sort((a, b) => a.offset - b.offset) });
      } else counts.used++;
    }

    // Packs no index lists: condemned only while no backup runs, checked against the index listed again.
    const unlisted = [...present].filter((id) => !index.packs.has(id));
    const unindexed = new Set<string>();
    if (unlisted.length && running.length) this.result.unindexedKept += unlisted.length;
    else if (unlisted.length) {
      const again = await this.repo.loadIndex(this.options.indexCache);
      for (const id of unlisted) {
        if (again.packs.has(id)) continue;
        counts.unindexed++;
        unindexed.add(id);
        condemned.set(id, await this.lengthOf(id, undefined));
      }
    }

    // The new packs a repack writes, as PackBuilder would fill them (for the dry run's figures).
    const newPacks: number[] = [];
    let group: PackedBlob[] = [];
    let used = 0;
    const close = () => {
      if (group.length) newPacks.push(packLength(group, this.repo.config.segmentSize));
      group = [];
      used = 0;
    };
    for (const r of repack) {
      for (const b of r.blobs) {
        if (used > 0 && used + b.sealedLength > this.repo.packSize) close();
        group.push({ ...b, offset: used });
        used += b.sealedLength;
        this.result.blobsRepacked++;
        this.result.bytesRepacked += b.sealedLength;
      }
    }
    close();
    const changed = condemned.size > 0 || missing.length > 0 || index.objects.length > 1;
    return changed ? { condemned, unindexed, repack, newPacks, indexes: index.objects.slice() } : null;
  }

  /**
   * §9.2: copies the owned blobs of mostly unused packs, checked, into new packs, then lists them in
   * an index object (packs and index flushed). Returns the ids of packs whose blobs did not open.
   */
  private async repack(sources: { pack: PackEntry; blobs: PackedBlob[] }[]): Promise<Set<string>> {
    const failed = new Set<string>();
    if (sources.length === 0) return failed;
    const { repo } = this;
    const segmentSize = repo.config.segmentSize;
    const maxBlob = sealedSize(repo.config.chunkSize, segmentSize);
    const written: PackEntry[] = [];
    let builder: PackBuilder | null = null;
    let buffer: Uint8Array | undefined;
    this.report('repack', { bytesDone: 0, bytesTotal: this.result.bytesRepacked, filesDone: 0, filesTotal: sources.length });
    this.result.blobsRepacked = 0;
    this.result.bytesRepacked = 0;
    const ship = async () => {
      const pack = builder;
      builder = null;
      if (!pack || pack.blobs.length === 0) return;
      const bytes = await pack.finish(repo.crypto, repo.keys, segmentSize);
      const name = packName(pack.id);
      await this.call(`writing ${name}`, () => repo.storage.put(name, bytes));
      written.push({ id: pack.id, blobs: pack.blobs });
      this.result.packsWritten++;
      this.result.bytesWritten += bytes.length;
      buffer = new Uint8Array(bytes.buffer, 0, bytes.buffer.byteLength);
    };
    for (const { pack, blobs } of sources) {
      const name = packName(pack.id);
      let copies: { blob: PackedBlob; sealed: Uint8Array }[];
      try {
        copies = await this.readChecked(name, blobs);
      } catch (e) {
        if (!(e instanceof DamagedBackupError)) throw e;
        failed.add(pack.id);
        this.result.damaged.push({ object: e.object ?? name, reason: e.reason, message: e.message });
        continue;
      }
      for (const { blob, sealed } of copies) {
        if (builder?.wouldOverflow(sealed.length)) await ship();
        builder ??= new PackBuilder(toHex(repo.crypto.randomBytes(32)), repo.packSize, maxBlob, buffer);
        buffer = undefined;
        builder.add(blob.id, sealed, blob.plainLength);
        this.result.blobsRepacked++;
        this.result.bytesRepacked += sealed.length;
        this.report('repack', { bytesDone: this.result.bytesRepacked });
      }
      this.report('repack', { filesDone: this.progress.filesDone + 1 });
    }
    await ship();
    if (written.length) {
      await this.call('flush', () => repo.storage.flush());
      await repo.writeIndex(written, this.options.indexCache);
      await this.call('flush', () => repo.storage.flush());
    }
    return failed;
  }

  /** Reads blobs of one pack (adjacent ones in one ranged get) and opens each (§4.4, id included). */
  private async readChecked(name: string, blobs: PackedBlob[]): Promise<{ blob: PackedBlob; sealed: Uint8Array }[]> {
    const { repo } = this;
    const out: { blob: PackedBlob; sealed: Uint8Array }[] = [];
    for (let i = 0; i < blobs.length; ) {
      let j = i + 1;
      let end = blobs[i]!.offset + blobs[i]!.sealedLength;
      while (j < blobs.length && blobs[j]!.offset === end && end + blobs[j]!.sealedLength - blobs[i]!.offset <= MAX_READ_BYTES) end += blobs[j++]!.sealedLength;
      const start = blobs[i]!.offset;
      let bytes: Uint8Array;
      try {
        bytes = await this.call(`reading ${name}`, () => repo.storage.get(name, { offset: start, length: end - start }));
      } catch (e) {
        if (e instanceof ObjectNotFoundError) throw new DamagedBackupError('missing', name, { cause: e });
        throw e;
      }
      const group = blobs.slice(i, j).map((blob) => ({ blob, sealed: bytes.subarray(blob.offset - start, Math.min(bytes.length, blob.offset - start + blob.sealedLength)) }));
      for (const g of group) {
        try {
          await openBlobs(repo.crypto, repo.keys, repo.config.segmentSize, [{ id: g.blob.id, sealed: g.sealed, plainLength: g.blob.plainLength }], true);
        } catch (e) {
          if (e instanceof DamagedBackupError) throw new DamagedBackupError(e.reason, `${name}@${g.blob.offset}`, { cause: e, detail: e.detail });
          throw e;
        }
        out.push(g);
      }
      i = j;
    }
    return out;
  }

  /**
   * §9.2 sweep of one record: waits (returns null) while a backup runs; otherwise keeps condemned
   * packs a manifest now needs (and unindexed ones that an index lists by now), writes one index for every pack that stays, deletes the index
   * objects it read, the condemned packs, and the record. Returns the ids of the packs it deleted
   * (in a dry run: would delete).
   */
  private async sweep(record: string, condemned: Set<string>, unindexed: Set<string>): Promise<Set<string> | null> {
    const running = await this.runningBackups();
    if (running.length) {
      this.result.waitingFor = running.map((l) => ({ host: l.host, pid: l.pid, started: l.started }));
      return null;
    }
    const refs = await this.referenced('sweep');
    const index = await this.repo.loadIndex(this.options.indexCache);
    const present = await this.presentPacks();
    // A pack condemned as unindexed that an index lists now (its backup came back from a long
    // pause) is left for the next mark to judge.
    const doomed = new Set([...condemned, ...unindexed].filter((id) => present.has(id) && !(unindexed.has(id) && index.packs.has(id))));
    // A condemned pack stays when it holds a referenced blob that no staying pack holds.
    const holders = new Map<string, string[]>();
    for (const p of index.packs.values()) {
      if (!present.has(p.id)) continue;
      for (const b of p.blobs) if (refs.has(b.id)) holders.set(b.id, [...(holders.get(b.id) ?? []), p.id]);
    }
    for (const hs of holders.values()) if (hs.every((h) => doomed.has(h))) for (const h of hs) doomed.delete(h);

    const all = [...index.packs.values()];
    const stay = all.filter((p) => present.has(p.id) && !doomed.has(p.id));
    for (const p of all) if (!present.has(p.id) && !this.result.missing.includes(packName(p.id))) this.result.missing.push(packName(p.id));
    const lengths = new Map<string, number>();
    for (const id of doomed) lengths.set(id, await this.lengthOf(id, index.packs.get(id)));
    const rewrite = index.objects.length > 1 || stay.length !== all.length;
    if (this.options.dryRun) {
      this.result.packsDeleted += doomed.size;
      this.result.bytesDeleted += [...lengths.values()].reduce((n, l) => n + l, 0);
      return doomed;
    }
    const { storage } = this.repo;
    this.report('sweep', { filesDone: 0, filesTotal: doomed.size, bytesDone: 0, bytesTotal: [...lengths.values()].reduce((n, l) => n + l, 0) });
    if (rewrite) {
      // (1) one index for every pack that stays, durable before (2) the ones it replaces go.
      if (stay.length) await this.repo.writeIndex(stay, this.options.indexCache);
      await this.call('flush', () => storage.flush());
      for (const name of index.objects) await this.call(`removing ${name}`, () => storage.delete(name));
      this.result.indexesReplaced += index.objects.length;
    }
    // (3) the condemned packs, (4) the record.
    for (const id of doomed) {
      await this.call(`removing ${packName(id)}`, () => storage.delete(packName(id)));
      this.result.packsDeleted++;
      this.result.bytesDeleted += lengths.get(id)!;
      this.report('sweep', { filesDone: this.result.packsDeleted, bytesDone: this.result.bytesDeleted });
    }
    await this.call('flush', () => storage.flush());
    await this.call(`removing ${record}`, () => storage.delete(record));
    await this.call('flush', () => storage.flush());
    return doomed;
  }
}

/** §9.2: deletes and repacks what no manifest references; see PruneResult for what it reports. */
export async function prune(repo: Repository, options: PruneOptions = {}): Promise<PruneResult> {
  requireV2(repo, 'prune');
  if (await storageCall(repo.storage, 'reading the config', () => repo.storage.stat(CONFIG_V2))) {
    throw new CofferError('migrating', 'this store is in the middle of a migration to format version 2', { hint: 'run `coffer migrate` again to finish it, then prune' });
  }
  const maxUnused = options.maxUnused ?? DEFAULT_MAX_UNUSED;
  if (!(maxUnused >= 0 && maxUnused <= 1)) throw new UsageError(`the unused share must lie between 0% and 100%, not ${String(maxUnused * 100)}%`);
  return new Pruner(repo, options).run();
}
