/** Whole-tree chores: folder modification times and the size summary. */
import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTime } from './media.js';

export interface TreeTotals {
  /** Regular files, the database included. */
  files: number;
  /** Folders below the root. */
  folders: number;
  /** Bytes in all files. */
  bytes: number;
}

/**
 * Gives every non-empty folder the newest modification time found inside it (as if its last
 * entry had just been written) and counts files, folders and bytes. Empty folders keep their
 * time. Entries are visited in sorted order so the result never depends on the file system.
 */
export async function settleTree(root: string): Promise<TreeTotals> {
  const totals: TreeTotals = { files: 0, folders: 0, bytes: 0 };
  const visit = async (folder: string): Promise<number> => {
    let newest = -Infinity;
    const names = (await readdir(folder)).sort();
    for (const name of names) {
      const path = join(folder, name);
      const info = await lstat(path); // a symlink is an entry of its own, never followed
      if (info.isDirectory()) {
        totals.folders++;
        newest = Math.max(newest, await visit(path));
      } else if (info.isFile()) {
        totals.files++;
        totals.bytes += info.size;
        newest = Math.max(newest, info.mtimeMs);
      }
    }
    if (names.length === 0) return (await stat(folder)).mtimeMs;
    await setTime(folder, newest);
    return newest;
  };
  await visit(root);
  return totals;
}
