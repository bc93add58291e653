// Errors of the vault client: one class per failure, each with a hint for the user (STYLE.md 5).

export type VaultClientErrorCode =
  | 'wrong-password'
  | 'key-destroyed'
  | 'not-registered'
  | 'vault-unavailable'
  | 'vault-rejected-request'
  | 'vault-unauthorized'
  | 'vault-protocol'
  | 'vault-busy'
  | 'invalid-vault-config';

/** Base of all vault client errors. `hint` says what to do next. */
export class VaultClientError extends Error {
  readonly code: VaultClientErrorCode;
  readonly hint: string;
  constructor(code: VaultClientErrorCode, message: string, hint: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaultClientError';
    this.code = code;
    this.hint = hint;
  }
}

export class WrongPasswordError extends VaultClientError {
  readonly guessesRemaining: number;
  constructor(guessesRemaining: number) {
    super(
      'wrong-password',
      `wrong password: ${guessesRemaining} ${guessesRemaining === 1 ? 'guess remains' : 'guesses remain'} before the backup key is destroyed`,
      guessesRemaining > 0
        ? 'check the password (case, keyboard layout) before trying again; each wrong try is counted'
        : 'no guesses remain',
    );
    this.name = 'WrongPasswordError';
    this.guessesRemaining = guessesRemaining;
  }
}

export class KeyDestroyedError extends VaultClientError {
  constructor(message = 'the backup key is gone for good: the vault destroyed it after too many wrong passwords') {
    super('key-destroyed', message, 'the backups protected by this key cannot be restored without the recovery key, if you saved one; start new backups with a new key');
    this.name = 'KeyDestroyedError';
  }
}

export class NotRegisteredError extends VaultClientError {
  constructor() {
    super('not-registered', 'this account has no backup key in the vault', 'check the account and the vault URL; if a key was registered, it may have been destroyed after too many wrong passwords');
    this.name = 'NotRegisteredError';
  }
}

export class VaultUnavailableError extends VaultClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('vault-unavailable', message, 'check the vault URL and your network connection, then try again later (if the vault received a login before the connection broke, that attempt was counted)', options);
    this.name = 'VaultUnavailableError';
  }
}

export class VaultBusyError extends VaultClientError {
  constructor(message = 'the vault is busy with other requests for this account') {
    super('vault-busy', message, 'try again in a moment');
    this.name = 'VaultBusyError';
  }
}

export class VaultRequestRejectedError extends VaultClientError {
  /** The vault's error code, e.g. `stale-request`. */
  readonly vaultCode: string;
  constructor(vaultCode: string, message: string) {
    super(
      'vault-rejected-request',
      `the vault rejected the request (${vaultCode}): ${message}`,
      vaultCode === 'stale-request'
        ? "check this device's clock; the vault accepts requests within 2 minutes of its own time"
        : 'check that the realm public key matches the vault, and that client and vault speak the same protocol version',
    );
    this.name = 'VaultRequestRejectedError';
    this.vaultCode = vaultCode;
  }
}

export class VaultUnauthorizedError extends VaultClientError {
  constructor(message: string) {
    super('vault-unauthorized', message, 'get a fresh token for this account from the app (tokens expire)');
    this.name = 'VaultUnauthorizedError';
  }
}

export class VaultProtocolError extends VaultClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('vault-protocol', message, 'the vault answered something this client cannot use; check the realm public key and update the client or the vault', options);
    this.name = 'VaultProtocolError';
  }
}

export class InvalidVaultConfigError extends VaultClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('invalid-vault-config', message, 'check --vault, --realm-key and --token (the realm key is printed by `coffer vault init`)', options);
    this.name = 'InvalidVaultConfigError';
  }
}
