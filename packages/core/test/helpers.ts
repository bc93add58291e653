/** Test helpers: in-memory source and target trees, providers to run each suite against. */
import { createHash } from 'node:crypto';
import type { BackupSource, CryptoProvider, FileSink, RestoreTarget, TreeEntry } from '@coffer/core';
import { webCryptoProvider } from '@coffer/core';
import { nodeCryptoProvider } from '@coffer/node';

/** Every suite that touches crypto runs once per provider (both must agree byte for byte). */
export const providers: CryptoProvider[] = [nodeCryptoProvider, webCryptoProvider];

/** A provider whose random bytes come from a seed: for reproducible vectors only. */
export function seededProvider(base: CryptoProvider, seed: string): CryptoProvider {
  let counter = 0;
  return {
    ...base,
    name: `${base.name}+seeded`,
    randomBytes(n) {
      const out = new Uint8Array(n);
      for (let o = 0; o < n; o += 32) {
        const block = createHash('sha256').update(`${seed}/${counter++}`).digest();
        out.set(block.subarray(0, Math.min(32, n - o)), o);
      }
      return out;
    },
  };
}

export interface MemFile {
  kind: 'file' | 'dir' | 'symlink';
  data?: Uint8Array;
  target?: string;
  mode: number;
  mtimeNs: string;
}

/** A tree held in a Map, as a backup source. */
export class MemorySource implements BackupSource {
  constructor(readonly files: Map<string, MemFile>) {}
  async scan(): Promise<TreeEntry[]> {
    return [...this.files].map(([path, f]) => ({
      path, kind: f.kind, mode: f.mode, mtimeNs: f.mtimeNs,
      // Like a real file system, any change of content changes the change time.
      ...(f.kind === 'file' ? { size: f.data!.length, hint: { ino: '1', ctimeNs: BigInt('0x' + createHash('sha256').update(f.data!).digest('hex').slice(0, 12)).toString() } } : {}),
      ...(f.kind === 'symlink' ? { target: f.target } : {}),
    }));
  }
  async *read(path: string, chunkSize: number): AsyncIterable<Uint8Array> {
    const d = this.files.get(path)!.data!;
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

export function sameTree(a: Map<string, MemFile>, b: Map<string, MemFile>): boolean {
  if (a.size !== b.size) return false;
  for (const [p, f] of a) {
    const g = b.get(p);
    if (!g || g.kind !== f.kind || g.mode !== f.mode || g.mtimeNs !== f.mtimeNs || g.target !== f.target) return false;
    if (f.kind === 'file' && Buffer.compare(Buffer.from(f.data!), Buffer.from(g.data!)) !== 0) return false;
  }
  return true;
}
