/**
 * In-memory trees for the engine tests: a backup source and a restore target held in Maps. Browser-safe
 * (Web Crypto only), so the same code serves the suites in Node and in Chromium (apps/web/test).
 */
import type { BackupSource, FileSink, RestoreTarget } from '../engine.js';
import type { TreeEntry } from '../manifest.js';

/** A file, folder or symlink held in memory by {@link MemorySource} and {@link MemoryTarget}. */
export interface MemFile {
  kind: 'file' | 'dir' | 'symlink';
  data?: Uint8Array;
  target?: string;
  mode: number;
  mtimeNs: string;
}

async function changeTime(d: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', d as BufferSource));
  return BigInt('0x' + Array.from(h.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join('')).toString();
}

/** A tree held in a Map, as a backup source. */
export class MemorySource implements BackupSource {
  constructor(readonly files: Map<string, MemFile>) {}
  async scan(): Promise<TreeEntry[]> {
    const out: TreeEntry[] = [];
    for (const [path, f] of this.files) {
      out.push({
        path, kind: f.kind, mode: f.mode, mtimeNs: f.mtimeNs,
        // Like a real file system, any change of content changes the change time.
        ...(f.kind === 'file' ? { size: f.data!.length, hint: { ino: '1', ctimeNs: await changeTime(f.data!) } } : {}),
        ...(f.kind === 'symlink' ? { target: f.target } : {}),
      });
    }
    return out;
  }
  async *read(entry: TreeEntry, chunkSize: number): AsyncIterable<Uint8Array> {
    const d = this.files.get(entry.path)!.data!;
    for (let o = 0; o < d.length; o += chunkSize) yield d.slice(o, o + chunkSize);
  }
}

/** A restore target that collects the tree into a Map; `committed` only after commit. */
export class MemoryTarget implements RestoreTarget {
  staging = new Map<string, MemFile>();
  committed: Map<string, MemFile> | null = null;
  aborted = false;
  async begin() {}
  async dir(e: TreeEntry) {
    this.staging.set(e.path, { kind: 'dir', mode: e.mode, mtimeNs: e.mtimeNs });
  }
  async symlink(e: TreeEntry) {
    this.staging.set(e.path, { kind: 'symlink', target: e.target!, mode: e.mode, mtimeNs: e.mtimeNs });
  }
  async file(e: TreeEntry): Promise<FileSink> {
    const data = new Uint8Array(e.size!);
    this.staging.set(e.path, { kind: 'file', data, mode: e.mode, mtimeNs: e.mtimeNs });
    return {
      async write(offset, d) {
        data.set(d, offset);
      },
      async close() {},
    };
  }
  async commit() {
    this.committed = this.staging;
  }
  async abort() {
    this.aborted = true;
    this.staging = new Map();
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/** True when two in-memory trees hold the same entries, modes, times and bytes. */
export function sameTree(a: Map<string, MemFile>, b: Map<string, MemFile>): boolean {
  if (a.size !== b.size) return false;
  for (const [p, f] of a) {
    const g = b.get(p);
    if (!g || g.kind !== f.kind || g.mode !== f.mode || g.mtimeNs !== f.mtimeNs || g.target !== f.target) return false;
    if (f.kind === 'file' && !sameBytes(f.data!, g.data!)) return false;
  }
  return true;
}
