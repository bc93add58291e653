/** A backup repository in a Storage: config, manifests, key check (spec/format.md §1, §2, §6). */
import { fromHex, fromUtf8, toHex, utf8 } from './bytes.js';
import type { CryptoProvider } from './crypto.js';
import { ConflictError, CofferError, DamagedBackupError, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, UnsupportedFormatError } from './errors.js';
import { checkKey, deriveKeys, keyCheckValue, type DerivedKeys, type SecretKey } from './keys.js';
import { decodeManifest, encodeManifest, manifestName, parseManifestName, type Manifest } from './manifest.js';
import { DEFAULT_SEGMENT_SIZE, ObjectType, openObject, sealObject } from './object.js';
import type { Storage } from './storage.js';

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

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
      raw = await storageCall(storage, 'reading the config', () => storage.get('config'));
    } catch (e) {
      if (e instanceof ObjectNotFoundError) {
        throw new CofferError('no-backup', `${storage.label} holds no Coffer backup`, { cause: e, hint: 'check the storage location, or run `coffer init` to start backing up there' });
      }
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
    let sealed: Uint8Array;
    try {
      sealed = await storageCall(this.storage, `reading ${name}`, () => this.storage.get(name));
    } catch (e) {
      if (e instanceof ObjectNotFoundError) throw new DamagedBackupError('missing', name, { cause: e });
      throw e;
    }
    const plain = await openObject(this.crypto, this.keys, { type: ObjectType.manifest, backupId: this.backupId, seq }, sealed, name, {
      segmentSize: this.config.segmentSize,
    });
    return decodeManifest(plain, name, { backupId: this.backupId, seq });
  }

  /** Writes a manifest write-once (§6); a concurrent writer of the same seq gets ConflictError. */
  async writeManifest(manifest: Manifest, salt?: Uint8Array): Promise<void> {
    const seq = manifest.header.seq;
    const name = manifestName(seq);
    const sealed = await sealObject(this.crypto, this.keys, { type: ObjectType.manifest, backupId: this.backupId, seq }, encodeManifest(manifest), {
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
