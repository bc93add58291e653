// The Juicebox client (spec/juicebox.md §5, §8, §9): register, recover and delete a secret across
// the realms of a configuration, speaking the software-realm wire to realms without a public key
// and the Noise hardware-realm wire to realms with one. Errors are the vault client's, so callers
// handle both vault protocols alike (WrongPasswordError with guessesRemaining, KeyDestroyedError...).

import { equalBytes, toHex, utf8, wipe } from '../bytes.js';
import { SecretKey } from '../keys.js';
import {
  InvalidVaultConfigError,
  KeyDestroyedError,
  NotRegisteredError,
  VaultBusyError,
  VaultClientError,
  VaultProtocolError,
  VaultUnauthorizedError,
  VaultUnavailableError,
  WrongPasswordError,
} from '../vault/errors.js';
import type { JuiceboxConfiguration, RealmConfig } from './config.js';
import {
  createShares,
  decryptSecret,
  dleqVerify,
  encryptedSecretCommitment,
  encryptSecret,
  mulBase,
  oprfBlind,
  oprfFinalize,
  oprfUnoblivious,
  pointFromBytes,
  randomScalar,
  recoverPoint,
  recoverScalar,
  scalarFromBytes,
  scalarToBytes,
  secretEncryptionKey,
  signPublicKeys,
  systemRandom,
  unlockKeyAndCommitment,
  unlockKeyTag,
  verifySignedPublicKey,
  type Point,
  type RandomSource,
} from './crypto.js';
import { clientHandshake, NoiseError, type NoiseTransport } from './noise.js';
import { hashPin } from './pin.js';
import {
  encodeClientRequest,
  encodeSecretsRequest,
  JUICEBOX_WIRE_VERSION,
  needsForwardSecrecy,
  parseClientResponse,
  parseSecretsResponse,
  unpadResponse,
  WireError,
  type SecretsRequest,
  type SecretsResponse,
} from './wire.js';

/** How to reach the realms of one Juicebox configuration for one account. */
export interface JuiceboxConnection {
  configuration: JuiceboxConfiguration;
  /** The bearer token for one realm, by realm id in hex (each realm is its token's audience). */
  token: (realmIdHex: string) => string | Promise<string>;
  /** Transport; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** Randomness (tests only). */
  random?: RandomSource;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_SESSION_ATTEMPTS = 4;

// ---------------------------------------------------------------- one realm

class RealmChannel {
  readonly #realm: RealmConfig;
  readonly #conn: JuiceboxConnection;
  readonly #fetch: typeof fetch;
  #session: { id: number; transport: NoiseTransport; expiresAt: number } | null = null;
  #lifetime = 0;
  readonly index: number;
  readonly idHex: string;

  constructor(realm: RealmConfig, index: number, conn: JuiceboxConnection) {
    this.#realm = realm;
    this.#conn = conn;
    // Browsers refuse `fetch` called as a method of another object.
    this.#fetch = conn.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.index = index;
    this.idHex = toHex(realm.id);
  }

  get realmId(): Uint8Array {
    return this.#realm.id;
  }

  async send(request: SecretsRequest): Promise<SecretsResponse> {
    return this.#realm.publicKey ? this.#sendHardware(request, this.#realm.publicKey) : this.#sendSoftware(request);
  }

  async #post(body: Uint8Array, headers: Record<string, string>): Promise<{ status: number; body: Uint8Array }> {
    const url = new URL('req', this.#realm.address).href;
    let res: Response;
    try {
      res = await this.#fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'x-juicebox-version': JUICEBOX_WIRE_VERSION, ...headers },
        body: body as Uint8Array<ArrayBuffer>,
        signal: AbortSignal.timeout(this.#conn.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      });
    } catch (cause) {
      throw new VaultUnavailableError(`realm ${this.idHex} at ${this.#realm.address} is unreachable`, { cause });
    }
    return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
  }

  #httpError(status: number): VaultClientError {
    if (status === 401) return new VaultUnauthorizedError(`realm ${this.idHex} refused the token (HTTP 401)`);
    if (status === 429) return new VaultBusyError(`realm ${this.idHex} is rate limiting this account (HTTP 429)`);
    if (status === 426) return new VaultProtocolError(`realm ${this.idHex} needs a newer client (HTTP 426)`);
    if (status === 400 || status === 413) return new VaultProtocolError(`realm ${this.idHex} rejected the request as malformed (HTTP ${status})`);
    return new VaultUnavailableError(`realm ${this.idHex} is unavailable (HTTP ${status})`);
  }

  async #sendSoftware(request: SecretsRequest): Promise<SecretsResponse> {
    const token = await this.#conn.token(this.idHex);
    const res = await this.#post(encodeSecretsRequest(request), { authorization: `Bearer ${token}` });
    if (res.status !== 200) throw this.#httpError(res.status);
    return parse(this.idHex, () => parseSecretsResponse(res.body));
  }

  async #sendHardware(request: SecretsRequest, publicKey: Uint8Array): Promise<SecretsResponse> {
    const plain = encodeSecretsRequest(request);
    for (let attempt = 0; attempt < MAX_SESSION_ATTEMPTS; attempt++) {
      if (this.#session && this.#session.expiresAt <= Date.now()) this.#session = null;
      if (!this.#session) {
        // Requests that need forward secrecy travel only in an established session (§9).
        const early = needsForwardSecrecy(request) ? new Uint8Array(0) : plain;
        const payload = await this.#handshake(publicKey, early);
        if (early.length > 0) return parse(this.idHex, () => unpadResponse(payload));
        if (payload.length !== 0) throw new VaultProtocolError(`realm ${this.idHex} answered an empty handshake with data`);
      }
      const s = this.#session!;
      const res = await this.#clientRequest(s.id, 'SecretsRequest', { transport: s.transport.encrypt(plain) });
      if ('error' in res) {
        this.#session = null;
        if (res.error === 'MissingSession') continue;
        throw this.#clientError(res.error);
      }
      if (!('transport' in res.ok)) throw new VaultProtocolError(`realm ${this.idHex} answered a transport message with a handshake`);
      const payload = this.#decrypt(s.transport, res.ok.transport);
      s.expiresAt = Date.now() + this.#lifetime;
      return parse(this.idHex, () => unpadResponse(payload));
    }
    throw new VaultUnavailableError(`realm ${this.idHex} kept losing the session; try again later`);
  }

  async #handshake(publicKey: Uint8Array, payload: Uint8Array): Promise<Uint8Array> {
    const random = this.#conn.random ?? systemRandom;
    const hs = clientHandshake(publicKey, payload, random);
    const id = new DataView(random(4).buffer).getUint32(0);
    const res = await this.#clientRequest(id, payload.length === 0 ? 'HandshakeOnly' : 'SecretsRequest', {
      handshake: { clientEphemeralPublic: hs.clientEphemeralPublic, payloadCiphertext: hs.payloadCiphertext },
    });
    if ('error' in res) throw this.#clientError(res.error);
    if (!('handshake' in res.ok)) throw new VaultProtocolError(`realm ${this.idHex} answered a handshake with a transport message`);
    let done: { transport: NoiseTransport; payload: Uint8Array };
    try {
      done = hs.finish(res.ok.handshake.serverEphemeralPublic, res.ok.handshake.payloadCiphertext);
    } catch (cause) {
      throw new VaultProtocolError(`realm ${this.idHex} failed the Noise handshake: is its public_key right?`, { cause });
    }
    this.#lifetime = res.ok.sessionLifetimeMs;
    this.#session = { id, transport: done.transport, expiresAt: Date.now() + res.ok.sessionLifetimeMs };
    return done.payload;
  }

  #decrypt(t: NoiseTransport, ciphertext: Uint8Array): Uint8Array {
    try {
      return t.decrypt(ciphertext);
    } catch (cause) {
      this.#session = null;
      throw new VaultProtocolError(`realm ${this.idHex} sent a response that does not decrypt`, { cause: cause instanceof NoiseError ? cause : undefined });
    }
  }

  async #clientRequest(sessionId: number, kind: 'HandshakeOnly' | 'SecretsRequest', encrypted: Parameters<typeof encodeClientRequest>[0]['encrypted']) {
    const authToken = await this.#conn.token(this.idHex);
    const res = await this.#post(encodeClientRequest({ realm: this.#realm.id, authToken, sessionId, kind, encrypted }), {});
    if (res.status !== 200) throw this.#httpError(res.status);
    return parse(this.idHex, () => parseClientResponse(res.body));
  }

  #clientError(e: string): VaultClientError {
    switch (e) {
      case 'InvalidAuth':
        return new VaultUnauthorizedError(`realm ${this.idHex} refused the token`);
      case 'RateLimitExceeded':
        return new VaultBusyError(`realm ${this.idHex} is rate limiting this account`);
      case 'Unavailable':
        return new VaultUnavailableError(`realm ${this.idHex} is unavailable`);
      default:
        return new VaultProtocolError(`realm ${this.idHex} refused the request (${e})`);
    }
  }
}

function parse<T>(realm: string, f: () => T): T {
  try {
    return f();
  } catch (cause) {
    if (cause instanceof WireError) throw new VaultProtocolError(`realm ${realm} sent an answer this client cannot read`, { cause });
    throw cause;
  }
}

function expect<K extends SecretsResponse['kind']>(r: SecretsResponse, kind: K, realm: string): Extract<SecretsResponse, { kind: K }> {
  if (r.kind !== kind) throw new VaultProtocolError(`realm ${realm} answered ${r.kind} to ${kind}`);
  return r as Extract<SecretsResponse, { kind: K }>;
}

// ---------------------------------------------------------------- thresholds

/** Lower ranks win when too many realms fail (the SDK's error order). */
function rank(e: unknown): number {
  if (e instanceof KeyDestroyedError) return 0;
  if (e instanceof NotRegisteredError) return 1;
  if (e instanceof VaultUnauthorizedError) return 2;
  if (e instanceof VaultBusyError) return 3;
  if (e instanceof VaultProtocolError) return 4;
  if (e instanceof VaultUnavailableError) return 5;
  return 6;
}

/** Runs `f` on every channel; resolves with the successes once no more can fail, or rejects with the most telling error. */
async function atLeast<T>(channels: RealmChannel[], threshold: number, f: (c: RealmChannel) => Promise<T>): Promise<{ channel: RealmChannel; value: T }[]> {
  const settled = await Promise.allSettled(channels.map(async (channel) => ({ channel, value: await f(channel) })));
  const ok = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  if (ok.length >= threshold) return ok;
  const errors = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
  errors.sort((a, b) => rank(a) - rank(b));
  throw errors[0];
}

function channelsFor(conn: JuiceboxConnection): RealmChannel[] {
  return conn.configuration.realms.map((r, i) => new RealmChannel(r, i + 1, conn));
}

function groupBy<T>(items: T[], key: (t: T) => string): T[][] {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    m.set(k, [...(m.get(k) ?? []), it]);
  }
  return [...m.values()];
}

// ---------------------------------------------------------------- register, §5

/** What {@link juiceboxRegister} takes: the PIN (password), the secret to protect, and the guesses each realm allows. */
export interface RegisterOptions extends JuiceboxConnection {
  pin: Uint8Array;
  /** At most 128 bytes. */
  secret: Uint8Array;
  /** Mixed into the PIN hash salt; Coffer passes the account id in UTF-8. */
  info: Uint8Array;
  /** Guesses each realm allows (`G`). */
  numGuesses: number;
}

/** Registers `secret` under `pin` at every realm of the configuration (spec/juicebox.md §5); a new registration replaces the old one. */
export async function juiceboxRegister(o: RegisterOptions): Promise<void> {
  const cfg = o.configuration;
  const random = o.random ?? systemRandom;
  if (!Number.isInteger(o.numGuesses) || o.numGuesses < 1 || o.numGuesses > 0xffff) throw new RangeError('numGuesses must be an integer from 1 to 65535');
  if (o.secret.length > 128) throw new RangeError('a Juicebox secret is at most 128 bytes');
  const channels = channelsFor(o);
  const n = channels.length;
  await atLeast(channels, cfg.registerThreshold, async (c) => expect(await c.send({ kind: 'Register1' }), 'Register1', c.idHex));

  const version = random(16);
  const { accessKey, encryptionKeySeed } = await hashPin(cfg.pinHashingMode, o.pin, version, o.info);
  const oprfKey = randomScalar(random);
  const keyShares = createShares(oprfKey, cfg.recoverThreshold, n, random);
  const signed = signPublicKeys(
    channels.map((c, i) => ({ realmId: c.realmId, publicKey: mulBase(keyShares[i]!).toBytes() })),
    random,
  );
  const { unlockKey, commitment } = unlockKeyAndCommitment(oprfUnoblivious(oprfKey, accessKey));
  const scalar = randomScalar(random);
  const scalarShares = createShares(scalar, cfg.recoverThreshold, n, random);
  const encryptionKey = secretEncryptionKey(encryptionKeySeed, scalar);
  const encryptedSecret = encryptSecret(encryptionKey, o.secret);
  wipe(accessKey, encryptionKeySeed, encryptionKey);
  try {
    await atLeast(channels, cfg.registerThreshold, async (c) => {
      const i = c.index - 1;
      const share = scalarToBytes(scalarShares[i]!);
      const r = await c.send({
        kind: 'Register2',
        request: {
          version,
          oprfPrivateKey: scalarToBytes(keyShares[i]!),
          oprfSignedPublicKey: signed[i]!,
          unlockKeyCommitment: commitment,
          unlockKeyTag: unlockKeyTag(unlockKey, c.realmId),
          encryptionKeyScalarShare: share,
          encryptedSecret,
          encryptedSecretCommitment: encryptedSecretCommitment(unlockKey, c.realmId, share, encryptedSecret),
          numGuesses: o.numGuesses,
        },
      });
      return expect(r, 'Register2', c.idHex);
    });
  } finally {
    wipe(unlockKey);
  }
}

// ---------------------------------------------------------------- recover, §5

/** What {@link juiceboxRecover} takes: the PIN (password) and the same `info` as at registration. */
export interface RecoverOptions extends JuiceboxConnection {
  pin: Uint8Array;
  info: Uint8Array;
}

interface Evaluation {
  channel: RealmChannel;
  result: Point;
  commitment: Uint8Array;
  verifyingKey: Uint8Array;
  remaining: number;
}

/** Recovers the secret with the PIN (spec/juicebox.md §5): each try costs a guess at every realm it needs; throws WrongPasswordError with the guesses left. */
export async function juiceboxRecover(o: RecoverOptions): Promise<Uint8Array> {
  const cfg = o.configuration;
  const t = cfg.recoverThreshold;
  const all = channelsFor(o);

  // Phase 1: the registration version a threshold of realms agree on.
  const r1 = await atLeast(all, t, async (c) => {
    const r = expect(await c.send({ kind: 'Recover1' }), 'Recover1', c.idHex);
    if (r.status !== 'Ok') throw r.status === 'NoGuesses' ? new KeyDestroyedError() : new NotRegisteredError();
    return r.version;
  });
  const agreeing = groupBy(r1, (x) => toHex(x.value)).find((g) => g.length >= t);
  if (!agreeing) throw new NotRegisteredError();
  const version = agreeing[0]!.value;
  const channels = agreeing.map((x) => x.channel);

  // Phase 2: one counted guess at each realm; every answer checked (signature, DLEQ proof).
  const { accessKey, encryptionKeySeed } = await hashPin(cfg.pinHashingMode, o.pin, version, o.info);
  try {
    const { blindingFactor, blindedInput } = oprfBlind(accessKey, o.random);
    const evaluations = await atLeast(channels, t, async (c): Promise<Evaluation> => {
      const r = expect(await c.send({ kind: 'Recover2', version, blindedInput: blindedInput.toBytes() }), 'Recover2', c.idHex);
      if (r.status !== 'Ok') {
        if (r.status === 'VersionMismatch') throw new VaultProtocolError(`realm ${c.idHex} changed its registration during recovery; try again`);
        throw r.status === 'NoGuesses' ? new KeyDestroyedError() : new NotRegisteredError();
      }
      const misbehaves = (why: string) => new VaultProtocolError(`realm ${c.idHex} misbehaves: ${why}`);
      if (!verifySignedPublicKey(r.signedPublicKey, c.realmId)) throw misbehaves('its OPRF public key is not signed for it');
      let ok = false;
      let result: Point;
      try {
        result = pointFromBytes(r.blindedResult);
        ok = dleqVerify(blindedInput, pointFromBytes(r.signedPublicKey.publicKey), result, { c: scalarFromBytes(r.proof.c), z: scalarFromBytes(r.proof.betaZ) });
      } catch {
        ok = false;
      }
      if (!ok) throw misbehaves('its OPRF proof does not verify');
      return { channel: c, result: result!, commitment: r.unlockKeyCommitment, verifyingKey: r.signedPublicKey.verifyingKey, remaining: Math.max(0, r.numGuesses - r.guessCount) };
    });
    const group = groupBy(
      evaluations.map((e) => e.value),
      (e) => toHex(e.commitment) + toHex(e.verifyingKey),
    ).find((g) => g.length >= t);
    if (!group) throw new VaultProtocolError('the realms disagree about this registration (commitments or signing keys differ)');
    const output = oprfFinalize(accessKey, blindingFactor, recoverPoint(group.map((e) => ({ index: e.channel.index, value: e.result }))));
    const { unlockKey, commitment } = unlockKeyAndCommitment(output);
    wipe(output);
    try {
      if (!equalBytes(commitment, group[0]!.commitment)) {
        const remaining = Math.min(...group.map((e) => e.remaining));
        if (remaining > 0) throw new WrongPasswordError(remaining);
        // The last guess was wrong: a wrong tag makes every realm destroy its record now,
        // rather than at the next recovery (§6.2).
        const random = o.random ?? systemRandom;
        await Promise.allSettled(group.map((e) => e.channel.send({ kind: 'Recover3', version, unlockKeyTag: random(16) })));
        throw new KeyDestroyedError();
      }

      // Phase 3: the tags prove the PIN; the realms release their shares.
      const shares = await atLeast(
        group.map((e) => e.channel),
        t,
        async (c) => {
          const r = expect(await c.send({ kind: 'Recover3', version, unlockKeyTag: unlockKeyTag(unlockKey, c.realmId) }), 'Recover3', c.idHex);
          if (r.status === 'NotRegistered') throw new NotRegisteredError();
          if (r.status === 'NoGuesses') throw new KeyDestroyedError();
          if (r.status !== 'Ok') throw new VaultProtocolError(`realm ${c.idHex} refused the unlock tag of the right PIN (${r.status})`);
          if (!equalBytes(encryptedSecretCommitment(unlockKey, c.realmId, r.encryptionKeyScalarShare, r.encryptedSecret), r.encryptedSecretCommitment)) {
            throw new VaultProtocolError(`realm ${c.idHex} returned a share that does not match its commitment`);
          }
          return { share: scalarFromBytes(r.encryptionKeyScalarShare), encryptedSecret: r.encryptedSecret };
        },
      );
      const consistent = groupBy(shares, (s) => toHex(s.value.encryptedSecret)).find((g) => g.length >= t);
      if (!consistent) throw new VaultProtocolError('the realms returned different encrypted secrets');
      const scalar = recoverScalar(consistent.map((s) => ({ index: s.channel.index, value: s.value.share })));
      const key = secretEncryptionKey(encryptionKeySeed, scalar);
      try {
        return decryptSecret(key, consistent[0]!.value.encryptedSecret);
      } catch (cause) {
        throw new VaultProtocolError('the recovered secret does not decrypt', { cause });
      } finally {
        wipe(key);
      }
    } finally {
      wipe(unlockKey);
    }
  } finally {
    wipe(accessKey, encryptionKeySeed);
  }
}

// ---------------------------------------------------------------- delete

/** Deletes the registration on every realm (each must answer). */
export async function juiceboxDelete(o: JuiceboxConnection): Promise<void> {
  const channels = channelsFor(o);
  await atLeast(channels, channels.length, async (c) => expect(await c.send({ kind: 'Delete' }), 'Delete', c.idHex));
}

/** Coffer's use: the secret is the backup key K, `info` the account id in UTF-8 (spec/juicebox.md §1). */
export function accountInfo(account: string): Uint8Array {
  return utf8(account);
}

/**
 * Coffer's registration: the backup key K under `password` (its UTF-8 bytes are the PIN, wiped
 * after), for `account`, with `numGuesses` at each realm.
 */
export async function juiceboxRegisterBackupKey(conn: JuiceboxConnection, account: string, password: string, key: SecretKey, numGuesses: number): Promise<void> {
  const pin = utf8(password);
  try {
    await juiceboxRegister({ ...conn, pin, secret: key.expose(), info: accountInfo(account), numGuesses });
  } finally {
    wipe(pin);
  }
}

/** Coffer's recovery: K from the realms with `password`, one counted guess at each realm it needs. */
export async function juiceboxRecoverBackupKey(conn: JuiceboxConnection, account: string, password: string): Promise<SecretKey> {
  const pin = utf8(password);
  try {
    const raw = await juiceboxRecover({ ...conn, pin, info: accountInfo(account) });
    try {
      if (raw.length !== 32) throw new InvalidVaultConfigError('the realms hold a secret that is not a Coffer backup key');
      return new SecretKey(raw);
    } finally {
      wipe(raw);
    }
  } finally {
    wipe(pin);
  }
}

/** Whether one realm holds a registration for the account. */
export type RealmRegistration = 'registered' | 'no-guesses' | 'not-registered' | 'unavailable';

/** Each realm's view of the registration (Recover1: it spends no guess). */
export async function juiceboxRegistrationStatus(o: JuiceboxConnection): Promise<{ realmId: string; state: RealmRegistration; error?: string }[]> {
  return Promise.all(
    channelsFor(o).map(async (c) => {
      try {
        const r = expect(await c.send({ kind: 'Recover1' }), 'Recover1', c.idHex);
        return { realmId: c.idHex, state: r.status === 'Ok' ? 'registered' : r.status === 'NoGuesses' ? 'no-guesses' : 'not-registered' } as const;
      } catch (e) {
        return { realmId: c.idHex, state: 'unavailable' as const, error: (e as Error).message };
      }
    }),
  );
}
