/** A backup repository in a Storage: config, manifests, key check (spec/format.md §1, §2, §6). */
import { fromHex, fromUtf8, toHex, utf8 } from './bytes.js';
import type { CryptoProvider } from './crypto.js';
import { ConflictError, CofferError, DamagedBackupError, type DamageReason, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, UnsupportedFormatError } from './errors.js';
import { checkKey, deriveKeys, keyCheckValue, type DerivedKeys, type SecretKey } from './keys.js';
import { decodeManifest, encodeManifest, manifestName, MAX_MANIFEST_BYTES, parseManifestName, type Manifest } from './manifest.js';
import { DEFAULT_SEGMENT_SIZE, ObjectType, openObject, sealedSize, sealObject } from './object.js';
import type { Storage } from './storage.js';

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** The config is a short line of JSON; anything longer is not one (§4.4). */
const MAX_CONFIG_BYTES = 64 * 1024;

export interface RepoConfig {
  format: 'coffer-backup';
  version: 1;
  backupId: string;
  chunkSize: number;
  segmentSize: number;
  keyCheck: string;
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
 * Reads a whole object of at most `max` bytes with one ranged get of `max + 1`, so an object
 * larger than the format allows is reported as damage before anything is allocated for it (§4.4).
 */
export async function readBounded(storage: Storage, name: string, max: number, alloc?: (size: number) => Uint8Array): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await storageCall(storage, `reading ${name}`, () => storage.get(name, { offset: 0, length: max + 1 }, alloc));
  } catch (e) {
    if (e instanceof ObjectNotFoundError) throw new DamagedBackupError('missing', name, { cause: e });
    throw e;
  }
  if (bytes.length > max) throw new DamagedBackupError('corrupt', name, { detail: 'larger than the format allows' });
  return bytes;
}

/** A manifest name that did not open, and why (§4.4: junk under a manifest name). */
export interface SkippedManifest {
  seq: number;
  reason: DamageReason;
  message: string;
}

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

  /** Creates a new repository in an empty store (§2). */
  static async init(storage: Storage, crypto: CryptoProvider, key: SecretKey, options: { chunkSize?: number; backupId?: Uint8Array } = {}): Promise<Repository> {
    const keys = await deriveKeys(crypto, key);
    const backupId = options.backupId ?? crypto.randomBytes(16);
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 4096 || chunkSize > 64 * 1024 * 1024 || chunkSize % 4096 !== 0) {
      throw new TypeError('chunkSize must be a multiple of 4096 between 4 KiB and 64 MiB');
    }
    const config: RepoConfig = {
      format: 'coffer-backup',
      version: 1,
      backupId: toHex(backupId),
      chunkSize,
      segmentSize: DEFAULT_SEGMENT_SIZE,
      keyCheck: toHex(await keyCheckValue(crypto, keys, backupId)),
    };
    try {
      await storageCall(storage, 'writing the config', () => storage.put('config', utf8(JSON.stringify(config) + '\n')));
    } catch (e) {
      if (e instanceof ObjectExistsError) {
        throw new ConflictError(`${storage.label} already holds a backup`);
      }
      throw e;
    }
    await storageCall(storage, 'flush', () => storage.flush());
    return new Repository(storage, crypto, keys, config);
  }

  /** Reads the config without a key (for status and error messages). */
  static async readConfig(storage: Storage): Promise<RepoConfig> {
    let raw: Uint8Array;
    try {
      raw = await readBounded(storage, 'config', MAX_CONFIG_BYTES);
    } catch (e) {
      if (e instanceof DamagedBackupError && e.reason === 'missing') {
        throw new CofferError('no-backup', `${storage.label} holds no Coffer backup`, { cause: e, hint: 'check the storage location, or run `coffer init` to start backing up there' });
      }
      if (e instanceof DamagedBackupError) throw new DamagedBackupError('config', 'config', { cause: e });
      throw e;
    }
    let c: RepoConfig;
    try {
      c = JSON.parse(fromUtf8(raw));
    } catch (e) {
      throw new DamagedBackupError('config', 'config', { cause: e });
    }
    if (c?.format !== 'coffer-backup') throw new DamagedBackupError('config', 'config');
    if (typeof c.version !== 'number' || c.version > 1) throw new UnsupportedFormatError(`this backup uses format version ${String(c.version)}; this coffer reads version 1`);
    if (
      !/^[0-9a-f]{32}$/.test(c.backupId) || !/^[0-9a-f]{64}$/.test(c.keyCheck) ||
      !Number.isSafeInteger(c.chunkSize) || c.chunkSize < 4096 || c.chunkSize > 64 * 1024 * 1024 ||
      !Number.isSafeInteger(c.segmentSize) || c.segmentSize < 1024 || c.segmentSize > 16 * 1024 * 1024
    ) {
      throw new DamagedBackupError('config', 'config');
    }
    return c;
  }

  /** Opens an existing repository, checking the key first (keys.md §3): WrongKeyError on mismatch. */
  static async open(storage: Storage, crypto: CryptoProvider, key: SecretKey): Promise<Repository> {
    const config = await Repository.readConfig(storage);
    const keys = await deriveKeys(crypto, key);
    await checkKey(crypto, keys, fromHex(config.backupId), fromHex(config.keyCheck));
    return new Repository(storage, crypto, keys, config);
  }

  /** Sequence numbers of every manifest in the store, ascending. */
  async manifests(): Promise<number[]> {
    const names = await storageCall(this.storage, 'listing manifests', () => this.storage.list('manifests/'));
    return names.map(parseManifestName).filter((n): n is number => n !== null).sort((a, b) => a - b);
  }

  /**
   * The newest manifest's seq, checked against the newest this device has seen (§6 rollback).
   * `null` when there is no backup yet.
   */
  async latest(lastSeenSeq: number | null | undefined, allowRollback = false): Promise<number | null> {
    const all = await this.manifests();
    const newest = all.length ? all[all.length - 1]! : null;
    if (!allowRollback && lastSeenSeq != null && (newest === null || newest < lastSeenSeq)) {
      throw new DamagedBackupError('rolled-back', undefined, {
        detail: `newest backup is #${newest ?? 'none'}, this device has seen #${lastSeenSeq}`,
      });
    }
    return newest;
  }

  async readManifest(seq: number): Promise<Manifest> {
    const name = manifestName(seq);
    const sealed = await readBounded(this.storage, name, sealedSize(MAX_MANIFEST_BYTES, this.config.segmentSize));
    const plain = await openObject(this.crypto, this.keys, { type: ObjectType.manifest, backupId: this.backupId, seq }, sealed, name, {
      segmentSize: this.config.segmentSize,
    });
    return decodeManifest(plain, name, { backupId: this.backupId, seq, chunkSize: this.config.chunkSize });
  }

  /**
   * The newest manifest that opens, at or below `atMost` (§4.4): names that hold junk, damage or
   * another backup's manifest are skipped and reported. With `lastSeenSeq`, a fallback below
   * what this device has seen is `rolled-back` unless `allowRollback`. `null` when none opens.
   */
  async newestReadable(options: { atMost?: number; lastSeenSeq?: number | null; allowRollback?: boolean } = {}): Promise<{ manifest: Manifest; skipped: SkippedManifest[] } | null> {
    const seqs = (await this.manifests()).filter((s) => options.atMost === undefined || s <= options.atMost);
    const skipped: SkippedManifest[] = [];
    for (let i = seqs.length - 1; i >= 0; i--) {
      const seq = seqs[i]!;
      try {
        const manifest = await this.readManifest(seq);
        if (!options.allowRollback && options.lastSeenSeq != null && seq < options.lastSeenSeq && skipped.length > 0) {
          throw new DamagedBackupError('rolled-back', undefined, {
            detail: `${skipped.length === 1 ? 'backup' : 'backups'} #${skipped.map((k) => k.seq).join(', #')} ${skipped.length === 1 ? 'does' : 'do'} not open (${skipped[0]!.reason}), and #${seq} is older than #${options.lastSeenSeq}, which this device has seen`,
          });
        }
        return { manifest, skipped };
      } catch (e) {
        if (!(e instanceof DamagedBackupError) || e.reason === 'rolled-back') throw e;
        skipped.push({ seq, reason: e.reason, message: e.message });
      }
    }
    if (skipped.length) {
      throw new DamagedBackupError(skipped[0]!.reason, manifestName(skipped[0]!.seq), { detail: `and none of the ${skipped.length} backups in the store opens` });
    }
    return null;
  }

  /** Writes a manifest write-once (§6); a concurrent writer of the same seq gets ConflictError. */
  async writeManifest(manifest: Manifest, salt?: Uint8Array): Promise<void> {
    const seq = manifest.header.seq;
    const name = manifestName(seq);
    const plain = encodeManifest(manifest);
    if (plain.length > MAX_MANIFEST_BYTES) {
      throw new CofferError('too-large', `this backup's list of files is larger than the ${MAX_MANIFEST_BYTES >> 20} MiB a manifest may hold`, { hint: 'back up fewer files at once (several folders, each with its own profile)' });
    }
    const sealed = await sealObject(this.crypto, this.keys, { type: ObjectType.manifest, backupId: this.backupId, seq }, plain, {
      segmentSize: this.config.segmentSize,
      ...(salt ? { salt } : {}),
    });
    try {
      await storageCall(this.storage, `writing ${name}`, () => this.storage.put(name, sealed));
    } catch (e) {
      if (e instanceof ObjectExistsError) throw new ConflictError(`backup #${seq} was written by another backup at the same time`);
      throw e;
    }
    await storageCall(this.storage, 'flush', () => this.storage.flush());
  }
}

export const dataObjectName = (id: string): string => `data/${id}`;
