/** Test trees on disk: random (incompressible) files, and a digest of a tree to compare restores with. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { seeded } from './servers.js';

const MiB = 1024 * 1024;

/** A folder of random files: one big file (half the bytes), some chunk-sized ones, many small ones. */
export async function makeTree(root: string, bytes: number, seed: number): Promise<number> {
  const rnd = seeded(seed);
  await mkdir(join(root, 'media', 'photos'), { recursive: true });
  let left = bytes;
  const big = Math.floor(bytes * 0.5);
  await writeFile(join(root, 'media', 'video.mp4'), randomBytes(big));
  left -= big;
  for (let i = 0; left > 0; i++) {
    const n = Math.min(left, i % 5 === 0 ? Math.floor(rnd() * 4000) : Math.floor(MiB * (0.5 + rnd() * 2)));
    await writeFile(join(root, i % 3 ? 'media/photos' : '.', `file-${i}.bin`), randomBytes(n));
    left -= n;
  }
  return bytes;
}

/** Every folder and file of a tree, each file with the SHA-256 of its content, in a fixed order. */
export async function digest(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(`${p}/`, ...(await digest(root, p)));
    else if (e.isFile()) out.push(`${p} ${createHash('sha256').update(await readFile(join(root, p))).digest('hex')}`);
  }
  return out;
}
