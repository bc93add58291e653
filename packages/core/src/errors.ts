/**
 * Errors a caller can act on. Every error has a stable `code`, a `hint` that says what to do next,
 * and keeps its `cause`. Messages never contain secrets.
 */

export class CofferError extends Error {
  override name = 'CofferError';
  readonly code: string;
  readonly hint: string | undefined;
  constructor(code: string, message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options?.hint;
  }
}

/** The given key (recovery key or K) does not open this backup. */
export class WrongKeyError extends CofferError {
  override name = 'WrongKeyError';
  constructor(options?: { cause?: unknown }) {
    super('wrong-key', 'this key does not open this backup', {
      ...options,
      hint: 'check the recovery key digit by digit; it is the 64-digit key shown when backups were turned on',
    });
  }
}

export type DamageReason = 'truncated' | 'corrupt' | 'misplaced' | 'rolled-back' | 'missing' | 'config';

const damageText: Record<DamageReason, string> = {
  truncated: 'was cut short',
  corrupt: 'is damaged (its contents do not authenticate)',
  misplaced: 'holds another object than its name says (swapped, or from another backup)',
  'rolled-back': 'is older than a backup this device has already seen (the store was rolled back)',
  missing: 'is missing',
  config: 'has an unreadable repository config',
};

/** Stored data failed an integrity check. `object` names the stored object, never its content. */
export class DamagedBackupError extends CofferError {
  override name = 'DamagedBackupError';
  readonly reason: DamageReason;
  readonly object: string | undefined;
  readonly detail: string | undefined;
  constructor(reason: DamageReason, object?: string, options?: { cause?: unknown; detail?: string }) {
    const what = object === undefined ? 'the backup' : `object ${object}`;
    super('damaged', `${what} ${damageText[reason]}${options?.detail ? `: ${options.detail}` : ''}`, {
      cause: options?.cause,
      hint:
        reason === 'rolled-back'
          ? 'the store may have been restored from an old copy; restore with --allow-rollback only if you trust it'
          : 'run `coffer verify` to list every damaged object; earlier backups may still restore',
    });
    this.reason = reason;
    this.object = object;
    this.detail = options?.detail;
  }
}

export class UnsupportedFormatError extends CofferError {
  override name = 'UnsupportedFormatError';
  constructor(message: string) {
    super('unsupported', message, { hint: 'upgrade coffer to read this backup' });
  }
}

/** The store could not be reached or failed transiently; nothing was changed by us. */
export class StorageUnavailableError extends CofferError {
  override name = 'StorageUnavailableError';
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super('storage-unavailable', message, { cause: options?.cause, hint: options?.hint ?? 'check that the storage location exists and is reachable, then try again' });
  }
}

export class ObjectExistsError extends CofferError {
  override name = 'ObjectExistsError';
  constructor(readonly object: string) {
    super('exists', `object ${object} already exists`);
  }
}

export class ObjectNotFoundError extends CofferError {
  override name = 'ObjectNotFoundError';
  constructor(readonly object: string) {
    super('not-found', `object ${object} does not exist`);
  }
}

/** Another backup wrote the same sequence number at the same time. */
export class ConflictError extends CofferError {
  override name = 'ConflictError';
  constructor(message: string) {
    super('conflict', message, { hint: 'another backup of this repository ran at the same time; run the backup again' });
  }
}

/** Bad input from the caller: a usage error. */
export class UsageError extends CofferError {
  override name = 'UsageError';
  constructor(message: string, hint?: string) {
    super('usage', message, hint === undefined ? undefined : { hint });
  }
}

/**
 * Thrown by a BackupSource when a file or folder vanished between the scan and its read, or
 * cannot be read: the backup leaves it out and goes on (spec/format.md §6.2).
 */
export class SourceSkipError extends CofferError {
  override name = 'SourceSkipError';
  constructor(readonly path: string, readonly reason: 'vanished' | 'unreadable', options?: { cause?: unknown; detail?: string }) {
    super('source-skip', `${path} ${reason === 'vanished' ? 'vanished during the backup' : 'cannot be read'}${options?.detail ? ` (${options.detail})` : ''}`, { cause: options?.cause });
  }
}

/**
 * Thrown by a BackupSource's read after it yielded the last piece of a file, when the file
 * changed while it was read: the pieces may mix old and new bytes (spec/format.md §6.2).
 */
export class SourceChangedError extends CofferError {
  override name = 'SourceChangedError';
  constructor(readonly path: string) {
    super('source-changed', `${path} changed while it was read`);
  }
}

/**
 * The local disk refused a write during a restore (full, read-only, no permission). Nothing
 * half-restored is left behind.
 */
export class LocalDiskError extends CofferError {
  override name = 'LocalDiskError';
  constructor(readonly reason: 'full' | 'read-only' | 'permission' | 'name-too-long', path: string, options?: { cause?: unknown }) {
    const what = { full: 'the disk is full', 'read-only': 'the file system is read-only', permission: 'permission denied', 'name-too-long': 'the path is too long for this file system' }[reason];
    const hint = {
      full: 'free some space (or restore to another disk) and run the restore again; nothing was left behind',
      'read-only': 'restore into a folder on a writable disk',
      permission: 'restore into a folder you can write to, or fix its permissions',
      'name-too-long': 'restore into a folder with a shorter path',
    }[reason];
    super(`local-${reason}`, `cannot write ${path}: ${what}`, { cause: options?.cause, hint });
  }
}
