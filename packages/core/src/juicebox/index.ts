// @coffer/core/juicebox: the Juicebox protocol client and the wire and crypto it shares with the
// realm in @coffer/vault (spec/juicebox.md).
export { juiceboxDelete, juiceboxRecover, juiceboxRegister, juiceboxRegistrationStatus, accountInfo, juiceboxRecoverBackupKey, juiceboxRegisterBackupKey, type RealmRegistration, type JuiceboxConnection, type RecoverOptions, type RegisterOptions } from './client.js';
export { configurationToJson, guessBound, parseConfiguration, perRealmLimitFor, type JuiceboxConfiguration, type RealmConfig } from './config.js';
export { hashPin, INSECURE_TEST_ONLY_FAST_PIN_HASHING, STANDARD_2019, type PinHashingMode } from './pin.js';
/** The Juicebox protocol's cryptography shared with the realm (spec/juicebox.md §4-§5): OPRF, shares, commitments. */
export * as jbcrypto from './crypto.js';
/** The Juicebox wire format shared with the realm (spec/juicebox.md §6): CBOR messages and their checks. */
export * as wire from './wire.js';
/** The Noise NK channel of the Juicebox hardware wire (spec/juicebox.md §6). */
export * as noise from './noise.js';
