/**
 * One error model for every Coffer package: every error a caller can act on is a {@link CofferError}
 * with a stable `code`, a `message` without secrets, a `hint` that says what to do next, the `cause`
 * it wraps, and the `exitCode` a command line tool exits with (README "Exit codes").
 */

/**
 * The exit codes of `coffer` and `coffer vault` (README "Exit codes"): stable, so scripts can act
 * on them. Each {@link CofferError} names one in `exitCode`.
 */
export const ExitCode = {
  /** Success. */
  ok: 0,
  /** An unexpected failure (a bug, or an error with no better code). */
  failure: 1,
  /** Bad usage: unknown flag, malformed input, a target that is not empty, no profile. */
  usage: 2,
  /** Wrong key or wrong password. */
  wrongKey: 3,
  /** Damaged backup: truncated, corrupt, misplaced or missing object, rolled-back store. */
  damaged: 4,
  /** The store is unreachable or refused us. */
  storage: 5,
  /** The vault destroyed the key after too many wrong passwords. */
  keyDestroyed: 6,
  /** The vault is unreachable or refused the request. */
  vault: 7,
  /** The backup completed, but left files out or stored files that kept changing (spec/format.md §6.2). */
  incomplete: 8,
  /** The local disk refused a restore's writes: full, read-only or no permission. */
  localDisk: 9,
} as const;

/** What a {@link CofferError} carries besides its code and message. */
export interface CofferErrorOptions {
  /** The error this one wraps (kept, never lost). */
  cause?: unknown;
  /** What to do next, for a person. */
  hint?: string | undefined;
  /** The exit code for a command line tool (default {@link ExitCode}.failure). */
  exitCode?: number;
}

/**
 * The base of every error Coffer throws on purpose, in every package. `code` is stable (match on it
 * or on the class, never on the message); `hint` says what to do next; `cause` is kept; `exitCode`
 * is what `coffer` exits with. Messages and hints never contain secrets.
 */
export class CofferError extends Error {
  override name = 'CofferError';
  /** A stable, machine-readable code such as `wrong-key` or `storage-unavailable`. */
  readonly code: string;
  /** What to do next, for a person; `undefined` when there is nothing useful to say. */
  readonly hint: string | undefined;
  /** The exit code a command line tool exits with for this error (README "Exit codes"). */
  readonly exitCode: number;
  constructor(code: string, message: string, options?: CofferErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options?.hint;
    this.exitCode = options?.exitCode ?? ExitCode.failure;
  }

  /** The JSON form of the error (`coffer --json` prints it as `error`): no stack, no cause. */
  toJSON(): { code: string; name: string; message: string; hint?: string; exitCode: number } {
    return { code: this.code, name: this.name, message: this.message, ...(this.hint ? { hint: this.hint } : {}), exitCode: this.exitCode };
  }
}

/** The given key (recovery key or K) does not open this backup. */
export class WrongKeyError extends CofferError {
  override name = 'WrongKeyError';
  constructor(options?: { cause?: unknown }) {
    super('wrong-key', 'this key does not open this backup', {
      ...options,
      exitCode: ExitCode.wrongKey,
      hint: 'check the recovery key digit by digit; it is the 64-digit key shown when backups were turned on',
    });
  }
}

/** Why stored data failed a check (spec/format.md §4.4). */
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
      exitCode: ExitCode.damaged,
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

/** The backup uses a format version (or feature) this code does not read. */
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
    super('storage-unavailable', message, { cause: options?.cause, hint: options?.hint ?? 'check that the storage location exists and is reachable, then try again', exitCode: ExitCode.storage });
  }
}

/** A Storage put (or writer commit) found its name taken: objects are write-once (spec/format.md §7). */
export class ObjectExistsError extends CofferError {
  override name = 'ObjectExistsError';
  constructor(readonly object: string) {
    super('exists', `object ${object} already exists`);
  }
}

/** A Storage get of a name that holds no object. */
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

/**
 * Bad input from the caller: a usage error (exit code 2). `code` is `usage` unless a more precise
 * one is given (`no-profile`, `target-not-empty`, ...).
 */
export class UsageError extends CofferError {
  override name = 'UsageError';
  constructor(message: string, hint?: string, options?: { code?: string; cause?: unknown }) {
    super(options?.code ?? 'usage', message, { hint, cause: options?.cause, exitCode: ExitCode.usage });
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
    super(`local-${reason}`, `cannot write ${path}: ${what}`, { cause: options?.cause, hint, exitCode: ExitCode.localDisk });
  }
}
