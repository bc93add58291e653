// A Juicebox realm inside a Coffer vault (spec/juicebox.md §6, §7, §9): the phases of one user's
// record as plain steps over the sealed record, with the guess counted before an OPRF evaluation
// may leave. Records are sealed by the vault's HSM record key; the realm secrets (token key,
// ticket key, from which the Noise static key is derived) are unsealed once, at start.

import { hkdfSync } from 'node:crypto';
import { jbcrypto, noise, wire } from '@coffer/core/juicebox';
import { protocol } from '@coffer/core/vault';
import { type Effect, realmSecretsAad, type AttemptPolicy, type RealmSecrets } from '../boundary.js';
import { UnsealFailedError } from '../errors.js';
import type { Hsm } from '../hsm/types.js';
import type { RealmFile } from '../realm.js';
import type { StoredRecord } from '../store/types.js';
import { ed25519PublicKeyFromPem } from '../token.js';
import { afterWrongGuess, destroy, guessesRemaining, resetGuesses, spendGuess, type Counted } from './attempts.js';
import { DEFAULT_KEY_VERSION, DEFAULT_TENANT, issueJuiceboxToken, verifyJuiceboxToken, type JuiceboxClaims, type TenantKey } from './token.js';

const { b64u, fromB64u, concat, utf8, fromUtf8 } = protocol;
const RECORD_LABEL = 'coffer-juicebox-v1 record';
const NOISE_KEY_INFO = 'coffer-juicebox-v1 noise static key';

/** What a realm keeps per user (§6.1); byte fields in base64url, blank in a tombstone. */
export interface JuiceboxRecord extends Counted {
  v: 1;
  version: string;
  oprfPrivateKey: string;
  oprfSignedPublicKey: { publicKey: string; verifyingKey: string; signature: string };
  unlockKeyCommitment: string;
  unlockKeyTag: string;
  encryptionKeyScalarShare: string;
  encryptedSecret: string;
  encryptedSecretCommitment: string;
}

/** A request the realm refuses before any record is touched (HTTP 400). */
export class JuiceboxRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JuiceboxRequestError';
  }
}

export interface JuiceboxOutcome {
  phase: wire.SecretsRequest['kind'];
  status: string;
  /** A guess was paid (Recover2 granted and committed). */
  attempt: boolean;
  /** This step destroyed the record (limit reached). */
  destroyed: boolean;
}

export interface JuiceboxStep {
  response: wire.SecretsResponse;
  effect: Effect;
  outcome: JuiceboxOutcome;
}

/** The record store key of a user: never an OPAQUE account id (those have no `/`). */
export function recordKey(c: JuiceboxClaims): string {
  return `juicebox/${c.tenant}/${c.user}`;
}

function be2(n: number): Uint8Array {
  return new Uint8Array([n >> 8, n & 255]);
}

function erase(r: JuiceboxRecord): JuiceboxRecord {
  return {
    ...r,
    version: '',
    oprfPrivateKey: '',
    oprfSignedPublicKey: { publicKey: '', verifyingKey: '', signature: '' },
    unlockKeyCommitment: '',
    unlockKeyTag: '',
    encryptionKeyScalarShare: '',
    encryptedSecret: '',
    encryptedSecretCommitment: '',
  };
}

export interface JuiceboxRealmOptions {
  file: RealmFile;
  hsm: Hsm;
  policy?: AttemptPolicy;
  now?: () => number;
}

export class JuiceboxRealm {
  readonly realmId: Uint8Array;
  readonly realmIdHex: string;
  /** The X25519 public key of the hardware-realm wire (§9). */
  readonly noisePublicKey: Uint8Array;
  readonly #noisePrivateKey: Uint8Array;
  readonly #hsm: Hsm;
  readonly #recordKeyLabel: string;
  readonly #tenants: Map<string, TenantKey>;
  readonly #maxGuesses: number;
  readonly #now: () => number;

  private constructor(o: JuiceboxRealmOptions, tenants: Map<string, TenantKey>, noisePrivateKey: Uint8Array) {
    this.realmId = fromB64u(o.file.realmId);
    this.realmIdHex = Buffer.from(this.realmId).toString('hex');
    this.#hsm = o.hsm;
    this.#recordKeyLabel = o.file.recordKeyLabel;
    this.#tenants = tenants;
    this.#maxGuesses = (o.policy ?? o.file.policy).maxMaxAttempts;
    this.#now = o.now ?? Date.now;
    this.#noisePrivateKey = noisePrivateKey;
    this.noisePublicKey = noise.x25519PublicKey(noisePrivateKey);
  }

  /** Unseals the realm secrets through the HSM and derives the Noise static key. */
  static async start(o: JuiceboxRealmOptions): Promise<JuiceboxRealm> {
    const realmId = fromB64u(o.file.realmId);
    const plain = await o.hsm.unseal(o.file.realmKeyLabel, fromB64u(o.file.sealedSecrets), realmSecretsAad(realmId));
    const s = JSON.parse(fromUtf8(plain)) as RealmSecrets;
    plain.fill(0);
    const tenants = new Map<string, TenantKey>();
    const id = `${DEFAULT_TENANT}:${DEFAULT_KEY_VERSION}`;
    if (o.file.token.alg === 'EdDSA') tenants.set(id, { alg: 'EdDSA', publicKey: ed25519PublicKeyFromPem(o.file.token.publicKeyPem) });
    else if (s.tokenSecret) tenants.set(id, { alg: 'HS256', secret: fromB64u(s.tokenSecret) });
    const ticketKey = fromB64u(s.ticketKey);
    const noiseKey = noiseStaticKey(ticketKey);
    ticketKey.fill(0);
    return new JuiceboxRealm(o, tenants, noiseKey);
  }

  /** Verifies a token for this realm (§7). */
  authenticate(token: string): JuiceboxClaims {
    return verifyJuiceboxToken(this.#tenants, token, this.realmIdHex, this.#now());
  }

  /** Development tokens with the realm's own HS256 key (`coffer vault token --audience juicebox`). */
  issueDevelopmentToken(user: string, ttlSeconds: number): string {
    const key = this.#tenants.get(`${DEFAULT_TENANT}:${DEFAULT_KEY_VERSION}`);
    if (key?.alg !== 'HS256') throw new TypeError('this realm verifies EdDSA tokens; issue them with the app auth server key');
    return issueJuiceboxToken({ alg: 'HS256', secret: key.secret }, { user, realmIdHex: this.realmIdHex, ttlSeconds, nowMs: this.#now() });
  }

  /** Noise responder state for one handshake (§9). */
  noiseHandshake(clientEphemeralPublic: Uint8Array, payloadCiphertext: Uint8Array): noise.ServerHandshake {
    return noise.serverHandshake(this.#noisePrivateKey, this.noisePublicKey, clientEphemeralPublic, payloadCiphertext);
  }

  // ---------------------------------------------------------------- records, §6.1

  #aad(key: string, version: number): Uint8Array {
    const k = utf8(key);
    return concat(utf8(RECORD_LABEL), be2(16), this.realmId, be2(k.length), k, protocol.u64be(version));
  }

  async #unseal(key: string, stored: StoredRecord): Promise<JuiceboxRecord> {
    const pt = await this.#hsm.unseal(this.#recordKeyLabel, stored.sealed, this.#aad(key, stored.version));
    const r = JSON.parse(fromUtf8(pt)) as JuiceboxRecord;
    pt.fill(0);
    if (r.v !== 1) throw new UnsealFailedError('Juicebox record (unknown format)');
    return r;
  }

  async #put(key: string, stored: StoredRecord | null, r: JuiceboxRecord): Promise<Effect> {
    const newVersion = (stored?.version ?? 0) + 1;
    const sealed = await this.#hsm.seal(this.#recordKeyLabel, utf8(JSON.stringify(r)), this.#aad(key, newVersion));
    return { kind: 'put', expectedVersion: stored?.version ?? null, newVersion, sealed };
  }

  // ---------------------------------------------------------------- phases, §6.2

  /** Checks a Register2 request before anything is stored (JuiceboxRequestError if it is unusable). */
  #checkRegister2(q: wire.Register2Request): void {
    let k: bigint;
    try {
      k = jbcrypto.scalarFromBytes(q.oprfPrivateKey);
      jbcrypto.scalarFromBytes(q.encryptionKeyScalarShare);
    } catch {
      throw new JuiceboxRequestError('Register2: a key or secret share is not a canonical scalar');
    }
    if (k === 0n || !Buffer.from(jbcrypto.mulBase(k).toBytes()).equals(Buffer.from(q.oprfSignedPublicKey.publicKey))) {
      throw new JuiceboxRequestError('Register2: the OPRF public key does not belong to the private key share');
    }
    if (q.numGuesses < 1 || q.numGuesses > this.#maxGuesses) throw new JuiceboxRequestError(`Register2: num_guesses must be 1 to ${this.#maxGuesses} (operator bound)`);
  }

  /**
   * One phase for one user: reads `stored`, returns the answer and the change that must be durable
   * before the answer leaves. Pure apart from HSM calls and the proof's randomness.
   */
  async process(claims: JuiceboxClaims, request: wire.SecretsRequest, stored: StoredRecord | null): Promise<JuiceboxStep> {
    const key = recordKey(claims);
    const rec = stored ? await this.#unseal(key, stored) : null;
    const none: Effect = { kind: 'none' };
    const step = (response: wire.SecretsResponse, effect: Effect = none, extra: Partial<JuiceboxOutcome> = {}): JuiceboxStep => ({
      response,
      effect,
      outcome: { phase: request.kind, status: 'status' in response ? response.status : 'Ok', attempt: false, destroyed: false, ...extra },
    });
    const live = rec && rec.destroyedAt === undefined ? rec : null;
    const destroyNow = async (r: JuiceboxRecord) => this.#put(key, stored, destroy(r, erase, this.#now()));

    switch (request.kind) {
      case 'Register1':
        return step({ kind: 'Register1' });

      case 'Register2': {
        const q = request.request;
        this.#checkRegister2(q);
        const next: JuiceboxRecord = {
          v: 1,
          version: b64u(q.version),
          oprfPrivateKey: b64u(q.oprfPrivateKey),
          oprfSignedPublicKey: { publicKey: b64u(q.oprfSignedPublicKey.publicKey), verifyingKey: b64u(q.oprfSignedPublicKey.verifyingKey), signature: b64u(q.oprfSignedPublicKey.signature) },
          unlockKeyCommitment: b64u(q.unlockKeyCommitment),
          unlockKeyTag: b64u(q.unlockKeyTag),
          encryptionKeyScalarShare: b64u(q.encryptionKeyScalarShare),
          encryptedSecret: b64u(q.encryptedSecret),
          encryptedSecretCommitment: b64u(q.encryptedSecretCommitment),
          maxAttempts: q.numGuesses,
          attemptsUsed: 0,
        };
        return step({ kind: 'Register2' }, await this.#put(key, stored, next));
      }

      case 'Recover1':
        if (!rec) return step({ kind: 'Recover1', status: 'NotRegistered' });
        if (!live) return step({ kind: 'Recover1', status: 'NoGuesses' });
        if (spendGuess(live).kind === 'exhausted') return step({ kind: 'Recover1', status: 'NoGuesses' }, await destroyNow(live), { destroyed: true });
        return step({ kind: 'Recover1', status: 'Ok', version: fromB64u(live.version) });

      case 'Recover2': {
        if (!rec) return step({ kind: 'Recover2', status: 'NotRegistered' });
        if (!live) return step({ kind: 'Recover2', status: 'NoGuesses' });
        const spent = spendGuess(live);
        if (spent.kind === 'exhausted') return step({ kind: 'Recover2', status: 'NoGuesses' }, await destroyNow(live), { destroyed: true });
        if (!Buffer.from(fromB64u(live.version)).equals(Buffer.from(request.version))) return step({ kind: 'Recover2', status: 'VersionMismatch' });
        let u: jbcrypto.Point;
        try {
          u = jbcrypto.pointFromBytes(request.blindedInput);
        } catch {
          throw new JuiceboxRequestError('Recover2: the blinded input is not a ristretto255 point');
        }
        const k = jbcrypto.scalarFromBytes(fromB64u(live.oprfPrivateKey));
        const w = jbcrypto.oprfEvaluate(k, u);
        const proof = jbcrypto.dleqProve(k, u, fromB64u(live.oprfSignedPublicKey.publicKey), w);
        const next = spent.next;
        return step(
          {
            kind: 'Recover2',
            status: 'Ok',
            signedPublicKey: { publicKey: fromB64u(live.oprfSignedPublicKey.publicKey), verifyingKey: fromB64u(live.oprfSignedPublicKey.verifyingKey), signature: fromB64u(live.oprfSignedPublicKey.signature) },
            blindedResult: w.toBytes(),
            proof: { c: jbcrypto.scalarToBytes(proof.c), betaZ: jbcrypto.scalarToBytes(proof.z) },
            unlockKeyCommitment: fromB64u(live.unlockKeyCommitment),
            numGuesses: next.maxAttempts,
            guessCount: next.attemptsUsed,
          },
          await this.#put(key, stored, next),
          { attempt: true },
        );
      }

      case 'Recover3': {
        if (!rec) return step({ kind: 'Recover3', status: 'NotRegistered' });
        if (!live) return step({ kind: 'Recover3', status: 'NoGuesses' });
        if (!Buffer.from(fromB64u(live.version)).equals(Buffer.from(request.version))) return step({ kind: 'Recover3', status: 'VersionMismatch' });
        if (protocol.timingSafeEqual(fromB64u(live.unlockKeyTag), request.unlockKeyTag)) {
          return step(
            { kind: 'Recover3', status: 'Ok', encryptionKeyScalarShare: fromB64u(live.encryptionKeyScalarShare), encryptedSecret: fromB64u(live.encryptedSecret), encryptedSecretCommitment: fromB64u(live.encryptedSecretCommitment) },
            live.attemptsUsed === 0 ? none : await this.#put(key, stored, resetGuesses(live)),
          );
        }
        const wrong = afterWrongGuess(live);
        if (wrong.destroy) return step({ kind: 'Recover3', status: 'BadUnlockKeyTag', guessesRemaining: 0 }, await destroyNow(live), { destroyed: true });
        return step({ kind: 'Recover3', status: 'BadUnlockKeyTag', guessesRemaining: wrong.guessesRemaining });
      }

      case 'Delete':
        return step({ kind: 'Delete' }, stored ? { kind: 'delete', expectedVersion: stored.version } : none);
    }
  }

  /** For tests and status: guesses left on a stored record (null if none). */
  async guessesRemaining(claims: JuiceboxClaims, stored: StoredRecord | null): Promise<number | null> {
    if (!stored) return null;
    return guessesRemaining(await this.#unseal(recordKey(claims), stored));
  }
}

/** The realm's X25519 static key: derived inside the boundary from the sealed ticket key (§9). */
export function noiseStaticKey(ticketKey: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ticketKey, new Uint8Array(0), NOISE_KEY_INFO, 32));
}

/** The hardware-realm public key of a realm whose secrets are at hand (vault init). */
export function noisePublicKeyFor(secrets: Pick<RealmSecrets, 'ticketKey'>): string {
  const sk = noiseStaticKey(fromB64u(secrets.ticketKey));
  const pk = noise.x25519PublicKey(sk);
  sk.fill(0);
  return Buffer.from(pk).toString('hex');
}

