/**
 * `@coffer/core`: end-to-end encrypted backups that run in browsers and Node alike.
 *
 * The public surface, by task (spec/format.md is the normative text):
 *
 * - keys: {@link generateBackupKey}, {@link formatRecoveryKey}, {@link parseRecoveryKey}, {@link SecretKey};
 * - a repository in a store: {@link Repository.init} (create), {@link Repository.open} (open);
 * - {@link backup}, {@link restore} (with `onFile` and `priority`), {@link verify};
 * - retention: {@link forget}, {@link prune}; format upgrade: {@link migrate};
 * - the storage interface {@link Storage} and {@link MemoryStorage};
 * - one error model: {@link CofferError} and its subclasses, each with `code`, `hint` and `exitCode`.
 *
 * Subpaths: `@coffer/core/vault` (the Backup Key Vault client), `@coffer/core/juicebox` (the
 * Juicebox client), `@coffer/core/adapters` (for code that implements a Storage, a CryptoProvider or
 * runs the chunk codec on workers), `@coffer/core/testing` (the storage conformance suite and test
 * helpers).
 *
 * @packageDocumentation
 */
export { fromHex, toHex, wipe } from './bytes.js';
export { webCryptoProvider, type AeadKey, type CryptoProvider } from './crypto.js';
export {
  CofferError, ConflictError, DamagedBackupError, ExitCode, LocalDiskError, ObjectExistsError, ObjectNotFoundError, SourceChangedError, SourceSkipError,
  StorageUnavailableError, UnsupportedFormatError, UsageError, WrongKeyError, type CofferErrorOptions, type DamageReason,
} from './errors.js';
export { formatRecoveryKey, generateBackupKey, KEY_BYTES, parseRecoveryKey, SecretKey } from './keys.js';
export type { EntryKind, TreeEntry } from './manifest.js';
export type { ChunkCodec } from './codec.js';
export { checkObjectName, MemoryStorage, type ByteRange, type ObjectWriter, type Storage } from './storage.js';
export { DEFAULT_CHUNK_SIZE, DEFAULT_PACK_SIZE, Repository, REPO_VERSION, type IndexCache, type RepoConfig, type SkippedManifest } from './repo.js';
export {
  backup, restore, restoreOrder, verify, type BackupOptions, type BackupResult, type BackupSource, type FileSink, type Progress, type RestoreOptions,
  type RestoreResult, type RestoreTarget, type SkippedFile, type VerifyOptions, type VerifyResult,
} from './engine.js';
export type { LockInfo } from './journal.js';
export {
  DEFAULT_MAX_UNUSED, forget, prune, type BackupSummary, type ForgetOptions, type ForgetResult, type KeepReason, type PruneOptions, type PruneResult,
  type RetentionPolicy,
} from './maintenance.js';
export { migrate, type MigrateDamage, type MigrateOptions, type MigrateProgress, type MigrateResult } from './migrate.js';
