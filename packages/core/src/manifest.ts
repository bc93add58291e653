/** Manifests: spec/format.md §5. */
import { concat, fromUtf8, toHex, utf8 } from './bytes.js';
import { DamagedBackupError } from './errors.js';

/** What a backed-up entry is: a regular file, a folder or a symbolic link. */
export type EntryKind = 'file' | 'dir' | 'symlink';

/** One file, folder or symlink of a backup (spec/format.md §5): what a BackupSource scans and a RestoreTarget creates. */
export interface TreeEntry {
  /** Relative, `/`-separated, validated by `checkEntryPath`. */
  path: string;
  kind: EntryKind;
  mode: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  /** Files only. */
  size?: number;
  /** Files only: chunk ids in order. */
  chunks?: string[];
  /** Symlinks only. */
  target?: string;
  /** Change-detection hints of the writing client; ignored by readers. */
  hint?: { ino?: string; ctimeNs?: string };
  /** Files only: the file kept changing while it was read, so its content may be torn (§6.2). */
  changed?: true;
}

/** The largest manifest a reader accepts (§4.4): its plaintext and sealed size are both below this. */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;
/** Longest symlink target (PATH_MAX - 1 on Linux). */
const MAX_LINK_TARGET = 4095;

export interface ManifestHeader {
  type: 'coffer-manifest';
  /** 2 (version 1 manifests are read, §10.1). */
  version: 1 | 2;
  backupId: string;
  seq: number;
  /** Version 2: this backup's writer id, 16 hex digits (§5). */
  writer?: string;
  /** Version 2: the manifest this backup started from, by name and SHA-256 of its sealed bytes. */
  parent?: { name: string; hash: string } | null;
  /** Version 1 only. */
  parentSeq?: number | null;
  createdAt: string;
  entries: number;
  files: number;
  bytes: number;
}

export interface Manifest {
  header: ManifestHeader;
  entries: TreeEntry[];
}

// A UTF-16 surrogate without its pair: such a name has no UTF-8 form, and two of them would
// collide on disk (both become U+FFFD).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A path is safe to create under a restore target (§5): throws a plain Error describing why not. */
export function entryPathProblem(path: string): string | null {
  if (typeof path !== 'string' || path.length === 0) return 'empty path';
  if (path.startsWith('/')) return 'absolute path';
  if (path.includes('\u0000')) return 'NUL in path';
  if (LONE_SURROGATE.test(path)) return 'not valid Unicode';
  for (const part of path.split('/')) {
    if (part === '' || part === '.' || part === '..') return `path component ${JSON.stringify(part)}`;
    // NAME_MAX: no file system Coffer restores to holds a longer name (a multi-byte name is
    // measured in UTF-8).
    if (part.length > 85 && utf8(part).length > 255) return 'a name longer than 255 bytes';
  }
  return null;
}

/** Order of entries: by path in UTF-16 code unit order, so parents come before children. */
export function compareEntryPaths(a: string, b: string): number {
  // Sorting by path components keeps "a/b" right after "a" (before "a-b").
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i]! < pb[i]!) return -1;
    if (pa[i]! > pb[i]!) return 1;
  }
  return pa.length - pb.length;
}

/**
 * The manifest's bytes: its lines are encoded a piece at a time, so that no string of the whole
 * manifest (or array of all its lines) exists beside the bytes.
 */
export function encodeManifest(m: Manifest): Uint8Array {
  const PIECE = 1 << 20;
  const pieces: Uint8Array[] = [];
  let buf = new Uint8Array(PIECE);
  let used = 0;
  const add = (line: string) => {
    for (;;) {
      const { read, written } = lineEncoder.encodeInto(line, buf.subarray(used));
      used += written;
      if (read === line.length) break;
      line = line.slice(read);
      pieces.push(buf.subarray(0, used));
      buf = new Uint8Array(Math.max(PIECE, line.length * 3));
      used = 0;
    }
  };
  add(JSON.stringify(m.header) + '\n');
  for (const e of m.entries) add(JSON.stringify(e) + '\n');
  pieces.push(buf.subarray(0, used));
  return concat(...pieces);
}
const lineEncoder = new TextEncoder();

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const ID = /^[0-9a-f]{64}$/;

/** Parent path of an entry path, or `null` at the top. */
export const parentPath = (path: string): string | null => {
  const i = path.lastIndexOf('/');
  return i < 0 ? null : path.slice(0, i);
};

/**
 * Parses and validates a decrypted manifest (§5, §5.1): anything off is
 * `DamagedBackupError(corrupt|misplaced)`, thrown before a restore writes anything.
 */
export function decodeManifest(bytes: Uint8Array, name: string, expect: { backupId: Uint8Array; seq: number; writer?: string | null; chunkSize: number }): Manifest {
  const bad = (detail: string) => new DamagedBackupError('corrupt', name, { detail });
  if (bytes.length > MAX_MANIFEST_BYTES) throw bad('larger than a manifest may be');
  let text: string;
  try {
    text = fromUtf8(bytes);
  } catch (e) {
    throw new DamagedBackupError('corrupt', name, { cause: e, detail: 'not UTF-8' });
  }
  const lines = text.split('\n');
  if (lines.pop() !== '') throw bad('does not end with a newline');
  let header: ManifestHeader;
  try {
    header = JSON.parse(lines[0] ?? '');
  } catch (e) {
    throw new DamagedBackupError('corrupt', name, { cause: e, detail: 'bad header line' });
  }
  const version = expect.writer ? 2 : 1;
  if (header?.type !== 'coffer-manifest' || header.version !== version) throw bad(`not a version ${version} manifest`);
  if (header.backupId !== toHex(expect.backupId) || header.seq !== expect.seq || (version === 2 && header.writer !== expect.writer)) {
    throw new DamagedBackupError('misplaced', name);
  }
  if (version === 2) {
    const p = header.parent;
    if (p !== null && (typeof p !== 'object' || typeof p.name !== 'string' || !/^manifests\/\d{20}-[0-9a-f]{16}$/.test(p.name) || typeof p.hash !== 'string' || !/^[0-9a-f]{64}$/.test(p.hash))) {
      throw bad('bad parent');
    }
  }
  if (typeof header.createdAt !== 'string' || header.createdAt.length > 40) throw bad('bad creation time');
  if (!isInt(header.entries) || header.entries !== lines.length - 1) throw bad('entry count does not match');
  const entries: TreeEntry[] = [];
  // Kind of every path seen so far: an entry may only lie below a folder (§5.1).
  const kinds = new Map<string, EntryKind>();
  let prev: string | null = null;
  let files = 0;
  let total = 0;
  for (let i = 1; i < lines.length; i++) {
    let e: TreeEntry;
    try {
      e = JSON.parse(lines[i]!);
    } catch (err) {
      throw new DamagedBackupError('corrupt', name, { cause: err, detail: `bad entry on line ${i + 1}` });
    }
    if (typeof e !== 'object' || e === null) throw bad(`entry ${i}: not an object`);
    const problem = entryPathProblem(e.path);
    if (problem) throw bad(`entry ${i}: ${problem}`);
    if (prev !== null && compareEntryPaths(prev, e.path) >= 0) throw bad(`entry ${i}: out of order or duplicate`);
    prev = e.path;
    for (let p = parentPath(e.path); p !== null; p = parentPath(p)) {
      const k = kinds.get(p);
      if (k !== undefined && k !== 'dir') throw bad(`entry ${i} lies below a ${k}, not a folder`);
    }
    if (!isInt(e.mode) || e.mode > 0o7777 || typeof e.mtimeNs !== 'string' || !/^\d{1,25}$/.test(e.mtimeNs)) throw bad(`entry ${i}: bad mode or mtime`);
    if (e.kind === 'file') {
      if (!isInt(e.size) || !Array.isArray(e.chunks) || !e.chunks.every((c) => typeof c === 'string' && ID.test(c))) {
        throw bad(`entry ${i}: bad file entry`);
      }
      if (e.chunks.length !== Math.ceil(e.size / expect.chunkSize)) throw bad(`entry ${i}: chunk list does not fit the size`);
      if (e.changed !== undefined && e.changed !== true) throw bad(`entry ${i}: bad changed flag`);
      files++;
      total += e.size;
    } else if (e.kind === 'symlink') {
      if (typeof e.target !== 'string' || e.target.length === 0 || e.target.includes('\u0000') || LONE_SURROGATE.test(e.target) || utf8(e.target).length > MAX_LINK_TARGET) {
        throw bad(`entry ${i}: bad symlink`);
      }
    } else if (e.kind !== 'dir') {
      throw bad(`entry ${i}: unknown kind`);
    }
    kinds.set(e.path, e.kind);
    entries.push(e);
  }
  if (header.files !== files || header.bytes !== total) throw bad('file count or size does not match the entries');
  return { header, entries };
}

