/**
 * A version 1 writer, for tests only: coffer reads version 1 stores but no longer writes them
 * (spec/format.md §10.1), and migration (§10.2) needs realistic ones. Built from core's primitives
 * as the version 1 engine used them: a config without MAC, one sealed object `data/<id>` per chunk
 * (binding = id), and manifests `manifests/<20 digits>` bound to backupId || seq, with a version 1
 * header (`parentSeq`, no `writer` or `parent`). Not part of any package's build output that ships
 * (it lives under test/).
 */
import { Repository, toHex, type BackupSource, type CryptoProvider, type SecretKey, type Storage, type TreeEntry } from '@coffer/core';
import { keyCheckValue } from '#src/keys.js';
import { dataObjectName, parseManifestName } from '#src/layout.js';
import { compareEntryPaths, encodeManifest, type Manifest } from '#src/manifest.js';
import { chunkId } from '#src/object.js';
import { deriveKeys, manifestName, ObjectType, sealObject, utf8 } from '@coffer/core/testing';

export interface V1Options {
  chunkSize?: number;
  segmentSize?: number;
  backupId?: Uint8Array;
}

/** Writes a version 1 config (§10.1: no `mac`, no `packSize`) into an empty store. */
export async function initV1(storage: Storage, crypto: CryptoProvider, key: SecretKey, options: V1Options = {}): Promise<void> {
  const keys = await deriveKeys(crypto, key);
  const backupId = options.backupId ?? crypto.randomBytes(16);
  const config = {
    format: 'coffer-backup', version: 1, backupId: toHex(backupId), chunkSize: options.chunkSize ?? 1024 * 1024, segmentSize: options.segmentSize ?? 65536,
    keyCheck: toHex(await keyCheckValue(crypto, keys, backupId)),
  };
  await storage.put('config', utf8(JSON.stringify(config) + '\n'));
  await storage.flush();
}

export interface V1BackupResult {
  seq: number;
  name: string;
  files: number;
  bytes: number;
  chunksUploaded: number;
}

/** One version 1 backup of `source`: new chunks as `data/<id>`, then the manifest, as the version 1 engine wrote them. */
export async function backupV1(storage: Storage, crypto: CryptoProvider, key: SecretKey, source: BackupSource, options: { now?: Date } = {}): Promise<V1BackupResult> {
  const repo = await Repository.open(storage, crypto, key);
  if (repo.version !== 1) throw new Error('not a version 1 store');
  const { keys } = repo;
  const { chunkSize, segmentSize } = repo.config;
  const present = new Set(await storage.list('data/'));
  const seqs = (await storage.list('manifests/')).map(parseManifestName).filter((r) => r !== null && r.writer === null).map((r) => r!.seq);
  const parentSeq = seqs.length ? Math.max(...seqs) : null;
  const seq = (parentSeq ?? 0) + 1;
  const entries: TreeEntry[] = (await source.scan()).sort((a, b) => compareEntryPaths(a.path, b.path));
  let chunksUploaded = 0;
  let files = 0;
  let bytes = 0;
  for (const entry of entries) {
    if (entry.kind !== 'file') continue;
    const chunks: string[] = [];
    let size = 0;
    for await (const piece of source.read(entry, chunkSize)) {
      const id = await chunkId(crypto, keys, piece);
      chunks.push(id);
      size += piece.length;
      const name = dataObjectName(id);
      if (present.has(name)) continue;
      await storage.put(name, await sealObject(crypto, keys, { type: ObjectType.data, id }, piece, { segmentSize }));
      present.add(name);
      chunksUploaded++;
    }
    entry.chunks = chunks;
    entry.size = size;
    files++;
    bytes += size;
  }
  await storage.flush();
  const manifest: Manifest = {
    header: {
      type: 'coffer-manifest', version: 1, backupId: repo.config.backupId, seq, parentSeq,
      createdAt: (options.now ?? new Date()).toISOString(), entries: entries.length, files, bytes,
    },
    entries,
  };
  const name = manifestName(seq, null);
  const binding = { type: ObjectType.manifest, backupId: repo.backupId, seq, writer: null } as const;
  await storage.put(name, await sealObject(crypto, keys, binding, encodeManifest(manifest), { segmentSize }));
  await storage.flush();
  return { seq, name, files, bytes, chunksUploaded };
}
