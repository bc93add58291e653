// Errors of the vault client: one class per failure, each with a hint for the user (STYLE.md 5),
// all of them CofferErrors (one error model across packages, ../errors.ts).
import { CofferError, ExitCode } from '../errors.js';
import type { VaultErrorCode } from './protocol.js';

/** The `code` of each vault client error. */
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

const exitCodes: Record<VaultClientErrorCode, number> = {
  'wrong-password': ExitCode.wrongKey,
  'key-destroyed': ExitCode.keyDestroyed,
  'invalid-vault-config': ExitCode.usage,
  'not-registered': ExitCode.vault,
  'vault-unavailable': ExitCode.vault,
  'vault-rejected-request': ExitCode.vault,
  'vault-unauthorized': ExitCode.vault,
  'vault-protocol': ExitCode.vault,
  'vault-busy': ExitCode.vault,
};

/** Base of all vault client errors (Backup Key Vault and Juicebox realms): a CofferError whose `hint` says what to do next. */
export class VaultClientError extends CofferError {
  declare readonly code: VaultClientErrorCode;
  declare readonly hint: string;
  constructor(code: VaultClientErrorCode, message: string, hint: string, options?: { cause?: unknown }) {
    super(code, message, { ...options, hint, exitCode: exitCodes[code] });
    this.name = 'VaultClientError';
  }
}

/** The password was wrong; `guessesRemaining` says how many tries are left before the key is destroyed. */
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

/** The vault destroyed the key after too many wrong passwords: it is gone for good. */
export class KeyDestroyedError extends VaultClientError {
  constructor(message = 'the backup key is gone for good: the vault destroyed it after too many wrong passwords') {
    super('key-destroyed', message, 'the backups protected by this key cannot be restored without the recovery key, if you saved one; start new backups with a new key');
    this.name = 'KeyDestroyedError';
  }
}

/** The account has no backup key in the vault. */
export class NotRegisteredError extends VaultClientError {
  constructor() {
    super('not-registered', 'this account has no backup key in the vault', 'check the account and the vault URL; if a key was registered, it may have been destroyed after too many wrong passwords');
    this.name = 'NotRegisteredError';
  }
}

/** The vault could not be reached, or answered that it is unavailable for now (HTTP 429, 5xx). */
export class VaultUnavailableError extends VaultClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('vault-unavailable', message, 'check the vault URL and your network connection, then try again later (if the vault received a login before the connection broke, that attempt was counted)', options);
    this.name = 'VaultUnavailableError';
  }
}

/** The vault is busy with other requests for this account; try again in a moment. */
export class VaultBusyError extends VaultClientError {
  constructor(message = 'the vault is busy with other requests for this account') {
    super('vault-busy', message, 'try again in a moment');
    this.name = 'VaultBusyError';
  }
}

/** The vault refused the request itself (HTTP 400: malformed, stale, replayed, undecryptable); `vaultCode` is its wire code. */
export class VaultRequestRejectedError extends VaultClientError {
  /** The vault's error code, e.g. `stale-request`. */
  readonly vaultCode: VaultErrorCode | string;
  constructor(vaultCode: VaultErrorCode | string, message: string) {
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

/** The vault refused the account token (HTTP 401): missing, expired or for another account. */
export class VaultUnauthorizedError extends VaultClientError {
  constructor(message: string) {
    super('vault-unauthorized', message, 'get a fresh token for this account from the app (tokens expire)');
    this.name = 'VaultUnauthorizedError';
  }
}

/** The vault answered something this client cannot use (a bug, another protocol version, or another realm key). */
export class VaultProtocolError extends VaultClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('vault-protocol', message, 'the vault answered something this client cannot use; check the realm public key and update the client or the vault', options);
    this.name = 'VaultProtocolError';
  }
}

/** The vault URL, realm key, token or realms configuration given to the client is not valid. */
export class InvalidVaultConfigError extends VaultClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('invalid-vault-config', message, 'check --vault, --realm-key and --token (the realm key is printed by `coffer vault init`)', options);
    this.name = 'InvalidVaultConfigError';
  }
}
