/**
 * This browser as a device: its chat data (the demo phone's, fetched from the app server, or a
 * restored copy in the Origin Private File System) as a BackupSource, and the OPFS restore target.
 * Files are read and written chunk by chunk (Blob.slice, positioned writes): a large video is
 * never whole in memory.
 */
import type { BackupSource, FileSink, RestoreTarget, TreeEntry } from '@coffer/core';

const ns = (ms: number) => (BigInt(Math.floor(ms)) * 1_000_000n).toString();

async function* sliceBlob(blob: Blob, chunkSize: number): AsyncIterable<Uint8Array> {
  for (let o = 0; o < blob.size; o += chunkSize) yield new Uint8Array(await blob.slice(o, o + chunkSize).arrayBuffer());
  // (An empty file yields nothing: the engine records it with no chunks.)
}

export const phoneFileUrl = (path: string) => `/api/phone/file/${path.split('/').map(encodeURIComponent).join('/')}`;

/** The demo phone's chat data, served by the app server. */
export class PhoneSource implements BackupSource {
  async scan(): Promise<TreeEntry[]> {
    const r = await fetch('/api/phone/tree', { cache: 'no-store' });
    if (!r.ok) throw new Error(`could not list this phone's files: HTTP ${r.status}`);
    const files = (await r.json()) as { path: string; size: number; mode: number; mtimeMs: number }[];
    return files.map((f) => ({ path: f.path, kind: 'file', mode: f.mode, mtimeNs: ns(f.mtimeMs), size: f.size }));
  }
  async *read(entry: TreeEntry, chunkSize: number): AsyncIterable<Uint8Array> {
    const r = await fetch(phoneFileUrl(entry.path), { cache: 'no-store' });
    if (!r.ok) throw new Error(`could not read ${entry.path}: HTTP ${r.status}`);
    // Chromium keeps large blobs on disk; slices are read one chunk at a time.
    yield* sliceBlob(await r.blob(), chunkSize);
  }
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
  async *read(entry: TreeEntry, chunkSize: number): AsyncIterable<Uint8Array> {
    yield* sliceBlob(this.files.get(entry.path)!, chunkSize);
  }
}

/**
 * Restores into a new OPFS folder; it becomes this device's data only once the caller records it
 * after `commit` (nothing replaces the current data before every byte verified). Symlinks have no
 * place in a browser and are skipped.
 */
export class OpfsTarget implements RestoreTarget {
  readonly dirName = `restored-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  private root: FileSystemDirectoryHandle | null = null;
  async begin(): Promise<void> {
    this.root = await (await opfs()).getDirectoryHandle(this.dirName, { create: true });
  }
  async dir(e: TreeEntry): Promise<void> {
    await dirAt(this.root!, e.path.split('/'), true);
  }
  async symlink(): Promise<boolean> {
    return false; // OPFS has no symlinks (spec/format.md §6.1)
  }
  async file(e: TreeEntry): Promise<FileSink> {
    const parts = e.path.split('/');
    const d = await dirAt(this.root!, parts.slice(0, -1), true);
    const w = await (await d.getFileHandle(parts[parts.length - 1]!, { create: true })).createWritable({ keepExistingData: false });
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
