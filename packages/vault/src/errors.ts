// Vault server errors: one class per failure, with `hint` and `cause` (STYLE.md 5).
// Messages never contain secrets: no key material, passwords, tokens or plaintext records.

export class VaultServerError extends Error {
  readonly hint: string;
  constructor(message: string, hint: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaultServerError';
    this.hint = hint;
  }
}

/** AES-GCM tag check failed: wrong key, wrong AAD (account/version), or tampered data. */
export class UnsealFailedError extends VaultServerError {
  constructor(what: string, options?: { cause?: unknown }) {
    super(`unseal failed: ${what} is corrupted, was tampered with, or belongs to another account, version or key`, 'restore the data from a trusted source; do not retry with the same input', options);
    this.name = 'UnsealFailedError';
  }
}

export class HsmKeyNotFoundError extends VaultServerError {
  constructor(label: string) {
    super(`no HSM key with label "${label}"`, 'run `coffer vault init` against this HSM, or point the vault at the token that holds the realm key');
    this.name = 'HsmKeyNotFoundError';
  }
}

export class HsmKeyExistsError extends VaultServerError {
  constructor(label: string) {
    super(`an HSM key with label "${label}" already exists`, 'choose another label, or reuse the existing realm instead of initialising a new one');
    this.name = 'HsmKeyExistsError';
  }
}

export class HsmUnavailableError extends VaultServerError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.hint ?? 'check the PKCS#11 module path, SOFTHSM2_CONF, the token label and the PIN (run scripts/setup.sh to install SoftHSM2)', options);
    this.name = 'HsmUnavailableError';
  }
}

/** A key that may not leave its token was asked to (locked by `hsm lock-export`, or never exportable). */
export class HsmKeyLockedError extends VaultServerError {
  constructor(message: string, options: { cause?: unknown; hint: string }) {
    super(message, options.hint, options);
    this.name = 'HsmKeyLockedError';
  }
}

export class RealmConfigError extends VaultServerError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(
      message,
      options?.hint ?? 'check --data-dir; on the first node run `coffer vault init --data-dir DIR`, on a further node of a realm the key ceremony (`coffer vault hsm transport-key`, then `import-wrapped`)',
      options,
    );
    this.name = 'RealmConfigError';
  }
}

export class InvalidTokenError extends VaultServerError {
  constructor(reason: string) {
    super(`invalid account token: ${reason}`, 'get a fresh token from the app (or `coffer vault token --account ID` in development)');
    this.name = 'InvalidTokenError';
  }
}

export class RecordStoreError extends VaultServerError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.hint ?? 'check the database (file, permissions and free disk space; or the PostgreSQL server and its URL)', options);
    this.name = 'RecordStoreError';
  }
}

/** The database already belongs to another realm (spec/vault-protocol.md §9.1). */
export class DatabaseRealmMismatchError extends RecordStoreError {
  constructor(boundTo: string, mine: string) {
    super(`this database belongs to realm ${boundTo}, not to this node's realm ${mine}`, {
      hint: 'give every realm a database of its own (--database, or DIR/records.sqlite); the nodes of one realm share one, made by `coffer vault init` or the key ceremony',
    });
    this.name = 'DatabaseRealmMismatchError';
  }
}

export class UsageError extends VaultServerError {
  constructor(message: string, hint = 'run `coffer vault --help`') {
    super(message, hint);
    this.name = 'UsageError';
  }
}
