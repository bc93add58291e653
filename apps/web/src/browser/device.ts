/**
 * This browser as a device: its chat data (the demo phone's, fetched from the app server, or a
 * restored copy in the Origin Private File System) as a BackupSource, and the OPFS restore target.
 * Files are read and written chunk by chunk (streams read into recycled buffers, positioned
 * writes): a large video is never whole in memory.
 */
import type { BackupSource, FileSink, RestoreTarget, TreeEntry } from '@coffer/core';

const ns = (ms: number) => (BigInt(Math.floor(ms)) * 1_000_000n).toString();

export const phoneFileUrl = (path: string) => `/api/phone/file/${path.split('/').map(encodeURIComponent).join('/')}`;

/**
 * How long a file's response may wait for the backup to take its next chunk before it is dropped
 * (and its connection with it); the file is then read on from where it stopped, in a new request.
 */
const IDLE_MS = 200;

/** The demo phone's chat data, served by the app server. */
export class PhoneSource implements BackupSource {
  async scan(): Promise<TreeEntry[]> {
    const r = await fetch('/api/phone/tree', { cache: 'no-store' });
    if (!r.ok) throw new Error(`could not list this phone's files: HTTP ${r.status}`);
    const files = (await r.json()) as { path: string; size: number; mode: number; mtimeMs: number }[];
    return files.map((f) => ({ path: f.path, kind: 'file', mode: f.mode, mtimeNs: ns(f.mtimeMs), size: f.size }));
  }
  /**
   * Streamed, not `r.blob()`: the body is read only as fast as chunks are taken, so a 2 GiB video
   * never sits whole in the page, and bytes go straight into the codec's recycled buffers (a BYOB
   * reader), so reading makes no garbage however large the file. But a backup reads many files at
   * once, each only as fast as its memory budget allows, and a response left unread holds one of
   * the browser's six connections to the server: with every connection held so, the uploads that
   * free the budget could not start (a stall found at 200 MiB, pinned by
   * test/backup-many-files.test.ts). So a response the backup leaves waiting longer than IDLE_MS
   * is dropped, and the file is read on from where it stopped (`Range: bytes=N-`) when the backup
   * asks. A file is read to its end: bytes it gained since the scan are read too.
   */
  async *read(entry: TreeEntry, chunkSize: number, alloc: (size: number) => Uint8Array = (n) => new Uint8Array(n)): AsyncIterable<Uint8Array> {
    let offset = 0;
    for (;;) {
      const dropped = new AbortController();
      const r = await fetch(phoneFileUrl(entry.path), { cache: 'no-store', signal: dropped.signal, headers: offset ? { range: `bytes=${offset}-` } : {} });
      if (offset > 0 && r.status === 416) return;
      if (r.status !== (offset > 0 ? 206 : 200) || !r.body) throw new Error(`could not read ${entry.path}: HTTP ${r.status}`);
      try {
        for await (const piece of readInto(r.body, chunkSize, alloc)) {
          offset += piece.length;
          const idle = setTimeout(() => dropped.abort(), IDLE_MS);
          try {
            yield piece;
          } finally {
            clearTimeout(idle);
          }
        }
        return;
      } catch (e) {
        // Dropped while it waited: read on from `offset` (the bytes of an unfinished chunk come again).
        if (!dropped.signal.aborted) throw e;
      }
    }
  }
}

/**
 * A byte stream in pieces of exactly `chunkSize` bytes (the last one shorter), read straight into
 * `alloc`'s buffers (a BYOB reader, where the stream is a byte stream; else copied from its pieces).
 */
async function* readInto(body: ReadableStream<Uint8Array>, chunkSize: number, alloc: (size: number) => Uint8Array): AsyncIterable<Uint8Array> {
  let byob: ReadableStreamBYOBReader | null = null;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  try {
    byob = body.getReader({ mode: 'byob' });
  } catch {
    reader = body.getReader();
  }
  let chunk = alloc(chunkSize);
  let filled = 0;
  let pending: Uint8Array | null = null;
  try {
    for (;;) {
      if (byob) {
        // The reader takes the buffer and gives it back (transferred) with the bytes it wrote.
        const { done, value } = await byob.read(new Uint8Array(chunk.buffer, chunk.byteOffset + filled, chunkSize - filled));
        if (value) chunk = new Uint8Array(value.buffer, value.byteOffset - filled, chunkSize);
        if (done) break;
        filled += value.byteLength;
      } else {
        if (!pending || pending.length === 0) {
          const { done, value } = await reader!.read();
          if (done) break;
          pending = value;
        }
        const n = Math.min(chunkSize - filled, pending.length);
        chunk.set(pending.subarray(0, n), filled);
        pending = pending.subarray(n);
        filled += n;
      }
      if (filled === chunkSize) {
        yield chunk;
        chunk = alloc(chunkSize);
        filled = 0;
      }
    }
  } finally {
    (byob ?? reader)!.releaseLock();
  }
  if (filled > 0) yield chunk.subarray(0, filled);
}

async function opfs(): Promise<FileSystemDirectoryHandle> {
  return navigator.storage.getDirectory();
}

async function dirAt(root: FileSystemDirectoryHandle, parts: string[], create: boolean): Promise<FileSystemDirectoryHandle> {
  let d = root;
  for (const p of parts) d = await d.getDirectoryHandle(p, { create });
  return d;
}

/** A file of a restored tree in OPFS, or null. */
export async function opfsFile(dirName: string, path: string): Promise<File | null> {
  try {
    const parts = path.split('/');
    const d = await dirAt(await dirAt(await opfs(), [dirName], false), parts.slice(0, -1), false);
    return await (await d.getFileHandle(parts[parts.length - 1]!)).getFile();
  } catch {
    return null;
  }
}

async function walk(d: FileSystemDirectoryHandle, prefix: string, out: { path: string; file: File }[]): Promise<void> {
  for await (const [name, h] of (d as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
    const path = prefix ? `${prefix}/${name}` : name;
    if (h.kind === 'directory') await walk(h as FileSystemDirectoryHandle, path, out);
    else out.push({ path, file: await (h as FileSystemFileHandle).getFile() });
  }
}

/** A restored tree in OPFS, to back up again from this device. */
export class OpfsSource implements BackupSource {
  private files = new Map<string, File>();
  constructor(private readonly dirName: string) {}
  async scan(): Promise<TreeEntry[]> {
    const out: { path: string; file: File }[] = [];
    await walk(await dirAt(await opfs(), [this.dirName], false), '', out);
    this.files = new Map(out.map((f) => [f.path, f.file]));
    return out.map(({ path, file }) => ({ path, kind: 'file', mode: 0o600, mtimeNs: ns(file.lastModified), size: file.size }));
  }
  async *read(entry: TreeEntry, chunkSize: number, alloc?: (size: number) => Uint8Array): AsyncIterable<Uint8Array> {
    yield* readInto(this.files.get(entry.path)!.stream(), chunkSize, alloc ?? ((n) => new Uint8Array(n)));
  }
}

/**
 * Restores into a new OPFS folder; it becomes this device's data only once the caller records it
 * after `commit` (nothing replaces the current data before every byte verified). Symlinks have no
 * place in a browser and are skipped.
 */
export class OpfsTarget implements RestoreTarget {
  readonly dirName = `restored-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  /** Folders made so far, by path ('' is the root): each is made once, from its parent's handle. */
  private readonly dirs = new Map<string, Promise<FileSystemDirectoryHandle>>();
  async begin(): Promise<void> {
    this.dirs.set('', (await opfs()).getDirectoryHandle(this.dirName, { create: true }));
    await this.dirs.get('');
  }
  private folder(path: string): Promise<FileSystemDirectoryHandle> {
    let d = this.dirs.get(path);
    if (!d) {
      const cut = path.lastIndexOf('/');
      d = this.folder(cut < 0 ? '' : path.slice(0, cut)).then((parent) => parent.getDirectoryHandle(path.slice(cut + 1), { create: true }));
      this.dirs.set(path, d);
    }
    return d;
  }
  async dir(e: TreeEntry): Promise<void> {
    await this.folder(e.path);
  }
  async symlink(): Promise<boolean> {
    return false; // OPFS has no symlinks (spec/format.md §6.1)
  }
  async file(e: TreeEntry): Promise<FileSink> {
    const cut = e.path.lastIndexOf('/');
    const d = await this.folder(cut < 0 ? '' : e.path.slice(0, cut));
    const w = await (await d.getFileHandle(e.path.slice(cut + 1), { create: true })).createWritable({ keepExistingData: false });
    return {
      write: (offset, data) => w.write({ type: 'write', position: offset, data: data as BufferSource }),
      close: () => w.close(),
    };
  }
  async commit(): Promise<void> {}
  async abort(): Promise<void> {
    await (await opfs()).removeEntry(this.dirName, { recursive: true }).catch(() => {});
  }
}

/** Removes every restored tree except `keep`. */
export async function removeRestored(keep?: string): Promise<void> {
  const root = await opfs();
  for await (const [name] of (root as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
    if (name.startsWith('restored-') && name !== keep) await root.removeEntry(name, { recursive: true }).catch(() => {});
  }
}
