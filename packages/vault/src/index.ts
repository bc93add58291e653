// @coffer/vault: the Backup Key Vault server (spec/vault-protocol.md, spec/threat-model.md).
export { vaultCommand, type VaultCommandIo } from './cli.js';
export { buildServer, buildVaultServer, BODY_TIMEOUT_MS, DEFAULT_RATE_LIMITS, INSECURE_TEST_ONLY_PAUSE_ENV, type ServerOptions, type VaultRouteContext, type VaultServer } from './server.js';
export { Boundary, OpenedRequest, RequestRejectedError, type Answered, type Outcome } from './boundary.js';
export * as attempts from './attempts.js';
export { DEFAULT_POLICY, type AttemptPolicy, type Counted } from './attempts.js';
export { AccountLocks, commitStep, type CommitStepResult, type StepOutcome } from './commit.js';
export { RecordSealer } from './records.js';
export { TicketSealer, TICKET_TTL_MS, type TicketBase } from './tickets.js';
export { initRealm, openRealm, readRealmFile, REALM_FILE, RECORDS_FILE, type HsmChoice, type RealmFile } from './realm.js';
export { issueToken, verifyToken, audienceFor, type TokenSigner, type TokenVerifier } from './token.js';
export type { Hsm, HsmKind, KeyTransport } from './hsm/types.js';
export { Pkcs11Hsm, type Pkcs11Options } from './hsm/pkcs11.js';
export { SoftwareHsmDevelopmentOnly, SOFTWARE_HSM_WARNING } from './hsm/software.js';
export { initSoftHsmToken, openSoftHsm, softHsmInstalled, type SoftHsmToken } from './hsm/softhsm.js';
export type { CommitOptions, CommitResult, RecordChange, RecordStore, StoredRecord } from './store/types.js';
export { SqliteRecordStore } from './store/sqlite.js';
export { PostgresRecordStore, migratePostgres, MIGRATIONS, SCHEMA_VERSION } from './store/postgres.js';
export * from './errors.js';
