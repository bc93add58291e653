/**
 * The profile's copies of the store's index objects (spec/format.md §3.3): one file each, sealed as
 * in the store, so a backup needs no download to know which blobs the store holds. Losing the
 * folder loses nothing: it is filled again from the store.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IndexCache } from '@coffer/core';
import { idOf, indexName } from '@coffer/core/adapters';

/** An IndexCache in a local folder: copies of the store's index objects, kept between runs (spec/format.md §3.3). */
export class FolderIndexCache implements IndexCache {
  constructor(readonly dir: string) {}

  private file(name: string): string | null {
    const id = idOf(name, 'index');
    return id ? join(this.dir, id) : null;
  }

  async names(): Promise<string[]> {
    const files = await readdir(this.dir).catch(() => [] as string[]);
    return files.filter((f) => idOf(`index/${f}`, 'index')).map(indexName);
  }

  async get(name: string): Promise<Uint8Array | null> {
    const f = this.file(name);
    return f ? readFile(f).catch(() => null) : null;
  }

  async put(name: string, sealed: Uint8Array): Promise<void> {
    const f = this.file(name);
    if (!f) return;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // A cache is best effort: a copy that cannot be written is fetched again next time.
    const tmp = `${f}.${process.pid}.tmp`;
    await writeFile(tmp, sealed, { mode: 0o600 })
      .then(() => rename(tmp, f))
      .catch(() => rm(tmp, { force: true }));
  }

  async delete(name: string): Promise<void> {
    const f = this.file(name);
    if (f) await rm(f, { force: true });
  }
}
