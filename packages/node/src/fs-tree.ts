/** A folder as a backup source and as a restore target (spec/format.md §5, §6.1, §6.2). */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  chmod, lstat, lutimes, mkdir, mkdtemp, readdir, readlink, rename, rm, rmdir, stat, symlink,
} from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { Fd, lstatBig } from './fd.js';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  CofferError, LocalDiskError, SourceChangedError, SourceSkipError, UsageError, type BackupSource, type FileSink, type RestoreTarget,
  type SkippedFile, type TreeEntry,
} from '@coffer/core';
import { parentPath } from '@coffer/core/adapters';

const code = (e: unknown) => (e as NodeJS.ErrnoException)?.code;
/** Entries of one folder looked at (lstat) at once during a scan. */
const SCAN_AT_ONCE = 64;

/** The first 16 bytes of every SQLite database file. */
const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');
/** Files SQLite keeps beside a database; a snapshot of the database already holds their content. */
const SQLITE_COMPANIONS = ['-wal', '-shm', '-journal'];

/**
 * A glob over `/`-separated relative paths: `*` and `?` stay within one component, `**` spans
 * components. A glob without `/` matches the last component (like `.gitignore`).
 */
export function globMatcher(glob: string): (path: string) => boolean {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
      if (glob[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  const rx = new RegExp(`^${re}$`);
  return glob.includes('/') ? (p) => rx.test(p) : (p) => rx.test(p.slice(p.lastIndexOf('/') + 1));
}

/** How a {@link FolderSource} reads a folder: SQLite databases to snapshot, and where to keep snapshots. */
export interface FolderSourceOptions {
  /** Globs of SQLite databases to snapshot, beyond the files that start with the SQLite header. */
  sqlite?: string[];
  /** Take SQLite snapshots at all (default true). */
  snapshots?: boolean;
  /**
   * A private folder for snapshots (they hold the chats in the clear): the CLI uses its profile
   * folder. The system's temporary folder by default.
   */
  tempDir?: string;
}

interface FileStat {
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  mode: bigint;
}


/**
 * Reads a folder. Entries other than files, folders and symlinks (sockets, FIFOs) are skipped, and
 * so are entries that vanish or cannot be read while the backup runs (§6.2); `skipped` lists them.
 */
export class FolderSource implements BackupSource {
  readonly root: string;
  skipped: SkippedFile[] = [];
  /** Files stored from a SQLite snapshot by the last backup. */
  readonly snapshotted: string[] = [];
  private readonly isSqliteGlob: (path: string) => boolean;
  /** Databases stored from a snapshot: path -> the snapshot file. */
  private readonly snapshotOf = new Map<string, string>();
  /** Live databases no snapshot could be taken of: read raw, and marked changed. */
  private readonly rawLive = new Set<string>();
  /** Files that changed during a read of this backup. */
  private readonly changing = new Set<string>();
  private readonly snapshots: boolean;
  private readonly tempDir: string;
  private snapshotDir: string | null = null;
  constructor(root: string, options: FolderSourceOptions = {}) {
    this.root = resolve(root);
    const globs = (options.sqlite ?? []).map(globMatcher);
    this.isSqliteGlob = (p) => globs.some((g) => g(p));
    this.snapshots = options.snapshots ?? true;
    this.tempDir = options.tempDir ?? tmpdir();
  }

  /** Removes the snapshots this source took. Call it when the backup is over (or interrupted). */
  async close(): Promise<void> {
    if (this.snapshotDir) await removeTree(this.snapshotDir).catch(() => {});
    this.snapshotDir = null;
    this.snapshotOf.clear();
  }

  /** §6.2: a consistent copy of a live database, in this source's private folder; null if none can be taken. */
  private async snapshot(path: string): Promise<string | null> {
    if (!this.snapshotDir) {
      await mkdir(this.tempDir, { recursive: true, mode: 0o700 });
      await removeStale(this.tempDir, 'coffer-sqlite-');
      this.snapshotDir = await mkdtemp(join(this.tempDir, `coffer-sqlite-${process.pid}-`));
    }
    const copy = join(this.snapshotDir, `${this.snapshotOf.size}.db`);
    if (!(await sqliteSnapshot(this.full(path), copy))) return null;
    this.snapshotOf.set(path, copy);
    this.snapshotted.push(path);
    return copy;
  }

  private full(path: string): string {
    return join(this.root, ...path.split('/'));
  }

  async scan(): Promise<TreeEntry[]> {
    this.skipped = [];
    await this.close();
    this.rawLive.clear();
    let top;
    try {
      top = await stat(this.root);
    } catch (e) {
      throw new UsageError(`cannot read ${this.root}: ${code(e) === 'ENOENT' ? 'no such folder' : code(e)}`, 'give the folder to back up', { cause: e });
    }
    if (!top.isDirectory()) throw new UsageError(`${this.root} is not a folder`, 'give the folder to back up');
    const out: TreeEntry[] = [];
    const skip = (path: string, e: unknown) => {
      const c = code(e);
      if (c === 'ENOENT' || c === 'ENOTDIR') this.skipped.push({ path, reason: 'vanished' });
      else if (c === 'EACCES' || c === 'EPERM') this.skipped.push({ path, reason: 'unreadable' });
      else throw e;
    };
    const walk = async (dir: string, rel: string): Promise<boolean> => {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if (rel === '') throw e;
        skip(rel, e);
        return false;
      }
      // A folder's entries are looked at many at a time (each lstat waits on the disk or the cache).
      const stats = new Map<string, Promise<BigIntStats>>();
      const look = (i: number) => {
        for (let j = i; j < Math.min(names.length, i + SCAN_AT_ONCE); j++) {
          if (!stats.has(names[j]!)) {
            const p = lstatBig(join(dir, names[j]!));
            p.catch(() => {}); // handled when awaited below
            stats.set(names[j]!, p);
          }
        }
      };
      for (let i = 0; i < names.length; i++) {
        if (i % SCAN_AT_ONCE === 0) look(i);
        const name = names[i]!;
        const path = rel ? `${rel}/${name}` : name;
        const full = join(dir, name);
        try {
          const st = await stats.get(name)!;
          stats.delete(name);
          const base = { path, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs.toString() };
          if (st.isDirectory()) {
            const entry: TreeEntry = { ...base, kind: 'dir' };
            out.push(entry);
            if (!(await walk(full, path))) out.pop();
          } else if (st.isFile()) {
            out.push({ ...base, kind: 'file', size: Number(st.size), hint: { ino: st.ino.toString(), ctimeNs: st.ctimeNs.toString() } });
          } else if (st.isSymbolicLink()) {
            out.push({ ...base, kind: 'symlink', target: await readlink(full) });
          } else {
            this.skipped.push({ path, reason: 'special' });
          }
        } catch (e) {
          skip(path, e);
        }
      }
      return true;
    };
    await walk(this.root, '');
    return this.dropSqliteCompanions(out);
  }

  /**
   * §6.2: a live database (one with a -wal or -journal file beside it, or one --sqlite names) is
   * snapshotted now, at the end of the scan, and stored from that snapshot without its -wal, -shm
   * and -journal files. When no snapshot can be taken, they are all kept and read as they are.
   */
  private async dropSqliteCompanions(entries: TreeEntry[]): Promise<TreeEntry[]> {
    if (!this.snapshots) return entries;
    const files = new Set(entries.filter((e) => e.kind === 'file').map((e) => e.path));
    const live = new Set<string>();
    for (const path of files) {
      if (this.isSqliteGlob(path)) live.add(path);
      const suffix = ['-wal', '-journal'].find((s) => path.endsWith(s));
      if (!suffix) continue;
      const db = path.slice(0, -suffix.length);
      if (files.has(db) && (this.isSqliteGlob(db) || (await this.startsWithSqliteHeader(db)))) live.add(db);
    }
    const drop = new Set<string>();
    for (const db of live) {
      if (await this.snapshot(db)) {
        for (const c of SQLITE_COMPANIONS) if (files.has(db + c)) drop.add(db + c);
      } else this.rawLive.add(db);
    }
    return drop.size ? entries.filter((e) => !drop.has(e.path)) : entries;
  }

  private async startsWithSqliteHeader(path: string): Promise<boolean> {
    const fh = await Fd.open(this.full(path), constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null);
    if (!fh) return false;
    try {
      const head = Buffer.alloc(16);
      const { bytesRead } = await fh.read(head, 0, 16, 0);
      return bytesRead === 16 && head.equals(SQLITE_HEADER);
    } finally {
      await fh.close();
    }
  }

  private async openFile(path: string): Promise<Fd> {
    try {
      return await Fd.open(this.full(path), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      const c = code(e);
      // ELOOP: the file was replaced by a symlink since the scan.
      if (c === 'ENOENT' || c === 'ENOTDIR' || c === 'ELOOP') throw new SourceSkipError(path, 'vanished', { cause: e });
      if (c === 'EACCES' || c === 'EPERM') throw new SourceSkipError(path, 'unreadable', { cause: e });
      throw e;
    }
  }

  /**
   * §6.2: the file as the scan saw it is read between the scan's lstat and an fstat after the read:
   * when size, mtime, ctime and inode all still match, no byte changed while it was read. (Four
   * system calls for a small file: open, read, fstat, close.)
   */
  async *read(entry: TreeEntry, chunkSize: number, alloc?: (size: number) => Uint8Array): AsyncIterable<Uint8Array> {
    const fh = await this.openFile(entry.path);
    try {
      // A database that changed while it was read raw is snapshotted for its next read (a quiet one
      // is read raw, byte for byte). SQLite's smallest database is one 512-byte page.
      let snapshot = this.snapshotOf.get(entry.path);
      if (!snapshot && this.snapshots && this.changing.has(entry.path) && (entry.size ?? 0) >= 512 && (await headerIs(fh, SQLITE_HEADER))) {
        snapshot = (await this.snapshot(entry.path)) ?? undefined;
      }
      if (snapshot) {
        const copy = await Fd.open(snapshot, constants.O_RDONLY);
        try {
          yield* readPieces(copy, chunkSize, alloc, Number((await copy.stat()).size));
        } finally {
          await copy.close();
        }
        return;
      }
      try {
        yield* readPieces(fh, chunkSize, alloc, entry.size ?? 0);
      } catch (e) {
        // Replaced by a folder since the scan.
        if (code(e) === 'EISDIR') throw new SourceSkipError(entry.path, 'vanished', { cause: e, detail: 'no longer a file' });
        throw e;
      }
      const after: FileStat = await fh.stat();
      if ((after.mode & 0o170000n) !== 0o100000n) throw new SourceSkipError(entry.path, 'vanished', { detail: 'no longer a file' });
      const same =
        after.size === BigInt(entry.size ?? -1) && after.mtimeNs.toString() === entry.mtimeNs &&
        after.ctimeNs.toString() === entry.hint?.ctimeNs && after.ino.toString() === entry.hint?.ino;
      if (!same) {
        // The next read is judged against the file as it is now.
        entry.size = Number(after.size);
        entry.mode = Number(after.mode & 0o7777n);
        entry.mtimeNs = after.mtimeNs.toString();
        entry.hint = { ino: after.ino.toString(), ctimeNs: after.ctimeNs.toString() };
        this.changing.add(entry.path);
      }
      // A live database read raw (no snapshot could be taken) is never presented as consistent.
      if (!same || this.rawLive.has(entry.path)) throw new SourceChangedError(entry.path);
    } finally {
      await fh.close();
    }
  }
}

/**
 * The file's content in pieces of `chunkSize` bytes (the last one shorter). Each piece is read into
 * a buffer of about its own size (a 4 KiB file takes a 4 KiB buffer, not a chunk-sized one), guessed
 * from `size`; a file that grew past the guess is read on into a chunk-sized buffer.
 */
async function* readPieces(fh: Fd, chunkSize: number, alloc: ((size: number) => Uint8Array) | undefined, size: number): AsyncIterable<Uint8Array> {
  // A buffer of its own (not a slice of Node's pool), so it can be transferred to a worker.
  const take = (n: number) => (alloc ? alloc(n) : new Uint8Array(n));
  let position = 0;
  for (;;) {
    const rest = Math.max(0, size - position);
    // The last piece stops at the expected end without a read that finds EOF; a file that grew
    // meanwhile shows in the fstat after the read, and is read again.
    let buf = take(Math.min(chunkSize, rest || 1));
    let o = 0;
    for (;;) {
      if (o === rest && rest < chunkSize && o > 0) break;
      const { bytesRead } = await fh.read(buf, o, buf.length - o, position + o);
      if (bytesRead === 0) break;
      o += bytesRead;
      if (o < buf.length) continue;
      if (buf.length === chunkSize) break;
      if (o === rest) break;
      // Longer than it was: go on in a chunk-sized buffer.
      const bigger = take(chunkSize);
      bigger.set(buf.subarray(0, o));
      buf = bigger;
    }
    position += o;
    if (o === 0) return;
    yield buf.subarray(0, o);
    if (o < chunkSize) return;
  }
}

async function headerIs(fh: Fd, header: Buffer): Promise<boolean> {
  const head = Buffer.alloc(header.length);
  const { bytesRead } = await fh.read(head, 0, header.length, 0);
  return bytesRead === header.length && head.equals(header);
}

/**
 * A consistent copy of a live SQLite database (§6.2) at `copy`, through SQLite's online backup API
 * in one step (one read transaction, through the WAL). False when no snapshot can be taken (the
 * database is locked exclusively, or is not really one).
 */
async function sqliteSnapshot(path: string, copy: string): Promise<boolean> {
  let db: import('better-sqlite3').Database | undefined;
  try {
    const { default: Database } = await import('better-sqlite3');
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 2000 });
    // Every page in the second step: a source changed between steps is copied again, whole.
    const r = await db.backup(copy, { progress: () => 0x7fffffff });
    // A busy source gives up without a copy (and says 0 pages).
    if (r.totalPages > 0 && (await stat(copy)).size > 0) return true;
  } catch {
    // Locked, or not a database: read raw.
  } finally {
    db?.close();
  }
  await rm(copy, { force: true }).catch(() => {});
  return false;
}

const execFileP = promisify(execFile);

/**
 * Removes a tree without ever following a symlink, even one swapped in while it works: GNU rm
 * walks with openat(2) relative to folders it holds open. (Node's fs.rm works by path, so a folder
 * another user swaps for a symlink mid-way would take it elsewhere.) Folders without write
 * permission are opened up first, so a read-only restored folder does not block its removal.
 */
export async function removeTree(path: string): Promise<void> {
  await openUp(path);
  try {
    await execFileP('rm', ['-rf', '--one-file-system', '--', path]);
  } catch (e) {
    if (code(e) !== 'ENOENT') throw new Error(`could not remove ${path}: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`, { cause: e });
    await rm(path, { recursive: true, force: true }); // no rm(1): not a Linux with coreutils
  }
}

/** Gives u+rwx to our own folders below `path` (never through a symlink). */
async function openUp(path: string): Promise<void> {
  const st = await lstat(path).catch(() => null);
  if (!st?.isDirectory() || st.uid !== process.getuid?.()) return;
  if ((st.mode & 0o700) !== 0o700) await chmod(path, (st.mode & 0o7777) | 0o700).catch(() => {});
  for (const name of await readdir(path).catch(() => [] as string[])) await openUp(join(path, name));
}

/**
 * Removes `<prefix><pid>-…` folders in `dir` left by processes that are gone: only folders that are
 * ours (owner and mode 0700), so nobody else can make us remove anything.
 */
async function removeStale(dir: string, prefix: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = name.startsWith(prefix) ? /^(\d+)-[0-9A-Za-z]+$/.exec(name.slice(prefix.length)) : null;
    if (!m || processAlive(Number(m[1]))) continue;
    const p = join(dir, name);
    const st = await lstat(p).catch(() => null);
    if (st?.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o777) === 0o700) await removeTree(p).catch(() => {});
  }
}

/** A restore was pointed at a folder that exists and is not empty (exit code 2). */
export class TargetNotEmptyError extends UsageError {
  override name = 'TargetNotEmptyError';
  constructor(path: string) {
    super(`${path} exists and is not empty`, 'restore into a new or empty folder, or pass --overwrite to replace it', { code: 'target-not-empty' });
  }
}

/** True when `path` is missing or an empty folder. */
export async function isEmptyOrMissing(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (e) {
    if (code(e) === 'ENOENT') return true;
    if (code(e) === 'ENOTDIR') return false;
    if (code(e) === 'EACCES' || code(e) === 'EPERM') throw new LocalDiskError('permission', path, { cause: e });
    throw e;
  }
}

/** Runs a write on the local disk; full, read-only and permission failures become LocalDiskError. */
async function local<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const c = code(e);
    if (c === 'ENOSPC' || c === 'EDQUOT') throw new LocalDiskError('full', path, { cause: e });
    if (c === 'EROFS') throw new LocalDiskError('read-only', path, { cause: e });
    if (c === 'EACCES' || c === 'EPERM') throw new LocalDiskError('permission', path, { cause: e });
    if (c === 'ENAMETOOLONG') throw new LocalDiskError('name-too-long', path, { cause: e });
    throw e;
  }
}

/**
 * Seconds for utimes. libuv keeps whole microseconds of the double it is given, truncating; a
 * double near 1.7e9 s is only good to ~0.24 µs, so we aim at the middle of the microsecond.
 */
const toSeconds = (ns: string) => Number(BigInt(ns) / 1000n) / 1e6 + 5e-7;

/** The process's umask, read once (reading it means setting it; no other thread creates files meanwhile). */
const UMASK = process.umask();

/** True while a process with this id runs on this machine (one we may not signal counts as running). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return code(e) === 'EPERM';
  }
}

/** Makes everything below `dir` durable: syncfs(2) through `sync -f`, or an fsync of every file and folder. */
async function syncTree(dir: string): Promise<void> {
  try {
    await execFileP('sync', ['-f', dir]);
    return;
  } catch {
    // No coreutils sync (or too old for -f): one fsync per file and folder.
  }
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isSymbolicLink()) return;
    if (st.isDirectory()) for (const n of await readdir(p)) await walk(join(p, n));
    await fsyncPath(p);
  };
  await walk(dir);
}

/** How a {@link FolderTarget} treats what is already at its place. */
export interface FolderTargetOptions {
  /** Replace a folder that exists and is not empty (default: refuse with TargetNotEmptyError). */
  overwrite?: boolean;
}

/**
 * Restores into a temporary folder beside `final`, and renames it into place only in `commit`,
 * after every file is written, verified and made durable. An existing non-empty `final` is
 * replaced only with `overwrite`. It never creates anything outside that temporary folder (§6.1):
 * every entry goes under a folder this target made itself, files with O_EXCL | O_NOFOLLOW, and
 * nothing at all once a symlink exists. The temporary folder stays 0700 (nobody else can enter it)
 * until it is in place; modes and times are set through open handles, never by following a path.
 */
export class FolderTarget implements RestoreTarget {
  readonly final: string;
  readonly temp: string;
  /** What went wrong after the restore was in place (the old tree of --overwrite not removed, ...). */
  readonly warnings: string[] = [];
  private readonly overwrite: boolean;
  private readonly open = new Set<Fd>();
  /** Folders this restore made, relative to `temp` ('' is `temp` itself). */
  private readonly made = new Set<string>();
  private symlinksStarted = false;
  /** The first parent folder of `final` that `begin` had to create, removed again by `abort`. */
  private madeParent: string | undefined;
  constructor(final: string, options: FolderTargetOptions = {}) {
    this.final = resolve(final);
    this.temp = join(dirname(this.final), `.${basename(this.final)}.coffer-restore-${process.pid}-${randomBytes(6).toString('hex')}`);
    this.overwrite = options.overwrite ?? false;
  }

  private at(path: string): string {
    return join(this.temp, ...path.split('/'));
  }

  /** §6.1 rule 3: an entry goes only below a folder made by this restore, and never after a symlink. */
  private checkPlace(entry: TreeEntry): void {
    const parent = parentPath(entry.path) ?? '';
    if (this.symlinksStarted && entry.kind !== 'symlink') throw new Error(`restore target: ${entry.kind} after symlinks`);
    if (!this.made.has(parent)) throw new Error('restore target: refusing to create an entry outside a folder this restore made');
  }

  async begin(): Promise<void> {
    // On Windows, `\` and `:` in a name would be separators: a manifest could leave the target.
    if (process.platform === 'win32') throw new CofferError('unsupported-platform', 'restoring into a folder is not supported on Windows yet', { hint: 'restore on Linux or macOS' });
    if (!this.overwrite && !(await isEmptyOrMissing(this.final))) throw new TargetNotEmptyError(this.final);
    const parent = dirname(this.final);
    this.madeParent = await local(parent, () => mkdir(parent, { recursive: true }));
    // Another user who may rename entries of the parent could swap our folders for symlinks.
    const ps = await stat(parent);
    if (ps.mode & 0o022 && !(ps.mode & 0o1000)) {
      await this.abort();
      throw new CofferError('unsafe-target', `${parent} can be changed by other users`, { hint: 'restore into a folder that only you can write to (or one with the sticky bit, like /tmp)' });
    }
    await removeStale(parent, `.${basename(this.final)}.coffer-restore-`);
    await local(this.final, () => mkdir(this.temp, { mode: 0o700 }));
    this.made.add('');
  }

  async dir(entry: TreeEntry): Promise<void> {
    this.checkPlace(entry);
    await local(this.final, () => mkdir(this.at(entry.path), { mode: 0o700 }));
    this.made.add(entry.path);
  }

  async symlink(entry: TreeEntry): Promise<boolean> {
    this.checkPlace(entry);
    this.symlinksStarted = true;
    await local(this.final, () => symlink(entry.target!, this.at(entry.path)));
    return true;
  }

  async file(entry: TreeEntry): Promise<FileSink> {
    this.checkPlace(entry);
    // Created with its final mode where the umask allows (inside the 0700 temporary folder nobody
    // else can reach it), which saves a chmod per file.
    const mode = entry.mode & 0o7777;
    const created = mode & 0o777 & ~UMASK;
    const fh = await local(this.final, () =>
      Fd.open(this.at(entry.path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, created),
    );
    const handles = this.open;
    const final = this.final;
    handles.add(fh);
    return {
      async write(offset, data) {
        await local(final, async () => {
          let o = 0;
          while (o < data.length) o += (await fh.write(data, o, data.length - o, offset + o)).bytesWritten;
        });
      },
      async close() {
        try {
          // Mode and times through the handle; durability comes once for the whole tree, in commit.
          const t = toSeconds(entry.mtimeNs);
          await local(final, async () => {
            if (mode !== created) await fh.chmod(mode);
            await fh.utimes(t, t);
          });
        } finally {
          handles.delete(fh);
          await fh.close();
        }
      },
    };
  }

  async commit(entries: TreeEntry[]): Promise<void> {
    await local(this.final, async () => {
      // Children before parents, so setting a folder's mtime comes after everything inside it changed.
      for (let i = entries.length - 1; i >= 0; i--) {
        const e = entries[i]!;
        if (e.kind === 'file') continue; // set when it was closed
        const p = this.at(e.path);
        const t = toSeconds(e.mtimeNs);
        if (e.kind === 'symlink') {
          await lutimes(p, t, t);
          continue;
        }
        const fh = await Fd.open(p, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
        try {
          await fh.chmod(e.mode & 0o7777);
          await fh.utimes(t, t);
        } finally {
          await fh.close();
        }
      }
      await syncTree(this.temp);
    });
    let old: string | null = null;
    await local(this.final, async () => {
      try {
        await rename(this.temp, this.final);
      } catch (e) {
        if (code(e) !== 'ENOTEMPTY' && code(e) !== 'EEXIST' && code(e) !== 'ENOTDIR') throw e;
        if (await isEmptyOrMissing(this.final)) await rmdir(this.final);
        else if (this.overwrite) {
          old = join(dirname(this.final), `.${basename(this.final)}.coffer-old-${process.pid}-${randomBytes(6).toString('hex')}`);
          await rename(this.final, old);
        } else throw new TargetNotEmptyError(this.final);
        await rename(this.temp, this.final);
      }
      // Only now, in place, does the top folder open up to its final mode.
      const top = await Fd.open(this.final, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      try {
        await top.chmod(0o777 & ~UMASK);
      } finally {
        await top.close();
      }
    });
    this.madeParent = undefined;
    await fsyncPath(dirname(this.final));
    if (old) {
      // The restore is complete; a tree that cannot be removed is a warning, not a failure.
      await removeTree(old).catch((e: Error) => this.warnings.push(`the replaced folder was moved to ${old} but could not be removed: ${e.message}`));
    }
  }

  async abort(): Promise<void> {
    await Promise.allSettled([...this.open].map((fh) => fh.close()));
    this.open.clear();
    await removeTree(this.temp).catch(() => {});
    // Parents of the target that begin() made, deepest first, while they are empty.
    if (this.madeParent) {
      for (let d = dirname(this.final); d.length >= this.madeParent.length; d = dirname(d)) {
        if (!(await rmdir(d).then(() => true, () => false))) break;
      }
    }
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await Fd.open(p, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
