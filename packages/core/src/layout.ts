/**
 * Object names of a repository (spec/format.md §1, §10.1): one place that makes and parses them,
 * for the engine and for every backend that keeps objects in folders.
 */

const HEX64 = /^[0-9a-f]{64}$/;
const HEX16 = /^[0-9a-f]{16}$/;

export const CONFIG = 'config';
/** §10.2: the version 2 config a migration writes before it replaces `config`. */
export const CONFIG_V2 = 'config.v2';

export const packName = (id: string): string => `packs/${id}`;
/** The object name of index object `id` (spec/format.md §3.3). */
export const indexName = (id: string): string => `index/${id}`;
export const lockName = (id: string): string => `locks/${id}`;
/** Version 1 (§10.1): one object per blob. */
export const dataObjectName = (id: string): string => `data/${id}`;

/** A manifest's name, sequence number and writer (`null` for version 1 names). */
export interface ManifestRef {
  name: string;
  seq: number;
  writer: string | null;
}

const seqDigits = (seq: number) => String(seq).padStart(20, '0');

/** The object name of manifest `seq` by `writer` (spec/format.md §4.1; `null`: a version 1 name). */
export const manifestName = (seq: number, writer: string | null): string => `manifests/${seqDigits(seq)}${writer === null ? '' : `-${writer}`}`;

/** Parses `manifests/<seq>` (version 1) or `manifests/<seq>-<writer>` (version 2); `null` otherwise. */
export function parseManifestName(name: string): ManifestRef | null {
  const m = /^manifests\/(\d{20})(?:-([0-9a-f]{16}))?$/.exec(name);
  if (!m) return null;
  const seq = Number(m[1]);
  // The next backup's number must stay exact too: a name past that is junk (§4.4), not a backup.
  return Number.isSafeInteger(seq + 1) && seq > 0 ? { name, seq, writer: m[2] ?? null } : null;
}

/** Journal records (§9) sort by time: `journal/<16-digit ms>-<16 hex>`. */
export const journalName = (timeMs: number, random: string): string => `journal/${String(timeMs).padStart(16, '0')}-${random}`;

export function parseJournalName(name: string): { name: string; timeMs: number; random: string } | null {
  const m = /^journal\/(\d{16})-([0-9a-f]{16})$/.exec(name);
  return m ? { name, timeMs: Number(m[1]), random: m[2]! } : null;
}

/** The id at the end of `packs/<id>`, `index/<id>`, `locks/<id>` or `data/<id>`, when well formed. */
export function idOf(name: string, prefix: 'packs' | 'index' | 'locks' | 'data'): string | null {
  const id = name.startsWith(prefix + '/') ? name.slice(prefix.length + 1) : '';
  return HEX64.test(id) ? id : null;
}

export const isWriterId = (s: string): boolean => HEX16.test(s);

/**
 * Where a folder backend keeps an object: `packs/<id>` and `data/<id>` go into 256 shards
 * (`packs/ab/ab…`), so no folder grows past a few thousand entries.
 */
export function shardedPath(name: string): string {
  const m = /^(packs|data)\/([0-9a-f]{2})([0-9a-f]{62})$/.exec(name);
  return m ? `${m[1]}/${m[2]}/${m[2]}${m[3]}` : name;
}

/** The object name of a file found at `path` below a folder backend's root (inverse of shardedPath). */
export function unshardedName(path: string): string {
  const m = /^(packs|data)\/([0-9a-f]{2})\/(\2[0-9a-f]{62})$/.exec(path);
  return m ? `${m[1]}/${m[3]}` : path;
}

/** Folders that hold shards (a lister descends into them whatever the prefix asked for). */
export const isShardFolder = (path: string): boolean => /^(packs|data)\/[0-9a-f]{2}$/.test(path);
