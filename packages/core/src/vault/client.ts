// Vault client (spec/vault-protocol.md §7). Isomorphic: WebCrypto, @hpke/core, @serenity-kit/opaque,
// and an injectable fetch.

import * as opaque from '@serenity-kit/opaque';
import {
  InvalidVaultConfigError,
  KeyDestroyedError,
  NotRegisteredError,
  VaultBusyError,
  VaultProtocolError,
  VaultRequestRejectedError,
  VaultUnauthorizedError,
  VaultUnavailableError,
  WrongPasswordError,
} from './errors.js';
import {
  b64u,
  fromB64u,
  isRecord,
  isValidAccountId,
  MAX_REQUEST_BYTES,
  openRelease,
  openResponse,
  opaqueIdentifiers,
  parseRealmPublicKey,
  randomBytes,
  sealRequest,
  unwrapBackupKey,
  VAULT_PATH,
  wrapBackupKey,
  type InnerResponse,
  type RealmPublicKey,
  type VaultOp,
} from './protocol.js';

/**
 * Argon2id with almost no work. For tests only: a password registered with it can be guessed
 * offline at high speed by anyone holding the realm's secrets. Named so it cannot ship by accident.
 */
export const INSECURE_TEST_ONLY_FAST_KEY_STRETCHING = Object.freeze({
  'argon2id-custom': Object.freeze({ iterations: 1, memory: 8, parallelism: 1 }),
});

/** `memory-constrained` (the default) is Argon2id t=3, p=4, m=64 MiB (RFC 9106 §4). */
export type KeyStretching = 'memory-constrained' | 'rfc-recommended' | typeof INSECURE_TEST_ONLY_FAST_KEY_STRETCHING;

/** How to reach one vault realm for one account: URL, the pinned realm key, the account's token, and options. */
export interface VaultConnection {
  /** Base URL of the vault, e.g. `https://vault.example:8443`. */
  vaultUrl: string;
  /** The pinned realm public key, `coffer-realm-v1:...` as printed by `coffer vault init`. */
  realmPublicKey: string;
  /** The account token (JWT) from the app's auth server, or `coffer vault token`. */
  token: string;
  /** Transport; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Clock in unix milliseconds; defaults to Date.now. */
  now?: () => number;
  /** Must be the same for registration and recovery. Default `memory-constrained`. */
  keyStretching?: KeyStretching;
  /** Per-request timeout in milliseconds. Default 30 000. */
  timeoutMs?: number;
}

interface Checked {
  url: string;
  realm: RealmPublicKey;
  token: string;
  account: string;
  fetch: typeof fetch;
  now: () => number;
  keyStretching: KeyStretching;
  timeoutMs: number;
}

function accountFromToken(token: string): string {
  // The client reads `sub` only to bind it into its requests; the vault verifies the token.
  const parts = token.split('.');
  if (parts.length !== 3) throw new InvalidVaultConfigError('the vault token is not a JWT (three dot-separated parts)');
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder().decode(fromB64u(parts[1] as string)));
  } catch (cause) {
    throw new InvalidVaultConfigError('the vault token payload is not base64url JSON', { cause });
  }
  const sub = isRecord(payload) ? payload['sub'] : undefined;
  if (!isValidAccountId(sub)) throw new InvalidVaultConfigError('the vault token has no valid `sub` (account id)');
  return sub;
}

function check(c: VaultConnection): Checked {
  let url: URL;
  try {
    url = new URL(VAULT_PATH, c.vaultUrl);
  } catch (cause) {
    throw new InvalidVaultConfigError('the vault URL is not a valid URL', { cause });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InvalidVaultConfigError('the vault URL must be http(s)');
  if (url.username || url.password) throw new InvalidVaultConfigError('the vault URL must not contain credentials');
  let realm: RealmPublicKey;
  try {
    realm = parseRealmPublicKey(c.realmPublicKey);
  } catch (cause) {
    throw new InvalidVaultConfigError(`invalid realm public key: ${(cause as Error).message}`, { cause });
  }
  if (typeof c.token !== 'string' || c.token.length === 0) throw new InvalidVaultConfigError('a vault token is required');
  if (typeof (c.fetch ?? globalThis.fetch) !== 'function') throw new InvalidVaultConfigError('no fetch available; pass one');
  // Browsers refuse `fetch` called as a method of another object ("Illegal invocation").
  const f: typeof fetch = c.fetch ?? ((input, init) => globalThis.fetch(input, init));
  return {
    url: url.toString(),
    realm,
    token: c.token,
    account: accountFromToken(c.token),
    fetch: f,
    now: c.now ?? Date.now,
    keyStretching: c.keyStretching ?? 'memory-constrained',
    timeoutMs: c.timeoutMs ?? 30_000,
  };
}

async function call(c: Checked, op: VaultOp, body: Record<string, unknown>): Promise<InnerResponse> {
  const id = b64u(randomBytes(16));
  const sealed = await sealRequest(c.realm, { v: 1, op, id, ts: c.now(), realm: c.realm.realmIdText, account: c.account, body });
  if (sealed.body.length > MAX_REQUEST_BYTES) throw new VaultProtocolError('request larger than the protocol allows');
  let res: Response;
  try {
    res = await c.fetch(c.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/octet-stream' },
      body: sealed.body,
      signal: AbortSignal.timeout(c.timeoutMs),
    });
  } catch (cause) {
    const timedOut = (cause as { name?: unknown })?.name === 'TimeoutError';
    throw new VaultUnavailableError(timedOut ? `the vault did not answer within ${c.timeoutMs} ms` : 'could not reach the vault', { cause });
  }
  const bytes = new Uint8Array(await res.arrayBuffer().catch((cause: unknown) => {
    throw new VaultUnavailableError('the connection to the vault broke while reading its answer', { cause });
  }));
  if (res.status !== 200) {
    let code = 'unknown';
    let message = `HTTP ${res.status}`;
    try {
      const j: unknown = JSON.parse(new TextDecoder().decode(bytes));
      if (isRecord(j)) {
        if (typeof j['error'] === 'string') code = j['error'];
        if (typeof j['message'] === 'string') message = j['message'];
      }
    } catch {
      /* not JSON: keep the status line */
    }
    if (res.status === 401) throw new VaultUnauthorizedError(`the vault did not accept the token: ${message}`);
    if (res.status === 503 || res.status === 502 || res.status === 504) throw new VaultUnavailableError(`the vault is unavailable (${code}): ${message}`);
    if (res.status === 400 || res.status === 413) throw new VaultRequestRejectedError(code, message);
    throw new VaultUnavailableError(`the vault answered HTTP ${res.status} (${code})`);
  }
  let inner: InnerResponse;
  try {
    inner = await openResponse(sealed.context, sealed.enc, bytes);
  } catch (cause) {
    throw new VaultProtocolError('the vault answer could not be decrypted or parsed', { cause });
  }
  if (inner.id !== id) throw new VaultProtocolError('the vault answered a different request');
  if (inner.status === 'invalid') throw new VaultProtocolError(`the vault found the request invalid: ${String(inner['message'] ?? '')}`);
  return inner;
}

function str(r: InnerResponse, k: string): string {
  const v = r[k];
  if (typeof v !== 'string') throw new VaultProtocolError(`vault answer lacks ${k}`);
  return v;
}
function int(r: InnerResponse, k: string): number {
  const v = r[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new VaultProtocolError(`vault answer lacks ${k}`);
  return v;
}

function checkPassword(p: unknown, what = 'password'): string {
  if (typeof p !== 'string' || p.length === 0) throw new InvalidVaultConfigError(`the ${what} must be a non-empty string`);
  return p;
}

async function opaqueRegistration(c: Checked, password: string): Promise<{ ticket: string; registrationRecord: string; exportKey: Uint8Array }> {
  await opaque.ready;
  const start = opaque.client.startRegistration({ password });
  const r = await call(c, 'register-start', { registrationRequest: start.registrationRequest });
  if (r.status !== 'ok') throw new VaultProtocolError(`unexpected register-start status ${r.status}`);
  let fin;
  try {
    fin = opaque.client.finishRegistration({
      password,
      registrationResponse: str(r, 'registrationResponse'),
      clientRegistrationState: start.clientRegistrationState,
      identifiers: opaqueIdentifiers(c.realm.realmIdText, c.account),
      keyStretching: c.keyStretching,
    });
  } catch (cause) {
    throw new VaultProtocolError('the vault sent an invalid OPAQUE registration response', { cause });
  }
  return { ticket: str(r, 'ticket'), registrationRecord: fin.registrationRecord, exportKey: fromB64u(fin.exportKey) };
}

/** What the vault answered to a registration: the attempt limit and the guesses left. */
export interface RegisterResult {
  maxAttempts: number;
  guessesRemaining: number;
}

/** Registers (or replaces) the backup key K for the token's account, protected by `password`. */
export async function registerBackupKey(
  opts: VaultConnection & { password: string; backupKey: Uint8Array; maxAttempts?: number },
): Promise<RegisterResult> {
  const c = check(opts);
  const password = checkPassword(opts.password);
  if (!(opts.backupKey instanceof Uint8Array) || opts.backupKey.length !== 32) throw new InvalidVaultConfigError('the backup key must be 32 bytes');
  for (let attempt = 0; attempt < 4; attempt++) {
    const reg = await opaqueRegistration(c, password);
    const wrapped = await wrapBackupKey(reg.exportKey, c.realm.realmIdText, c.account, opts.backupKey);
    reg.exportKey.fill(0);
    const body: Record<string, unknown> = { ticket: reg.ticket, registrationRecord: reg.registrationRecord, wrappedKey: b64u(wrapped) };
    if (opts.maxAttempts !== undefined) body['maxAttempts'] = opts.maxAttempts;
    const r = await call(c, 'register-finish', body);
    if (r.status === 'ok') return { maxAttempts: int(r, 'maxAttempts'), guessesRemaining: int(r, 'guessesRemaining') };
    if (r.status !== 'conflict') throw new VaultProtocolError(`unexpected register-finish status ${r.status}`);
  }
  throw new VaultBusyError('the account record kept changing during registration');
}

async function login(
  c: Checked,
  password: string,
  action: 'recover' | 'change-password',
  change?: () => Promise<Record<string, unknown>>,
): Promise<{ response: InnerResponse; exportKey: Uint8Array; sessionKey: Uint8Array }> {
  await opaque.ready;
  for (let attempt = 0; attempt < 3; attempt++) {
    const start = opaque.client.startLogin({ password });
    const r1 = await call(c, 'login-start', { startLoginRequest: start.startLoginRequest });
    if (r1.status === 'destroyed') throw new KeyDestroyedError();
    if (r1.status !== 'ok') throw new VaultProtocolError(`unexpected login-start status ${r1.status}`);
    const ticket = str(r1, 'ticket');
    const fin = opaque.client.finishLogin({
      clientLoginState: start.clientLoginState,
      loginResponse: str(r1, 'loginResponse'),
      password,
      identifiers: opaqueIdentifiers(c.realm.realmIdText, c.account),
      keyStretching: c.keyStretching,
    });
    if (!fin) {
      // Wrong password (or no record): the attempt is already counted. Tell the vault, so it can
      // answer authoritatively and destroy the record at once if this was the last guess.
      const r2 = await call(c, 'login-finish', { ticket, finishLoginRequest: null, action });
      return throwFailure(r2);
    }
    const exportKey = fromB64u(fin.exportKey);
    const sessionKey = fromB64u(fin.sessionKey);
    const body: Record<string, unknown> = { ticket, finishLoginRequest: fin.finishLoginRequest, action };
    if (change) body['change'] = await change();
    const r2 = await call(c, 'login-finish', body);
    if (r2.status === 'ok') return { response: r2, exportKey, sessionKey };
    exportKey.fill(0);
    sessionKey.fill(0);
    if (r2.status === 'ticket-expired') continue;
    return throwFailure(r2);
  }
  throw new VaultBusyError('the login kept expiring; check the device clock');
}

function throwFailure(r: InnerResponse): never {
  switch (r.status) {
    case 'wrong-password':
      throw new WrongPasswordError(int(r, 'guessesRemaining'));
    case 'destroyed':
      throw new KeyDestroyedError();
    case 'not-registered':
      throw new NotRegisteredError();
    default:
      throw new VaultProtocolError(`unexpected vault status ${r.status}`);
  }
}

/**
 * Recovers K with the password. Each call with a wrong password costs one guess.
 * @throws WrongPasswordError (with guessesRemaining), KeyDestroyedError, NotRegisteredError,
 *   VaultUnavailableError, VaultUnauthorizedError, VaultRequestRejectedError, VaultProtocolError
 */
export async function recoverBackupKey(opts: VaultConnection & { password: string }): Promise<Uint8Array> {
  const c = check(opts);
  const password = checkPassword(opts.password);
  const { response, exportKey, sessionKey } = await login(c, password, 'recover');
  try {
    const wrapped = await openRelease(sessionKey, response.id, fromB64u(str(response, 'released')));
    return await unwrapBackupKey(exportKey, c.realm.realmIdText, c.account, wrapped);
  } catch (cause) {
    if (cause instanceof VaultProtocolError) throw cause;
    throw new VaultProtocolError('the released key could not be decrypted', { cause });
  } finally {
    exportKey.fill(0);
    sessionKey.fill(0);
  }
}

/**
 * Changes the password after a successful login in the same exchange. If `backupKey` is not
 * given it is recovered first (one more login).
 */
export async function changePassword(
  opts: VaultConnection & { password: string; newPassword: string; backupKey?: Uint8Array; maxAttempts?: number },
): Promise<RegisterResult> {
  const c = check(opts);
  const password = checkPassword(opts.password);
  const newPassword = checkPassword(opts.newPassword, 'new password');
  const backupKey = opts.backupKey ?? (await recoverBackupKey(opts));
  if (backupKey.length !== 32) throw new InvalidVaultConfigError('the backup key must be 32 bytes');
  const { response, exportKey, sessionKey } = await login(c, password, 'change-password', async () => {
    const reg = await opaqueRegistration(c, newPassword);
    const wrapped = await wrapBackupKey(reg.exportKey, c.realm.realmIdText, c.account, backupKey);
    reg.exportKey.fill(0);
    const change: Record<string, unknown> = { registrationRecord: reg.registrationRecord, wrappedKey: b64u(wrapped) };
    if (opts.maxAttempts !== undefined) change['maxAttempts'] = opts.maxAttempts;
    return change;
  });
  exportKey.fill(0);
  sessionKey.fill(0);
  return { maxAttempts: int(response, 'maxAttempts'), guessesRemaining: int(response, 'guessesRemaining') };
}

/**
 * Deletes the account's record (turns password backups off). The delete names the registration
 * that `status` reported (spec §7.5), so it never removes a registration made after it was sent.
 */
export async function deleteBackupKey(opts: VaultConnection): Promise<{ deleted: boolean }> {
  const c = check(opts);
  for (let attempt = 0; attempt < 3; attempt++) {
    const s = await call(c, 'status', {});
    if (s.status !== 'ok') throw new VaultProtocolError(`unexpected status status ${s.status}`);
    if (typeof s['recordId'] !== 'string') return { deleted: false };
    const r = await call(c, 'delete', { recordId: s['recordId'] });
    if (r.status === 'ok') return { deleted: r['deleted'] === true };
    if (r.status !== 'conflict') throw new VaultProtocolError(`unexpected delete status ${r.status}`);
  }
  throw new VaultBusyError('the account was registered again while it was being deleted');
}

/** Whether an account has a key in the vault (spec/vault-protocol.md §7.6), and its guesses. */
export interface VaultStatus {
  registered: boolean;
  /** The attempt limit was reached and the key destroyed (only ever told to the account itself). */
  destroyed?: boolean;
  guessesRemaining?: number;
  maxAttempts?: number;
}

/** Whether the token's account has a key in the vault, and how many guesses remain. */
export async function vaultStatus(opts: VaultConnection): Promise<VaultStatus> {
  const c = check(opts);
  const r = await call(c, 'status', {});
  if (r.status !== 'ok') throw new VaultProtocolError(`unexpected status status ${r.status}`);
  if (r['registered'] !== true) return r['destroyed'] === true ? { registered: false, destroyed: true } : { registered: false };
  return { registered: true, guessesRemaining: int(r, 'guessesRemaining'), maxAttempts: int(r, 'maxAttempts') };
}
