/**
 * Everything the password paths need (the vault's OPAQUE client, the Juicebox realms client), in
 * one module that main.ts loads only when a command needs it: they carry WebAssembly and take
 * memory and start-up time that a backup with a recovery key should not pay.
 */
export { readPassword, recoverKey, vaultConnection } from './vault.js';
export { deleteFromRealms, openRealms, realmsStatus, recoverWithRealms, registerWithRealms } from './realms.js';
export { changePassword, deleteBackupKey, registerBackupKey, vaultStatus } from '@coffer/core/vault';
