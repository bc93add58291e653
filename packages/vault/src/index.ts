/**
 * `@coffer/vault`: the Backup Key Vault server (spec/vault-protocol.md, spec/threat-model.md), to
 * embed in a process of your own: make or open a realm, pick a record store and an HSM, build the
 * HTTP server, and issue or verify account tokens. `coffer vault` (subpath `@coffer/vault/cli`) is
 * the same as a command; the conformance suites for new HSMs and record stores are in
 * `@coffer/vault/testing`.
 *
 * @packageDocumentation
 */
export { buildVaultServer, BODY_TIMEOUT_MS, DEFAULT_RATE_LIMITS, type ServerOptions, type VaultProtocol, type VaultServer } from './server.js';
export { Boundary, type Answered } from './boundary.js';
export { DEFAULT_POLICY, type AttemptPolicy } from './attempts.js';
export { initRealm, openRealm, readRealmFile, REALM_FILE, RECORDS_FILE, type HsmChoice, type InitOptions, type OpenedRealm, type RealmFile } from './realm.js';
export { audienceFor, issueToken, verifyToken, type TokenSigner, type TokenVerifier } from './token.js';
export { issueJuiceboxToken } from './juicebox/token.js';
export { JuiceboxRealm, juiceboxProtocol, type JuiceboxRealmOptions } from './juicebox/index.js';
export type { Hsm, HsmKind, KeyTransport } from './hsm/types.js';
export { Pkcs11Hsm, type Pkcs11Options } from './hsm/pkcs11.js';
export { SoftwareHsmDevelopmentOnly, SOFTWARE_HSM_WARNING } from './hsm/software.js';
export { initSoftHsmToken, openSoftHsm, softHsmInstalled, type SoftHsmToken } from './hsm/softhsm.js';
export type { CommitOptions, CommitResult, RecordChange, RecordStore, StoredRecord } from './store/types.js';
export { SqliteRecordStore } from './store/sqlite.js';
export { migratePostgres, PostgresRecordStore, SCHEMA_VERSION } from './store/postgres.js';
export {
  DatabaseRealmMismatchError, HsmKeyExistsError, HsmKeyLockedError, HsmKeyNotFoundError, HsmUnavailableError, InvalidTokenError, RealmConfigError,
  RecordStoreError, UnsealFailedError, VaultServerError,
} from './errors.js';
