// @coffer/core/vault: the Backup Key Vault client and the shared wire protocol (spec/vault-protocol.md).
export {
  INSECURE_TEST_ONLY_FAST_KEY_STRETCHING,
  changePassword,
  deleteBackupKey,
  recoverBackupKey,
  registerBackupKey,
  vaultStatus,
  type KeyStretching,
  type RegisterResult,
  type VaultConnection,
  type VaultStatus,
} from './client.js';
export {
  InvalidVaultConfigError, KeyDestroyedError, NotRegisteredError, VaultBusyError, VaultClientError, VaultProtocolError, VaultRequestRejectedError,
  VaultUnauthorizedError, VaultUnavailableError, WrongPasswordError, type VaultClientErrorCode,
} from './errors.js';
/** The vault wire protocol shared by this client and the server (spec/vault-protocol.md): messages, channel, padding, error codes. Versioned by the spec, not by this package. */
export * as protocol from './protocol.js';
export {
  DEFAULT_MAX_ATTEMPTS, PROTOCOL_VERSION, VAULT_ERROR_CODES, formatRealmPublicKey, parseRealmPublicKey, type RealmPublicKey, type VaultErrorBody, type VaultErrorCode,
} from './protocol.js';
