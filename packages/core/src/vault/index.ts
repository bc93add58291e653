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
export * from './errors.js';
export * as protocol from './protocol.js';
export { DEFAULT_MAX_ATTEMPTS, PROTOCOL_VERSION, formatRealmPublicKey, parseRealmPublicKey, type RealmPublicKey } from './protocol.js';
