// The Juicebox realm of a Coffer vault (spec/juicebox.md): the realm's phases, its route as a
// protocol of the vault server, its tokens.
export { JuiceboxRealm, JuiceboxRequestError, recordKey, type JuiceboxAnswer, type JuiceboxRealmOptions, type JuiceboxRecord } from './realm.js';
export { juiceboxProtocol, JUICEBOX_PATH, SESSION_LIFETIME_MS } from './route.js';
export { issueJuiceboxToken, juiceboxTokenRules, DEFAULT_KEY_VERSION, DEFAULT_TENANT, MAX_LIFETIME_S, type JuiceboxClaims } from './token.js';
export { noisePublicKeyFor, noiseStaticKey } from './keys.js';
