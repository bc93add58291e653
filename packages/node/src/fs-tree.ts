/** A folder as a backup source and as a restore target (spec/format.md §5, §6). */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, lutimes, mkdir, open, readdir, readlink, rename, rm, rmdir, stat, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CofferError, type BackupSource, type FileSink, type RestoreTarget, type TreeEntry } from '@coffer/core';

const code = (e: unknown) => (e as NodeJS.ErrnoException)?.code;

/** Reads a folder. Entries other than files, folders and symlinks (sockets, FIFOs) are skipped and reported. */
export class FolderSource implements BackupSource {
  readonly root: string;
  readonly skipped: string[] = [];
  constructor(root: string) {
    this.root = resolve(root);
  }

  async scan(): Promise<TreeEntry[]> {
    let top;
    try {
      top = await stat(this.root);
    } catch (e) {
      throw new CofferError('usage', `cannot read ${this.root}: ${code(e) === 'ENOENT' ? 'no such folder' : code(e)}`, { cause: e, hint: 'give the folder to back up' });
    }
    if (!top.isDirectory()) throw new CofferError('usage', `${this.root} is not a folder`, { hint: 'give the folder to back up' });
    const out: TreeEntry[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      const names = await readdir(dir);
      for (const name of names) {
        const path = rel ? `${rel}/${name}` : name;
        const full = join(dir, name);
        const st = await lstat(full, { bigint: true });
        const base = { path, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs.toString() };
        if (st.isDirectory()) {
          out.push({ ...base, kind: 'dir' });
          await walk(full, path);
        } else if (st.isFile()) {
          out.push({ ...base, kind: 'file', size: Number(st.size), hint: { ino: st.ino.toString(), ctimeNs: st.ctimeNs.toString() } });
        } else if (st.isSymbolicLink()) {
          out.push({ ...base, kind: 'symlink', target: await readlink(full) });
        } else {
          this.skipped.push(path);
        }
      }
    };
    await walk(this.root, '');
    return out;
  }

  async *read(path: string, chunkSize: number, alloc?: (size: number) => Uint8Array): AsyncIterable<Uint8Array> {
    const fh = await open(join(this.root, ...path.split('/')), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      for (;;) {
        // A buffer of its own (not a slice of Node's pool), so it can be transferred to a worker.
        const buf = alloc ? alloc(chunkSize) : new Uint8Array(chunkSize);
        let o = 0;
        while (o < chunkSize) {
          const { bytesRead } = await fh.read(buf, o, chunkSize - o, null);
          if (bytesRead === 0) break;
          o += bytesRead;
        }
        if (o === 0) return;
        yield buf.subarray(0, o);
        if (o < chunkSize) return;
      }
    } finally {
      await fh.close();
    }
  }
}

export class TargetNotEmptyError extends CofferError {
  override name = 'TargetNotEmptyError';
  constructor(path: string) {
    super('target-not-empty', `${path} exists and is not empty`, { hint: 'restore into a new or empty folder, or pass --overwrite to replace it' });
  }
}

/** True when `path` is missing or an empty folder. */
export async function isEmptyOrMissing(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (e) {
    if (code(e) === 'ENOENT') return true;
    if (code(e) === 'ENOTDIR') return false;
    throw e;
  }
}

/**
 * Seconds for utimes. libuv keeps whole microseconds of the double it is given, truncating; a
 * double near 1.7e9 s is only good to ~0.24 µs, so we aim at the middle of the microsecond.
 */
const toSeconds = (ns: string) => Number(BigInt(ns) / 1000n) / 1e6 + 5e-7;

/**
 * Restores into a temporary folder beside `final`, and renames it into place only in `commit`,
 * after every file is written, verified and fsynced. An existing non-empty `final` is replaced only
 * with `overwrite`.
 */
export class FolderTarget implements RestoreTarget {
  readonly final: string;
  readonly temp: string;
  private readonly overwrite: boolean;
  private readonly open = new Set<FileHandle>();
  constructor(final: string, options: { overwrite?: boolean } = {}) {
    this.final = resolve(final);
    this.temp = join(dirname(this.final), `.${basename(this.final)}.coffer-restore-${randomBytes(6).toString('hex')}`);
    this.overwrite = options.overwrite ?? false;
  }

  private at(path: string): string {
    return join(this.temp, ...path.split('/'));
  }

  async begin(): Promise<void> {
    if (!this.overwrite && !(await isEmptyOrMissing(this.final))) throw new TargetNotEmptyError(this.final);
    await mkdir(dirname(this.final), { recursive: true });
    await mkdir(this.temp, { mode: 0o700 });
  }

  async dir(entry: TreeEntry): Promise<void> {
    await mkdir(this.at(entry.path), { mode: 0o700 });
  }

  async symlink(entry: TreeEntry): Promise<void> {
    await symlink(entry.target!, this.at(entry.path));
  }

  async file(entry: TreeEntry): Promise<FileSink> {
    const fh: FileHandle = await open(this.at(entry.path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    const handles = this.open;
    handles.add(fh);
    return {
      async write(offset, data) {
        let o = 0;
        while (o < data.length) o += (await fh.write(data, o, data.length - o, offset + o)).bytesWritten;
      },
      async close() {
        try {
          await fh.datasync();
        } finally {
          handles.delete(fh);
          await fh.close();
        }
      },
    };
  }

  async commit(entries: TreeEntry[]): Promise<void> {
    // Children before parents, so setting a folder's mtime comes after everything inside it changed.
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!;
      const p = this.at(e.path);
      const t = toSeconds(e.mtimeNs);
      if (e.kind === 'symlink') {
        await lutimes(p, t, t);
        continue;
      }
      await chmod(p, e.mode & 0o7777);
      await utimes(p, t, t);
      if (e.kind === 'dir') await fsyncPath(p).catch(() => {});
    }
    await chmod(this.temp, 0o777 & ~process.umask());
    await fsyncPath(this.temp);
    let old: string | null = null;
    try {
      await rename(this.temp, this.final);
    } catch (e) {
      if (code(e) !== 'ENOTEMPTY' && code(e) !== 'EEXIST' && code(e) !== 'ENOTDIR') throw e;
      if (await isEmptyOrMissing(this.final)) await rmdir(this.final);
      else if (this.overwrite) {
        old = join(dirname(this.final), `.${basename(this.final)}.coffer-old-${randomBytes(6).toString('hex')}`);
        await rename(this.final, old);
      } else throw new TargetNotEmptyError(this.final);
      await rename(this.temp, this.final);
    }
    await fsyncPath(dirname(this.final));
    if (old) await rm(old, { recursive: true, force: true });
  }

  async abort(): Promise<void> {
    await Promise.allSettled([...this.open].map((fh) => fh.close()));
    this.open.clear();
    await rm(this.temp, { recursive: true, force: true });
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
