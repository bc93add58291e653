/**
 * The local-folder backend (spec/format.md §7). Layout: object names as folders, with `packs/<id>`
 * (and version 1's `data/<id>`) sharded by the id's first two hex digits (core's layout.ts). A put writes a temporary file in `tmp/`, fsyncs it and
 * hard-links it into place, which is atomic and fails if the name exists (write-once).
 * `flush` fsyncs the folders whose entries changed, so the links themselves survive a crash.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, link, mkdir, open, readdir, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  checkObjectName, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, type ByteRange, type ObjectWriter, type Storage,
} from '@coffer/core';
import { isShardFolder, shardedPath, unshardedName } from '@coffer/core/adapters';

const code = (e: unknown) => (e as NodeJS.ErrnoException)?.code;

/** A failed write to the store, named: full, read-only and permission failures get their own hint. */
function writeFailure(label: string, name: string, e: unknown): StorageUnavailableError {
  const c = code(e);
  const why: Record<string, [string, string]> = {
    ENOSPC: ['the disk is full', 'free some space on the store\'s disk; earlier backups are intact'],
    EDQUOT: ['the disk quota is used up', 'free some space on the store\'s disk; earlier backups are intact'],
    EROFS: ['the store is on a read-only file system', 'back up to a writable store; earlier backups are intact'],
    EACCES: ['permission denied', 'make the store folder writable for this user; earlier backups are intact'],
    EPERM: ['permission denied', 'make the store folder writable for this user; earlier backups are intact'],
  };
  const known = c ? why[c] : undefined;
  return new StorageUnavailableError(`${label}: writing ${name} failed: ${known ? known[0] : (c ?? String(e))}`, { cause: e, ...(known ? { hint: known[1] } : {}) });
}

/** A Storage in a local folder (spec/format.md §7.1): atomic write-once puts (temporary file, fsync, link), sharded paths. */
export class LocalStorage implements Storage {
  readonly label: string;
  private readonly made = new Set<string>();
  private dirty = new Set<string>();

  private constructor(readonly root: string) {
    this.label = `file://${root}`;
  }

  /** Opens a folder; with `create`, makes it (and its parents) when missing. */
  static async open(path: string, options: { create?: boolean } = {}): Promise<LocalStorage> {
    const root = resolve(path);
    try {
      if (options.create) await mkdir(root, { recursive: true });
      const s = await stat(root);
      if (!s.isDirectory()) throw new StorageUnavailableError(`${root} is not a folder`);
    } catch (e) {
      if (e instanceof StorageUnavailableError) throw e;
      throw new StorageUnavailableError(code(e) === 'ENOENT' ? `folder ${root} does not exist` : `cannot use folder ${root}: ${code(e) ?? e}`, { cause: e });
    }
    const storage = new LocalStorage(root);
    await storage.removeStaleTemporaries();
    return storage;
  }

  /** Temporary files left by puts that were killed (none takes a day) are removed. */
  private async removeStaleTemporaries(): Promise<void> {
    const tmp = join(this.root, 'tmp');
    const names = await readdir(tmp).catch(() => [] as string[]);
    const dayAgo = Date.now() - 24 * 3600 * 1000;
    for (const n of names) {
      const p = join(tmp, n);
      const st = await stat(p).catch(() => null);
      if (st && st.isFile() && st.mtimeMs < dayAgo && n.endsWith('.tmp')) await unlink(p).catch(() => {});
    }
  }

  /** The file that holds object `name`. */
  private file(name: string): string {
    checkObjectName(name);
    if (name.startsWith('tmp/') || name === 'tmp') throw new TypeError('object names may not start with tmp/');
    return join(this.root, ...shardedPath(name).split('/'));
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.made.add(dir);
  }

  /** A whole object at once: the same temporary file, fsync and hard link as `writer`. */
  async put(name: string, data: Uint8Array): Promise<void> {
    const w = await this.writer(name);
    await w.write(data);
    await w.commit();
  }

  /**
   * An object written in pieces (a pack streamed as it fills): into a temporary file in `tmp/`, then,
   * at commit, fsynced and hard-linked to its name; `link` is atomic and fails when the name exists.
   */
  async writer(name: string): Promise<ObjectWriter> {
    const final = this.file(name);
    const dir = final.slice(0, final.lastIndexOf('/'));
    const tmp = join(this.root, 'tmp', `${randomBytes(12).toString('hex')}.tmp`);
    const fail = async (e: unknown): Promise<never> => {
      if (e instanceof ObjectExistsError) throw e;
      const probe = await access(this.root, constants.W_OK).then(() => e, (p: unknown) => p);
      throw writeFailure(this.label, name, code(probe) === 'ENOENT' ? e : probe);
    };
    let fh: FileHandle;
    try {
      await this.ensureDir(dir);
      await this.ensureDir(join(this.root, 'tmp'));
      fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      return fail(e);
    }
    let done = false;
    const finish = async () => {
      done = true;
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
    };
    return {
      write: async (data) => {
        try {
          let o = 0;
          while (o < data.length) o += (await fh.write(data, o, data.length - o)).bytesWritten;
        } catch (e) {
          await finish();
          await fail(e);
        }
      },
      commit: async () => {
        try {
          await fh.datasync();
          await fh.close();
          done = true;
          try {
            await link(tmp, final);
          } catch (e) {
            if (code(e) === 'EEXIST') throw new ObjectExistsError(name);
            throw e;
          }
          this.dirty.add(dir);
        } catch (e) {
          await fail(e);
        } finally {
          await unlink(tmp).catch(() => {});
        }
      },
      abort: async () => {
        if (!done) await finish();
      },
    };
  }

  async get(name: string, range?: ByteRange, alloc?: (size: number) => Uint8Array): Promise<Uint8Array> {
    const path = this.file(name);
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (code(e) === 'ENOENT') throw new ObjectNotFoundError(name);
      throw new StorageUnavailableError(`${this.label}: reading ${name} failed: ${code(e) ?? e}`, { cause: e });
    }
    try {
      const size = (await fh.stat()).size;
      const start = Math.min(range?.offset ?? 0, size);
      const len = Math.min(range ? range.length : size, size - start);
      const buf = alloc ? alloc(len) : new Uint8Array(len);
      let o = 0;
      while (o < len) {
        const { bytesRead } = await fh.read(buf, o, len - o, start + o);
        if (bytesRead === 0) break;
        o += bytesRead;
      }
      return buf.subarray(0, o);
    } finally {
      await fh.close();
    }
  }

  async stat(name: string): Promise<{ size: number } | null> {
    try {
      return { size: (await stat(this.file(name))).size };
    } catch (e) {
      if (code(e) === 'ENOENT') return null;
      throw new StorageUnavailableError(`${this.label}: stat ${name} failed: ${code(e) ?? e}`, { cause: e });
    }
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let items;
      try {
        items = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if (code(e) === 'ENOENT') return;
        throw new StorageUnavailableError(`${this.label}: listing failed: ${code(e) ?? e}`, { cause: e });
      }
      for (const it of items) {
        const r = rel ? `${rel}/${it.name}` : it.name;
        if (r === 'tmp') continue;
        if (it.isDirectory()) {
          // Only descend where names with this prefix can be.
          if (isShardFolder(r) || prefix.startsWith(r + '/') || r.startsWith(prefix) || (r + '/').startsWith(prefix)) await walk(join(dir, it.name), r);
        } else if (it.isFile()) {
          const name = unshardedName(r);
          if (name.startsWith(prefix)) out.push(name);
        }
      }
    };
    await walk(this.root, '');
    return out;
  }

  async delete(name: string): Promise<void> {
    try {
      await rm(this.file(name), { force: true });
    } catch (e) {
      throw new StorageUnavailableError(`${this.label}: deleting ${name} failed: ${code(e) ?? e}`, { cause: e });
    }
  }

  async flush(): Promise<void> {
    const dirs = [...this.dirty];
    this.dirty = new Set();
    // A folder's own entry in its parent was made durable when it was created, on the first flush.
    for (const d of new Set([...dirs, ...dirs.map((d) => d.slice(0, d.lastIndexOf('/')))])) {
      if (!d.startsWith(this.root)) continue;
      const fh = await open(d, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
}
