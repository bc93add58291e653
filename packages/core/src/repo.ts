/**
 * A backup repository in a Storage (spec/format.md §1-§3, §5, §6, §10): config, manifests, the
 * blob index, and where each blob is. Version 2 is written; version 1 is read.
 */
import { concat, equalBytes, fromHex, fromUtf8, toHex, utf8 } from './bytes.js';
import type { CryptoProvider } from './crypto.js';
import {
  ConflictError, CofferError, DamagedBackupError, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, UnsupportedFormatError,
  UsageError, WrongKeyError, type DamageReason,
} from './errors.js';
import { deriveKeys, keyCheckValue, type DerivedKeys, type SecretKey } from './keys.js';
import { CONFIG, CONFIG_V2, dataObjectName, idOf, indexName, manifestName, packName, parseManifestName, type ManifestRef } from './layout.js';
import { decodeManifest, encodeManifest, MAX_MANIFEST_BYTES, type Manifest } from './manifest.js';
import { DEFAULT_SEGMENT_SIZE, expectedBindingTag, HEADER_BYTES, ObjectType, openObject, sealedSize, sealObject } from './object.js';
import { decodeIndex, encodeIndex, type BlobLocation, type PackEntry } from './pack.js';
import type { Storage } from './storage.js';

/** The chunk size of new repositories: 1 MiB (spec/format.md §3.1). */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** The pack size new repositories aim for: 16 MiB (spec/format.md §3.2). */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
/** The newest repository version this code writes and reads. */
export const REPO_VERSION = 2;
/** The config is a short line of JSON; anything longer is not one (§4.4). */
const MAX_CONFIG_BYTES = 64 * 1024;
const CONFIG_MAC_LABEL = utf8('coffer v2 config');

/** A repository's config object, as stored in `config` (spec/format.md §2). */
export interface RepoConfig {
  format: 'coffer-backup';
  version: 1 | 2;
  backupId: string;
  chunkSize: number;
  segmentSize: number;
  /** Version 2 only. */
  packSize?: number;
  keyCheck: string;
  /** Version 2 only: §2. */
  mac?: string;
}

/** Wraps unexpected storage failures so callers can tell "unreachable" from "damaged". */
export async function storageCall<T>(storage: Storage, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof CofferError || e instanceof TypeError) throw e;
    throw new StorageUnavailableError(`${storage.label}: ${what} failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

/**
 * Reads `[offset, offset + max]` of an object with one ranged get of `max + 1` bytes from `offset`
 * (the whole object by default), so an object larger than the format allows is reported as damage
 * before anything is allocated for it (§4.4).
 */
export async function readBounded(storage: Storage, name: string, max: number, alloc?: (size: number) => Uint8Array, offset = 0): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await storageCall(storage, `reading ${name}`, () => storage.get(name, { offset, length: max + 1 }, alloc));
  } catch (e) {
    if (e instanceof ObjectNotFoundError) throw new DamagedBackupError('missing', name, { cause: e });
    throw e;
  }
  if (bytes.length > max) throw new DamagedBackupError('corrupt', name, { detail: 'larger than the format allows' });
  return bytes;
}

/** A manifest name that did not open, and why (§4.4: junk under a manifest name). */
export interface SkippedManifest {
  name: string;
  seq: number;
  reason: DamageReason;
  message: string;
}

/** Where the blobs of this device's backups are listed: copies of the store's index objects (§3.3). */
export interface IndexCache {
  names(): Promise<string[]>;
  get(name: string): Promise<Uint8Array | null>;
  put(name: string, sealed: Uint8Array): Promise<void>;
  delete(name: string): Promise<void>;
}

/** The union of the store's index objects (§3.3): where each blob is. */
export class BlobIndex {
  /** Blob id -> where it is: the index's own blob records where they carry their pack (one object per blob). */
  private readonly blobs = new Map<string, BlobLocation>();
  /** Pack id -> its blobs, as the index objects list them. */
  readonly packs = new Map<string, PackEntry>();
  /** The index objects this was built from. */
  readonly objects: string[] = [];
  /** Pack id -> its object name, made once per pack rather than once per blob read. */
  private readonly names = new Map<string, string>();

  add(pack: PackEntry): void {
    if (!this.packs.has(pack.id)) this.packs.set(pack.id, pack);
    for (const b of pack.blobs) {
      if (this.blobs.has(b.id)) continue;
      this.blobs.set(b.id, b.pack === pack.id ? (b as BlobLocation) : { pack: pack.id, offset: b.offset, sealedLength: b.sealedLength, plainLength: b.plainLength });
    }
  }

  /** The object name of pack `id`. */
  packName(id: string): string {
    let name = this.names.get(id);
    if (name === undefined) this.names.set(id, (name = packName(id)));
    return name;
  }

  get(id: string): BlobLocation | undefined {
    return this.blobs.get(id);
  }

  has(id: string): boolean {
    return this.blobs.has(id);
  }

  get size(): number {
    return this.blobs.size;
  }

  /** §9.2: blobs of condemned packs count as absent (copies in other packs stay usable). */
  exclude(packIds: Set<string>): void {
    if (packIds.size === 0) return;
    for (const id of packIds) this.packs.delete(id);
    this.blobs.clear();
    for (const p of this.packs.values()) this.add(p);
  }
}

/** A backup repository in a Storage, opened with its key: {@link Repository.init} makes one in an empty store, {@link Repository.open} opens an existing one (checking the key). Pass it to backup, restore, verify, forget, prune and migrate. */
export class Repository {
  readonly backupId: Uint8Array;
  private constructor(
    readonly storage: Storage,
    readonly crypto: CryptoProvider,
    readonly keys: DerivedKeys,
    readonly config: RepoConfig,
  ) {
    this.backupId = fromHex(config.backupId);
  }

  get version(): 1 | 2 {
    return this.config.version;
  }

  get packSize(): number {
    return this.config.packSize ?? DEFAULT_PACK_SIZE;
  }

  /** Creates a new (version 2) repository in an empty store (§2). */
  static async init(
    storage: Storage,
    crypto: CryptoProvider,
    key: SecretKey,
    options: { chunkSize?: number; packSize?: number; backupId?: Uint8Array } = {},
  ): Promise<Repository> {
    const keys = await deriveKeys(crypto, key);
    const backupId = options.backupId ?? crypto.randomBytes(16);
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 4096 || chunkSize > 64 * 1024 * 1024 || chunkSize % 4096 !== 0) {
      throw new TypeError('chunkSize must be a multiple of 4096 between 4 KiB and 64 MiB');
    }
    if (!Number.isSafeInteger(packSize) || packSize < 64 * 1024 || packSize > 256 * 1024 * 1024) throw new TypeError('packSize must be between 64 KiB and 256 MiB');
    const config = await Repository.makeConfig(crypto, keys, backupId, chunkSize, DEFAULT_SEGMENT_SIZE, packSize);
    try {
      await storageCall(storage, 'writing the config', () => storage.put(CONFIG, utf8(JSON.stringify(config) + '\n')));
    } catch (e) {
      if (e instanceof ObjectExistsError) throw new ConflictError(`${storage.label} already holds a backup`);
      throw e;
    }
    await storageCall(storage, 'flush', () => storage.flush());
    return new Repository(storage, crypto, keys, config);
  }

  /** The same store and keys under another config: a migration's version 2 config (§10.2). */
  withConfig(config: RepoConfig): Repository {
    return new Repository(this.storage, this.crypto, this.keys, config);
  }

  /** A version 2 config with its MAC (§2). */
  static async makeConfig(crypto: CryptoProvider, keys: DerivedKeys, backupId: Uint8Array, chunkSize: number, segmentSize: number, packSize: number): Promise<RepoConfig> {
    const body: RepoConfig = {
      format: 'coffer-backup', version: 2, backupId: toHex(backupId), chunkSize, segmentSize, packSize,
      keyCheck: toHex(await keyCheckValue(crypto, keys, backupId)),
    };
    return { ...body, mac: toHex(await configMac(crypto, keys, body)) };
  }

  /** Reads and checks the shape of the config, without a key (for status and error messages). */
  static async readConfig(storage: Storage, name: string = CONFIG): Promise<RepoConfig> {
    let raw: Uint8Array;
    try {
      raw = await readBounded(storage, name, MAX_CONFIG_BYTES);
    } catch (e) {
      if (e instanceof DamagedBackupError && e.reason === 'missing') {
        // §10.2: a migration killed between deleting `config` and writing it again.
        if (name === CONFIG && (await storageCall(storage, 'reading the config', () => storage.stat(CONFIG_V2)))) return Repository.readConfig(storage, CONFIG_V2);
        throw new UsageError(`${storage.label} holds no Coffer backup`, 'check the storage location, or run `coffer init` to start backing up there', { code: 'no-backup', cause: e });
      }
      if (e instanceof DamagedBackupError) throw new DamagedBackupError('config', name, { cause: e });
      throw e;
    }
    let c: RepoConfig;
    try {
      c = JSON.parse(fromUtf8(raw));
    } catch (e) {
      throw new DamagedBackupError('config', name, { cause: e });
    }
    if (c?.format !== 'coffer-backup') throw new DamagedBackupError('config', name);
    if (typeof c.version !== 'number' || c.version > REPO_VERSION) {
      throw new UnsupportedFormatError(`this backup uses format version ${String(c.version)}; this coffer reads versions 1 and ${REPO_VERSION}`);
    }
    if (
      (c.version !== 1 && c.version !== 2) ||
      !/^[0-9a-f]{32}$/.test(c.backupId) || !/^[0-9a-f]{64}$/.test(c.keyCheck) ||
      !Number.isSafeInteger(c.chunkSize) || c.chunkSize < 4096 || c.chunkSize > 64 * 1024 * 1024 ||
      !Number.isSafeInteger(c.segmentSize) || c.segmentSize < 1024 || c.segmentSize > 16 * 1024 * 1024 ||
      (c.version === 2 &&
        (!Number.isSafeInteger(c.packSize) || c.packSize! < 64 * 1024 || c.packSize! > 256 * 1024 * 1024 || typeof c.mac !== 'string' || !/^[0-9a-f]{64}$/.test(c.mac)))
    ) {
      throw new DamagedBackupError('config', name);
    }
    return c;
  }

  /**
   * Opens an existing repository (§2): checks the key, tells a wrong key from a tampered key check,
   * checks the config's MAC, and, with `pinnedMac`, that the config is the one this device pinned.
   */
  static async open(storage: Storage, crypto: CryptoProvider, key: SecretKey, options: { pinnedMac?: string | null } = {}): Promise<Repository> {
    let config = await Repository.readConfig(storage);
    const keys = await deriveKeys(crypto, key);
    // §10.2: mid-migration, the version 2 config waits in config.v2.
    if (config.version === 1 && (await storageCall(storage, 'reading the config', () => storage.stat(CONFIG_V2)))) {
      const next = await Repository.readConfig(storage, CONFIG_V2).catch(() => null);
      if (next && next.backupId === config.backupId && next.mac && equalBytes(fromHex(next.mac), await configMac(crypto, keys, next))) config = next;
    }
    const repo = new Repository(storage, crypto, keys, config);
    const keyMatches = equalBytes(await keyCheckValue(crypto, keys, repo.backupId), fromHex(config.keyCheck));
    if (!keyMatches) {
      if (await repo.keyOpensNewestManifest()) {
        throw new DamagedBackupError('config', CONFIG, { detail: "the config was altered: its key check does not match, but the key opens the store's backups" });
      }
      throw new WrongKeyError();
    }
    if (config.version === 2 && !equalBytes(fromHex(config.mac!), await configMac(crypto, keys, config))) {
      throw new DamagedBackupError('config', CONFIG, { detail: 'the config was altered (its MAC does not match)' });
    }
    if (options.pinnedMac && config.mac !== options.pinnedMac) {
      throw new DamagedBackupError('config', CONFIG, { detail: 'the config changed since this device connected to the store' });
    }
    return repo;
  }

  /** §2 step 2: the binding tag of the newest manifest, recomputed with this key, matches. */
  private async keyOpensNewestManifest(): Promise<boolean> {
    const refs = await this.manifests().catch(() => [] as ManifestRef[]);
    for (const ref of refs.slice(-3).reverse()) {
      const head = await this.storage.get(ref.name, { offset: 0, length: HEADER_BYTES }).catch(() => null);
      if (!head || head.length < HEADER_BYTES) continue;
      const tag = await expectedBindingTag(this.crypto, this.keys, this.manifestBinding(ref));
      if (equalBytes(head.subarray(24, 40), tag)) return true;
    }
    return false;
  }

  /* ----------------------------------------------------------------------------------------------
   * Manifests (§5, §6)
   * ------------------------------------------------------------------------------------------- */

  private manifestBinding(ref: { seq: number; writer: string | null }) {
    return { type: ObjectType.manifest, backupId: this.backupId, seq: ref.seq, writer: ref.writer } as const;
  }

  /** Every manifest name of this repository's version, oldest first (by seq, then name). */
  async manifests(): Promise<ManifestRef[]> {
    const names = await storageCall(this.storage, 'listing manifests', () => this.storage.list('manifests/'));
    return names
      .map(parseManifestName)
      .filter((r): r is ManifestRef => r !== null && (this.version === 1) === (r.writer === null))
      .sort((a, b) => a.seq - b.seq || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The manifest(s) with sequence number `seq`. */
  async find(seq: number): Promise<ManifestRef[]> {
    return (await this.manifests()).filter((r) => r.seq === seq);
  }

  /**
   * The newest manifest's seq, checked against the newest this device has seen (§6 rollback).
   * `null` when there is no backup yet.
   */
  async latest(lastSeenSeq: number | null | undefined, allowRollback = false): Promise<number | null> {
    const all = await this.manifests();
    const newest = all.length ? all[all.length - 1]!.seq : null;
    if (!allowRollback && lastSeenSeq != null && (newest === null || newest < lastSeenSeq)) {
      throw new DamagedBackupError('rolled-back', undefined, {
        detail: `newest backup is #${newest ?? 'none'}, this device has seen #${lastSeenSeq}`,
      });
    }
    return newest;
  }

  /** Reads, authenticates and checks one manifest (§4.4, §5.1). */
  async readManifest(which: number | ManifestRef): Promise<Manifest> {
    const ref = typeof which === 'number' ? await this.only(which) : which;
    const sealed = await readBounded(this.storage, ref.name, sealedSize(MAX_MANIFEST_BYTES, this.config.segmentSize));
    return this.decodeManifest(ref, sealed);
  }

  /** Opens and checks a manifest's sealed bytes, read by the caller (§4.4, §5.1). */
  async decodeManifest(ref: ManifestRef, sealed: Uint8Array): Promise<Manifest> {
    const plain = await openObject(this.crypto, this.keys, this.manifestBinding(ref), sealed, ref.name, { segmentSize: this.config.segmentSize });
    return decodeManifest(plain, ref.name, { backupId: this.backupId, seq: ref.seq, writer: ref.writer, chunkSize: this.config.chunkSize });
  }

  /** The one manifest with sequence number `seq` (the newest of several, as §6 orders them). */
  private async only(seq: number): Promise<ManifestRef> {
    const refs = await this.find(seq);
    if (refs.length === 0) throw new DamagedBackupError('missing', manifestName(seq, this.version === 1 ? null : '?'.repeat(16)), { detail: `there is no backup #${seq}` });
    if (refs.length === 1) return refs[0]!;
    const found = await this.newestReadable({ among: refs });
    return found ? found.ref : refs[refs.length - 1]!;
  }

  /**
   * The newest manifest that opens (§4.4, §6): names that hold junk, damage or another backup's
   * manifest are skipped and reported. With `lastSeenSeq`, a fallback below what this device has
   * seen is `rolled-back` unless `allowRollback`. `null` when there is none.
   */
  async newestReadable(
    options: { among?: ManifestRef[]; lastSeenSeq?: number | null; allowRollback?: boolean } = {},
  ): Promise<{ ref: ManifestRef; manifest: Manifest; skipped: SkippedManifest[] } | null> {
    const refs = options.among ?? (await this.manifests());
    const skipped: SkippedManifest[] = [];
    // Newest seq first; within one seq (two devices at once), the latest createdAt wins.
    for (let i = refs.length - 1; i >= 0; ) {
      const seq = refs[i]!.seq;
      let best: { ref: ManifestRef; manifest: Manifest } | null = null;
      for (; i >= 0 && refs[i]!.seq === seq; i--) {
        const ref = refs[i]!;
        try {
          const manifest = await this.readManifest(ref);
          if (!best || manifest.header.createdAt > best.manifest.header.createdAt) best = { ref, manifest };
        } catch (e) {
          if (!(e instanceof DamagedBackupError)) throw e;
          skipped.push({ name: ref.name, seq, reason: e.reason, message: e.message });
        }
      }
      if (!best) continue;
      if (!options.allowRollback && options.lastSeenSeq != null && seq < options.lastSeenSeq && skipped.length > 0) {
        throw new DamagedBackupError('rolled-back', undefined, {
          detail: `${skipped.length === 1 ? 'backup' : 'backups'} #${skipped.map((k) => k.seq).join(', #')} ${skipped.length === 1 ? 'does' : 'do'} not open (${skipped[0]!.reason}), and #${seq} is older than #${options.lastSeenSeq}, which this device has seen`,
        });
      }
      return { ...best, skipped };
    }
    if (skipped.length) throw new DamagedBackupError(skipped[0]!.reason, skipped[0]!.name, { detail: `and none of the ${skipped.length} backups in the store opens` });
    return null;
  }

  /** SHA-256 of a manifest's sealed bytes, for the `parent` link of the next one (§5). */
  async manifestHash(ref: ManifestRef): Promise<string> {
    const sealed = await readBounded(this.storage, ref.name, sealedSize(MAX_MANIFEST_BYTES, this.config.segmentSize));
    return toHex(await this.crypto.sha256(sealed));
  }

  /** Writes a manifest (§5): version 2 under a name of its own writer; version 1 write-once by seq. */
  async writeManifest(manifest: Manifest, salt?: Uint8Array): Promise<ManifestRef> {
    const { seq } = manifest.header;
    const writer = this.version === 1 ? null : manifest.header.writer!;
    const ref: ManifestRef = { name: manifestName(seq, writer), seq, writer };
    const plain = encodeManifest(manifest);
    if (plain.length > MAX_MANIFEST_BYTES) {
      throw new CofferError('too-large', `this backup's list of files is larger than the ${MAX_MANIFEST_BYTES >> 20} MiB a manifest may hold`, { hint: 'back up fewer files at once (several folders, each with its own profile)' });
    }
    const sealed = await sealObject(this.crypto, this.keys, this.manifestBinding(ref), plain, {
      segmentSize: this.config.segmentSize,
      ...(salt ? { salt } : {}),
    });
    try {
      await storageCall(this.storage, `writing ${ref.name}`, () => this.storage.put(ref.name, sealed));
    } catch (e) {
      if (e instanceof ObjectExistsError) throw new ConflictError(`backup #${seq} was written by another backup at the same time`);
      throw e;
    }
    await storageCall(this.storage, 'flush', () => this.storage.flush());
    return ref;
  }

  /* ----------------------------------------------------------------------------------------------
   * The blob index (§3.3)
   * ------------------------------------------------------------------------------------------- */

  /** Reads the whole index: from `cache` where it holds an object, from the store otherwise. */
  async loadIndex(cache?: IndexCache): Promise<BlobIndex> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.loadIndexOnce(cache);
      } catch (e) {
        // §9.2: a prune replaced an index object between our listing and our read of it; list again.
        if (!(e instanceof DamagedBackupError && e.reason === 'missing') || attempt >= 3) throw e;
      }
    }
  }

  private async loadIndexOnce(cache?: IndexCache): Promise<BlobIndex> {
    const index = new BlobIndex();
    if (this.version === 1) return index;
    const names = (await storageCall(this.storage, 'listing the index', () => this.storage.list('index/'))).filter((n) => idOf(n, 'index'));
    const cached = new Set(cache ? await cache.names() : []);
    for (const name of cached) if (!names.includes(name)) await cache!.delete(name);
    for (const name of names.sort()) {
      let sealed = cached.has(name) ? await cache!.get(name) : null;
      let packs: PackEntry[] | null = sealed ? await this.openIndex(name, sealed).catch(() => null) : null;
      if (!packs) {
        sealed = await readBounded(this.storage, name, sealedSize(MAX_MANIFEST_BYTES, this.config.segmentSize));
        packs = await this.openIndex(name, sealed);
        await cache?.put(name, sealed);
      }
      for (const p of packs) index.add(p);
      index.objects.push(name);
    }
    return index;
  }

  private async openIndex(name: string, sealed: Uint8Array): Promise<PackEntry[]> {
    const plain = await openObject(this.crypto, this.keys, { type: ObjectType.index, id: idOf(name, 'index')! }, sealed, name, { segmentSize: this.config.segmentSize });
    return decodeIndex(plain, name);
  }

  /** Writes one index object listing `packs` (§3.3); returns its name. */
  async writeIndex(packs: PackEntry[], cache?: IndexCache): Promise<string> {
    const id = toHex(this.crypto.randomBytes(32));
    const name = indexName(id);
    const sealed = await sealObject(this.crypto, this.keys, { type: ObjectType.index, id }, encodeIndex(packs), { segmentSize: this.config.segmentSize });
    await storageCall(this.storage, `writing ${name}`, () => this.storage.put(name, sealed));
    await cache?.put(name, sealed);
    return name;
  }

  /**
   * Where blob `id` is (§3): in a pack by the index (version 2), or its own object (version 1).
   * `plainLength` is what the manifest says the chunk holds.
   */
  locate(index: BlobIndex, id: string, plainLength: number): { name: string; offset: number; sealedLength: number } {
    if (this.version === 1) return { name: dataObjectName(id), offset: 0, sealedLength: sealedSize(plainLength, this.config.segmentSize) };
    const loc = index.get(id);
    if (!loc) throw new DamagedBackupError('missing', dataObjectName(id), { detail: 'no pack holds it' });
    if (loc.plainLength !== plainLength || loc.sealedLength !== sealedSize(plainLength, this.config.segmentSize)) {
      throw new DamagedBackupError('corrupt', packName(loc.pack), { detail: 'the index disagrees with the manifest about a blob' });
    }
    return { name: index.packName(loc.pack), offset: loc.offset, sealedLength: loc.sealedLength };
  }
}

/** §2: the config's MAC, over its fields in a fixed order. */
async function configMac(crypto: CryptoProvider, keys: DerivedKeys, c: RepoConfig): Promise<Uint8Array> {
  const body = JSON.stringify({
    format: c.format, version: c.version, backupId: c.backupId, chunkSize: c.chunkSize, segmentSize: c.segmentSize, packSize: c.packSize, keyCheck: c.keyCheck,
  });
  return crypto.hmacSha256(keys.configMac, concat(CONFIG_MAC_LABEL, utf8(body)));
}
