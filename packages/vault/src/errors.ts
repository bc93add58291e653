// Vault server errors: one class per failure, with `hint` and `cause` (STYLE.md 5), all of them
// CofferErrors (one error model across packages). Messages never contain secrets: no key
// material, passwords, tokens or plaintext records.
import { CofferError, ExitCode, UsageError } from '@coffer/core';

/** Bad input on the vault's command line or API: the one UsageError of every package. */
export { UsageError };

/**
 * Base of the vault server's errors: a CofferError with a `hint` for the operator. `coffer vault`
 * exits with its `exitCode` (docs/operating.md "Exit codes").
 */
export class VaultServerError extends CofferError {
  declare readonly hint: string;
  constructor(message: string, hint: string, options?: { cause?: unknown; code?: string; exitCode?: number }) {
    super(options?.code ?? 'vault-server', message, { cause: options?.cause, hint, exitCode: options?.exitCode ?? ExitCode.failure });
    this.name = 'VaultServerError';
  }
}

/** AES-GCM tag check failed: wrong key, wrong AAD (account/version), or tampered data. */
export class UnsealFailedError extends VaultServerError {
  constructor(what: string, options?: { cause?: unknown }) {
    super(`unseal failed: ${what} is corrupted, was tampered with, or belongs to another account, version or key`, 'restore the data from a trusted source; do not retry with the same input', { ...options, code: 'unseal-failed', exitCode: ExitCode.damaged });
    this.name = 'UnsealFailedError';
  }
}

/** The HSM holds no key under the realm's label. */
export class HsmKeyNotFoundError extends VaultServerError {
  constructor(label: string) {
    super(`no HSM key with label "${label}"`, 'run `coffer vault init` against this HSM, or point the vault at the token that holds the realm key', { code: 'hsm-key-not-found' });
    this.name = 'HsmKeyNotFoundError';
  }
}

/** The HSM already holds a key under the label a new realm wants. */
export class HsmKeyExistsError extends VaultServerError {
  constructor(label: string) {
    super(`an HSM key with label "${label}" already exists`, 'choose another label, or reuse the existing realm instead of initialising a new one', { code: 'hsm-key-exists' });
    this.name = 'HsmKeyExistsError';
  }
}

/** The HSM (PKCS#11 module, token, PIN) cannot be reached or refused to log in. */
export class HsmUnavailableError extends VaultServerError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.hint ?? 'check the PKCS#11 module path, SOFTHSM2_CONF, the token label and the PIN (run scripts/setup.sh to install SoftHSM2)', { cause: options?.cause, code: 'hsm-unavailable', exitCode: ExitCode.storage });
    this.name = 'HsmUnavailableError';
  }
}

/** A key that may not leave its token was asked to (locked by `hsm lock-export`, or never exportable). */
export class HsmKeyLockedError extends VaultServerError {
  constructor(message: string, options: { cause?: unknown; hint: string }) {
    super(message, options.hint, { cause: options.cause, code: 'hsm-key-locked' });
    this.name = 'HsmKeyLockedError';
  }
}

/** The realm's files are missing, unreadable or inconsistent (`--data-dir`, the realm file, the ceremony). */
export class RealmConfigError extends VaultServerError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(
      message,
      options?.hint ?? 'check --data-dir; on the first node run `coffer vault init --data-dir DIR`, on a further node of a realm the key ceremony (`coffer vault hsm transport-key`, then `import-wrapped`)',
      { cause: options?.cause, code: 'realm-config' },
    );
    this.name = 'RealmConfigError';
  }
}

/** An account token that does not verify (spec/vault-protocol.md §4). */
export class InvalidTokenError extends VaultServerError {
  constructor(reason: string) {
    super(`invalid account token: ${reason}`, 'get a fresh token from the app (or `coffer vault token --account ID` in development)', { code: 'invalid-token', exitCode: ExitCode.vault });
    this.name = 'InvalidTokenError';
  }
}

/** The record store (SQLite file or PostgreSQL) cannot be reached, refused us, or failed. */
export class RecordStoreError extends VaultServerError {
  constructor(message: string, options?: { cause?: unknown; hint?: string; exitCode?: number }) {
    super(message, options?.hint ?? 'check the database (file, permissions and free disk space; or the PostgreSQL server and its URL)', { cause: options?.cause, code: 'record-store', exitCode: options?.exitCode ?? ExitCode.storage });
    this.name = 'RecordStoreError';
  }
}

/** The database already belongs to another realm (spec/vault-protocol.md §9.1). */
export class DatabaseRealmMismatchError extends RecordStoreError {
  constructor(boundTo: string, mine: string) {
    super(`this database belongs to realm ${boundTo}, not to this node's realm ${mine}`, {
      hint: 'give every realm a database of its own (--database, or DIR/records.sqlite); the nodes of one realm share one, made by `coffer vault init` or the key ceremony',
      exitCode: ExitCode.usage,
    });
    this.name = 'DatabaseRealmMismatchError';
  }
}
