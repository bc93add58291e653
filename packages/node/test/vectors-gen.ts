/**
 * Generates the test vectors of spec/format.md §8 with a seeded random source, so the same code
 * always writes the same bytes. `npm run vectors` writes them to spec/vectors/.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, rename, rm, truncate, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, formatRecoveryKey, Repository, SecretKey, type BackupSource, type CryptoProvider, type TreeEntry } from '@coffer/core';
import { manifestName } from '@coffer/core/testing';
import { LocalStorage, nodeCryptoProvider } from '@coffer/node';

function seeded(seed: string): CryptoProvider {
  let counter = 0;
  return {
    ...nodeCryptoProvider,
    randomBytes(n) {
      const out = new Uint8Array(n);
      for (let o = 0; o < n; o += 32) out.set(createHash('sha256').update(`${seed}/${counter++}`).digest().subarray(0, Math.min(32, n - o)), o);
      return out;
    },
  };
}

type Tree = Record<string, string | Uint8Array | null>; // null: folder

function source(tree: Tree): BackupSource {
  return {
    async scan() {
      return Object.entries(tree).map(([path, v], i): TreeEntry => {
        const base = { path, mtimeNs: String(1_750_000_000_000_000_000n + BigInt(i) * 1_000_000_007n) };
        if (v === null) return { ...base, kind: 'dir', mode: 0o755 };
        const data = typeof v === 'string' ? Buffer.from(v) : v;
        return { ...base, kind: 'file', mode: 0o644, size: data.length };
      });
    },
    async *read(entry, chunkSize) {
      const v = tree[entry.path]!;
      const data = typeof v === 'string' ? Buffer.from(v) : v;
      for (let o = 0; o < data.length; o += chunkSize) yield data.subarray(o, o + chunkSize);
    },
  };
}

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

export interface Vector {
  description: string;
  recoveryKey: string;
  lastSeenSeq: number | null;
  expect: 'ok' | 'wrong-key' | 'truncated' | 'corrupt' | 'misplaced' | 'rolled-back' | 'missing' | 'config';
  files?: Record<string, string>;
}

/**
 * Version 2 vectors (spec/format.md §8). Version 1's are kept, as data, in spec/vectors/v1: the
 * generator that wrote them is gone with version 1 writing.
 */
export async function generateVectors(outDir: string): Promise<string[]> {
  const crypto = seeded('coffer test vectors v2');
  const key = new SecretKey(crypto.randomBytes(32));
  const recoveryKey = formatRecoveryKey(key);
  const work = join(outDir, '.work');
  await rm(work, { recursive: true, force: true });
  const storage = await LocalStorage.open(work, { create: true });
  // Small packs, so that the two backups' blobs lie in several packs.
  const repo = await Repository.init(storage, crypto, key, { backupId: crypto.randomBytes(16), packSize: 64 * 1024 });
  const media = crypto.randomBytes(150_000); // three AEAD segments
  const tree1: Tree = { 'chats': null, 'chats/messages.txt': 'hello\nolá 👋\n', 'Família ☕': null, 'Família ☕/photo.jpg': media, 'empty.txt': '', 'empty folder': null };
  const tree2: Tree = { ...tree1, 'chats/messages.txt': 'hello\nolá 👋\nsee you tomorrow\n' };
  const fixed = new Date('2026-11-29T12:00:00.000Z');
  // One file, one chunk and one pack at a time: the seeded random bytes are drawn in a fixed order.
  const serial = { now: () => fixed, concurrency: 1, filesInFlight: 1, packsInFlight: 1 };
  await backup(repo, source(tree1), serial);
  const second = await backup(repo, source(tree2), { ...serial, lastSeenSeq: 1 });
  const files = Object.fromEntries(Object.entries(tree2).filter(([, v]) => v !== null).map(([p, v]) => [p, sha(v!)]));

  const index = await repo.loadIndex();
  const photoChunk = (await repo.readManifest(2)).entries.find((e) => e.path === 'Família ☕/photo.jpg')!.chunks![0]!;
  const photo = index.get(photoChunk)!;
  const packFile = (dir: string, pack: string) => join(dir, 'repo', 'packs', pack.slice(0, 2), pack);
  const indexes = (await storage.list('index/')).sort();
  const first = (await repo.manifests())[0]!;

  const written: string[] = [];
  const make = async (name: string, v: Vector, mutate?: (dir: string) => Promise<void>) => {
    const dir = join(outDir, name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await cp(work, join(dir, 'repo'), { recursive: true });
    await rm(join(dir, 'repo', 'tmp'), { recursive: true, force: true });
    if (mutate) await mutate(dir);
    await writeFile(join(dir, 'vector.json'), JSON.stringify(v, null, 2) + '\n');
    written.push(name);
  };
  const editConfig = async (dir: string, edit: (c: Record<string, unknown>) => void) => {
    const f = join(dir, 'repo', 'config');
    const c = JSON.parse(await readFile(f, 'utf8'));
    edit(c);
    await writeFile(f, JSON.stringify(c) + '\n');
  };
  const base = { recoveryKey, lastSeenSeq: 2 };
  await make('valid', { ...base, description: 'two backups in small packs; the newest restores to these files', expect: 'ok', files });
  const wrong = new Uint8Array(key.expose());
  wrong[31]! ^= 1;
  await make('wrong-key', { ...base, recoveryKey: formatRecoveryKey(new SecretKey(wrong)), description: 'a well-formed recovery key that differs in its last digit', expect: 'wrong-key' });
  await make('altered-key-check', { ...base, description: "the config's keyCheck was changed; the right key still opens the manifests (§2 step 2)", expect: 'config' }, (d) =>
    editConfig(d, (c) => (c.keyCheck = '00'.repeat(32))),
  );
  await make('altered-chunk-size', { ...base, description: 'the config says chunkSize 4096; its MAC no longer matches (§2)', expect: 'config' }, (d) => editConfig(d, (c) => (c.chunkSize = 4096)));
  await make('truncated-pack', { ...base, description: 'the pack holding the photo is cut inside the photo blob', expect: 'truncated' }, (d) =>
    truncate(packFile(d, photo.pack), photo.offset + 40 + 65536 + 16),
  );
  await make('flipped-bit', { ...base, description: 'one bit flipped in the photo blob inside its pack', expect: 'corrupt' }, async (d) => {
    const f = packFile(d, photo.pack);
    const b = await readFile(f);
    b[photo.offset + 1000]! ^= 0x04;
    await writeFile(f, b);
  });
  await make('swapped-indexes', { ...base, description: 'two index objects exchanged their names', expect: 'misplaced' }, async (d) => {
    const [a, b] = indexes.map((n) => join(d, 'repo', ...n.split('/')));
    await rename(a!, a + '.x');
    await rename(b!, a!);
    await rename(a + '.x', b!);
  });
  await make('rolled-back-manifest', { ...base, description: 'the newest manifest (#2, which this device saw) was removed', expect: 'rolled-back' }, (d) =>
    rm(join(d, 'repo', ...second.name.split('/'))),
  );
  await make('renamed-manifest', { ...base, lastSeenSeq: 1, description: 'manifest #1 renamed to #2 (its writer kept) to roll back without notice', expect: 'misplaced' }, async (d) => {
    await rm(join(d, 'repo', ...second.name.split('/')));
    await rename(join(d, 'repo', ...first.name.split('/')), join(d, 'repo', ...manifestName(2, first.writer).split('/')));
  });
  await make('missing-pack', { ...base, description: 'the pack holding the photo was deleted', expect: 'missing' }, (d) => rm(packFile(d, photo.pack)));
  await make('missing-index', { ...base, description: 'every index object was deleted: no pack is known to hold any blob', expect: 'missing' }, async (d) => {
    for (const n of indexes) await rm(join(d, 'repo', ...n.split('/')));
  });
  await rm(work, { recursive: true, force: true });
  return written.sort();
}

export async function listVectors(dir: string): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith('.') && d.name !== 'v1').map((d) => d.name).sort();
}
