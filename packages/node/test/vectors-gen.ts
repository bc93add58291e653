/**
 * Generates the test vectors of spec/format.md §8 with a seeded random source, so the same code
 * always writes the same bytes. `npm run vectors` writes them to spec/vectors/.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, rename, rm, truncate, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, formatRecoveryKey, manifestName, Repository, SecretKey, type BackupSource, type CryptoProvider, type TreeEntry } from '@coffer/core';
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
  expect: 'ok' | 'wrong-key' | 'truncated' | 'corrupt' | 'misplaced' | 'rolled-back' | 'missing';
  files?: Record<string, string>;
}

export async function generateVectors(outDir: string): Promise<string[]> {
  const crypto = seeded('coffer test vectors v1');
  const key = new SecretKey(crypto.randomBytes(32));
  const recoveryKey = formatRecoveryKey(key);
  const work = join(outDir, '.work');
  await rm(work, { recursive: true, force: true });
  const storage = await LocalStorage.open(work, { create: true });
  const repo = await Repository.init(storage, crypto, key, { backupId: crypto.randomBytes(16) });
  const media = crypto.randomBytes(150_000); // three AEAD segments
  const tree1: Tree = { 'chats': null, 'chats/messages.txt': 'hello\nolá 👋\n', 'Família ☕': null, 'Família ☕/photo.jpg': media, 'empty.txt': '', 'empty folder': null };
  const tree2: Tree = { ...tree1, 'chats/messages.txt': 'hello\nolá 👋\nsee you tomorrow\n' };
  const fixed = new Date('2026-11-26T12:00:00.000Z');
  await backup(repo, source(tree1), { now: () => fixed });
  await backup(repo, source(tree2), { now: () => fixed, lastSeenSeq: 1 });
  const files = Object.fromEntries(Object.entries(tree2).filter(([, v]) => v !== null).map(([p, v]) => [p, sha(v!)]));

  // The data object of the photo's first chunk, and another one.
  const photoChunk = (await repo.readManifest(2)).entries.find((e) => e.path === 'Família ☕/photo.jpg')!.chunks![0]!;
  const objectFile = (dir: string, id: string) => join(dir, 'repo', 'data', id.slice(0, 2), id);
  const otherChunk = (await storage.list('data/')).map((n) => n.slice(5)).find((id) => id !== photoChunk)!;

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
  const base = { recoveryKey, lastSeenSeq: 2 };
  await make('valid', { ...base, description: 'two backups; the newest restores to these files', expect: 'ok', files });
  const wrong = new Uint8Array(key.expose());
  wrong[31]! ^= 1;
  await make('wrong-key', { ...base, recoveryKey: formatRecoveryKey(new SecretKey(wrong)), description: 'a well-formed recovery key that differs in its last digit', expect: 'wrong-key' });
  await make('truncated-object', { ...base, description: 'the photo chunk is cut after its first segment', expect: 'truncated' }, (d) =>
    truncate(objectFile(d, photoChunk), 40 + 65536 + 16),
  );
  await make('flipped-bit', { ...base, description: 'one bit flipped in the payload of the photo chunk', expect: 'corrupt' }, async (d) => {
    const f = objectFile(d, photoChunk);
    const b = await readFile(f);
    b[1000]! ^= 0x04;
    await writeFile(f, b);
  });
  await make('swapped-objects', { ...base, description: 'two data objects exchanged their names', expect: 'misplaced' }, async (d) => {
    const a = objectFile(d, photoChunk);
    const b = objectFile(d, otherChunk);
    await rename(a, a + '.x');
    await rename(b, a);
    await rename(a + '.x', b);
  });
  await make('rolled-back-manifest', { ...base, description: 'the newest manifest (#2, which this device saw) was removed', expect: 'rolled-back' }, (d) =>
    rm(join(d, 'repo', ...manifestName(2).split('/'))),
  );
  await make('renamed-manifest', { ...base, lastSeenSeq: 1, description: 'manifest #1 renamed to #2 to roll back without notice', expect: 'misplaced' }, async (d) => {
    await rm(join(d, 'repo', ...manifestName(2).split('/')));
    await rename(join(d, 'repo', ...manifestName(1).split('/')), join(d, 'repo', ...manifestName(2).split('/')));
  });
  await make('missing-object', { ...base, description: 'the photo chunk was deleted', expect: 'missing' }, (d) => rm(objectFile(d, photoChunk)));
  await rm(work, { recursive: true, force: true });
  return written.sort();
}

export async function listVectors(dir: string): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name).sort();
}
