/** The demo phone's chat data (from @coffer/sample) as a file tree; the page reads its database itself. */
import { lstat, readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { generateChatData } from '@coffer/sample';

export interface TreeFile {
  path: string;
  size: number;
  mode: number;
  mtimeMs: number;
}

/** Generates the sample into `dir` unless it holds one already. */
export async function ensureSample(dir: string, bytes: number, seed: string): Promise<void> {
  try {
    await stat(join(dir, 'messages.db'));
    return;
  } catch {}
  await generateChatData(dir, { seed, targetBytes: bytes });
}

/** Every regular file below `dir` with its size, mode and mtime ('/'-separated paths). */
export async function listTree(dir: string): Promise<TreeFile[]> {
  const out: TreeFile[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    const st = await lstat(p);
    out.push({ path: relative(dir, p).split(sep).join('/'), size: st.size, mode: st.mode & 0o777, mtimeMs: Math.floor(st.mtimeMs) });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}
