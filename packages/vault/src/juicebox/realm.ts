// A Juicebox realm inside a Coffer vault (spec/juicebox.md §6, §7, §9): the phases of one user's
// record as plain steps over the sealed record, for commitStep (../commit.ts): each returns the
// answer and the record change that must be durable before the answer leaves. The guess counter
// is the vault's attempts module (../attempts.ts): Recover2 spends a guess, a correct Recover3
// resets, NoGuesses at the limit with the shares and secret erased (and the earlier versions
// erased from the store's files). Records are sealed by the vault's HSM record key
// (../records.ts); tokens are checked by the vault's token verifier (../token.ts); the realm
// secrets (token key, ticket key, from which the Noise static key is derived) are unsealed once,
// at start.

import { CofferError } from '@coffer/core';
import { jbcrypto, noise, type wire } from '@coffer/core/juicebox';
import { protocol } from '@coffer/core/vault';
import { afterWrongGuess, destroy, guessesRemaining, isDestroyed, isExhausted, resetGuesses, spendGuess, type AttemptPolicy, type Counted } from '../attempts.js';
import { unsealRealmSecrets } from '../boundary.js';
import type { StepOutcome } from '../commit.js';
import type { Hsm } from '../hsm/types.js';
import type { Outcome } from '../metrics.js';
import type { RealmFile } from '../realm.js';
import { RecordSealer } from '../records.js';
import type { RecordChange, StoredRecord } from '../store/types.js';
import { configuredTokenKey, realmTokenKey, TokenVerifierCache, type TokenVerifier } from '../token.js';
import { noiseStaticKey } from './keys.js';
import { DEFAULT_KEY_VERSION, DEFAULT_TENANT, issueJuiceboxToken, juiceboxTokenRules, tenantKeyId, type JuiceboxClaims } from './token.js';

const { b64u, fromB64u } = protocol;
const RECORD_AAD_LABEL = 'coffer-juicebox-v1 record';

/** What a realm keeps per user (§6.1); byte fields in base64url, blank in a tombstone. */
export interface JuiceboxRecord extends Counted {
  v: 1;
  /** The record key it was stored under (recordKey), checked at every unseal. */
  account: string;
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
export class JuiceboxRequestError extends CofferError {
  constructor(message: string) {
    super('malformed-request', message, { hint: 'this request changed nothing; fix it and send a new one' });
    this.name = 'JuiceboxRequestError';
  }
}

/** The answer of one phase, released once its change is durable. */
export interface JuiceboxAnswer {
  response: wire.SecretsResponse;
  outcome: Outcome;
}

/** The record store key of a user: never an OPAQUE account id (those have no `/`). */
export function recordKey(c: JuiceboxClaims): string {
  return `juicebox/${c.tenant}/${c.user}`;
}

/** A tombstone's fields: everything that could recover the secret or test a PIN is blank. */
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

const sameBytes = (a: Uint8Array, b: Uint8Array) => protocol.timingSafeEqual(a, b);

/** What {@link JuiceboxRealm.start} takes: the realm file, its HSM and the attempt policy. */
export interface JuiceboxRealmOptions {
  file: RealmFile;
  hsm: Hsm;
  /** The operator bounds (realm.json `policy`, as openRealm checked them). `maxMaxAttempts` bounds num_guesses. */
  policy?: AttemptPolicy;
  now?: () => number;
}

/** A Juicebox realm (spec/juicebox.md) on this vault's HSM boundary and record store. */
export class JuiceboxRealm {
  readonly realmId: Uint8Array;
  readonly realmIdHex: string;
  /** The X25519 public key of the hardware-realm wire (§9). */
  readonly noisePublicKey: Uint8Array;
  readonly #noisePrivateKey: Uint8Array;
  readonly #records: RecordSealer<JuiceboxRecord>;
  readonly #tenants: Map<string, TokenVerifier>;
  readonly #tokens: TokenVerifierCache<JuiceboxClaims>;
  readonly #maxGuesses: number;
  readonly #now: () => number;

  private constructor(o: JuiceboxRealmOptions, tenants: Map<string, TokenVerifier>, noiseKey: { privateKey: Uint8Array; publicKey: Uint8Array }) {
    this.realmId = fromB64u(o.file.realmId);
    this.realmIdHex = Buffer.from(this.realmId).toString('hex');
    this.#records = new RecordSealer<JuiceboxRecord>({ hsm: o.hsm, recordKeyLabel: o.file.recordKeyLabel, aadLabel: RECORD_AAD_LABEL, realm: this.realmId });
    this.#tenants = tenants;
    this.#tokens = new TokenVerifierCache(juiceboxTokenRules(tenants, this.realmIdHex));
    this.#maxGuesses = (o.policy ?? o.file.policy).maxMaxAttempts;
    this.#now = o.now ?? Date.now;
    this.#noisePrivateKey = noiseKey.privateKey;
    this.noisePublicKey = noiseKey.publicKey;
  }

  /** Unseals the realm secrets through the HSM and derives the Noise static key. */
  static async start(o: JuiceboxRealmOptions): Promise<JuiceboxRealm> {
    const s = await unsealRealmSecrets(o.hsm, o.file.realmKeyLabel, fromB64u(o.file.sealedSecrets), fromB64u(o.file.realmId));
    // The tenant every Coffer realm knows: the realm's own token key (§7).
    const tenants = new Map([[tenantKeyId(DEFAULT_TENANT, DEFAULT_KEY_VERSION), realmTokenKey(configuredTokenKey(o.file.token), s.tokenSecret)]]);
    const ticketKey = fromB64u(s.ticketKey);
    const noiseKey = noiseStaticKey(ticketKey);
    ticketKey.fill(0);
    return new JuiceboxRealm(o, tenants, noiseKey);
  }

  /** Verifies a token for this realm (§7); throws InvalidTokenError. */
  authenticate(token: string): Promise<JuiceboxClaims> {
    return this.#tokens.verify(token, this.#now());
  }

  /** Development tokens with the realm's own HS256 key (`coffer vault token --audience juicebox`). */
  issueDevelopmentToken(user: string, ttlSeconds: number): string {
    const key = this.#tenants.get(tenantKeyId(DEFAULT_TENANT, DEFAULT_KEY_VERSION));
    if (key?.alg !== 'HS256') throw new TypeError('this realm verifies EdDSA tokens; issue them with the app auth server key');
    return issueJuiceboxToken({ alg: 'HS256', secret: key.secret }, { user, realmIdHex: this.realmIdHex, ttlSeconds, nowMs: this.#now() });
  }

  /** Noise responder state for one handshake (§9). */
  noiseHandshake(clientEphemeralPublic: Uint8Array, payloadCiphertext: Uint8Array): noise.ServerHandshake {
    return noise.serverHandshake(this.#noisePrivateKey, this.noisePublicKey, clientEphemeralPublic, payloadCiphertext);
  }

  /** Checks a Register2 request before anything is stored (JuiceboxRequestError if it is unusable). */
  #checkRegister2(q: wire.Register2Request): void {
    let k: bigint;
    try {
      k = jbcrypto.scalarFromBytes(q.oprfPrivateKey);
      jbcrypto.scalarFromBytes(q.encryptionKeyScalarShare);
    } catch {
      throw new JuiceboxRequestError('Register2: a key or secret share is not a canonical scalar');
    }
    if (k === 0n || !sameBytes(jbcrypto.mulBase(k).toBytes(), q.oprfSignedPublicKey.publicKey)) {
      throw new JuiceboxRequestError('Register2: the OPRF public key does not belong to the private key share');
    }
    if (q.numGuesses < 1 || q.numGuesses > this.#maxGuesses) throw new JuiceboxRequestError(`Register2: num_guesses must be 1 to ${this.#maxGuesses} (operator bound)`);
  }

  /**
   * One phase for one user (§6.2) on the current record: the answer, and the change that must be
   * durable before it leaves. Runs again on conflict, so it has no effect of its own (apart from
   * HSM calls and the proof's randomness). Throws JuiceboxRequestError for an unusable request.
   */
  async process(claims: JuiceboxClaims, request: wire.SecretsRequest, stored: StoredRecord | null): Promise<StepOutcome<JuiceboxAnswer>> {
    const key = recordKey(claims);
    const rec = stored ? await this.#records.unseal(key, stored) : null;
    const none: RecordChange = { kind: 'none' };
    const answer = (response: wire.SecretsResponse, change: RecordChange = none, o: { attempt?: boolean; destroyed?: boolean; erase?: boolean } = {}): StepOutcome<JuiceboxAnswer> => {
      const status = 'status' in response ? response.status : 'Ok';
      const outcome: Outcome = { op: `juicebox-${request.kind.toLowerCase()}`, status, attempt: o.attempt === true, destroyed: o.destroyed === true, lockout: status === 'NoGuesses' };
      return { change, ...(o.erase || o.destroyed ? { erase: true } : {}), answer: { response, outcome } };
    };
    /** The limit is reached: a tombstone, its secrets erased, and earlier versions gone from the files. */
    const destroyNow = async (r: JuiceboxRecord) => this.#records.put(destroy(r, erase, this.#now()), stored);
    const live = rec && !isDestroyed(rec) ? rec : null;

    switch (request.kind) {
      case 'Register1':
        return answer({ kind: 'Register1' });

      case 'Register2': {
        const q = request.request;
        this.#checkRegister2(q);
        const next: JuiceboxRecord = {
          v: 1,
          account: key,
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
        // Replacing an exhausted record destroys it: its secrets go from the files too.
        return answer({ kind: 'Register2' }, await this.#records.put(next, stored), { erase: rec !== null && isExhausted(rec) });
      }

      case 'Recover1':
        if (!rec) return answer({ kind: 'Recover1', status: 'NotRegistered' });
        if (!live) return answer({ kind: 'Recover1', status: 'NoGuesses' });
        if (isExhausted(live)) return answer({ kind: 'Recover1', status: 'NoGuesses' }, await destroyNow(live), { destroyed: true });
        return answer({ kind: 'Recover1', status: 'Ok', version: fromB64u(live.version) });

      case 'Recover2': {
        if (!rec) return answer({ kind: 'Recover2', status: 'NotRegistered' });
        if (!live) return answer({ kind: 'Recover2', status: 'NoGuesses' });
        const spent = spendGuess(live);
        if (spent.kind === 'exhausted') return answer({ kind: 'Recover2', status: 'NoGuesses' }, await destroyNow(live), { destroyed: true });
        if (!sameBytes(fromB64u(live.version), request.version)) return answer({ kind: 'Recover2', status: 'VersionMismatch' });
        let u: jbcrypto.Point;
        try {
          u = jbcrypto.pointFromBytes(request.blindedInput);
        } catch {
          throw new JuiceboxRequestError('Recover2: the blinded input is not a ristretto255 point');
        }
        const k = jbcrypto.scalarFromBytes(fromB64u(live.oprfPrivateKey));
        const publicKey = fromB64u(live.oprfSignedPublicKey.publicKey);
        const w = jbcrypto.oprfEvaluate(k, u);
        const proof = jbcrypto.dleqProve(k, u, publicKey, w);
        // The evaluation leaves only after the spent guess is durable (commitStep).
        return answer(
          {
            kind: 'Recover2',
            status: 'Ok',
            signedPublicKey: { publicKey, verifyingKey: fromB64u(live.oprfSignedPublicKey.verifyingKey), signature: fromB64u(live.oprfSignedPublicKey.signature) },
            blindedResult: w.toBytes(),
            proof: { c: jbcrypto.scalarToBytes(proof.c), betaZ: jbcrypto.scalarToBytes(proof.z) },
            unlockKeyCommitment: fromB64u(live.unlockKeyCommitment),
            numGuesses: spent.next.maxAttempts,
            guessCount: spent.next.attemptsUsed,
          },
          await this.#records.put(spent.next, stored),
          { attempt: true },
        );
      }

      case 'Recover3': {
        if (!rec) return answer({ kind: 'Recover3', status: 'NotRegistered' });
        if (!live) return answer({ kind: 'Recover3', status: 'NoGuesses' });
        if (!sameBytes(fromB64u(live.version), request.version)) return answer({ kind: 'Recover3', status: 'VersionMismatch' });
        if (sameBytes(fromB64u(live.unlockKeyTag), request.unlockKeyTag)) {
          return answer(
            { kind: 'Recover3', status: 'Ok', encryptionKeyScalarShare: fromB64u(live.encryptionKeyScalarShare), encryptedSecret: fromB64u(live.encryptedSecret), encryptedSecretCommitment: fromB64u(live.encryptedSecretCommitment) },
            live.attemptsUsed === 0 ? none : await this.#records.put(resetGuesses(live), stored),
          );
        }
        const wrong = afterWrongGuess(live);
        if (wrong.destroy) return answer({ kind: 'Recover3', status: 'BadUnlockKeyTag', guessesRemaining: 0 }, await destroyNow(live), { destroyed: true });
        return answer({ kind: 'Recover3', status: 'BadUnlockKeyTag', guessesRemaining: wrong.guessesRemaining });
      }

      case 'Delete':
        return answer({ kind: 'Delete' }, stored ? { kind: 'delete', expectedVersion: stored.version } : none, { erase: stored !== null });
    }
  }

  /** For tests and status: guesses left on a stored record (null if none). */
  async guessesRemaining(claims: JuiceboxClaims, stored: StoredRecord | null): Promise<number | null> {
    if (!stored) return null;
    return guessesRemaining(await this.#records.unseal(recordKey(claims), stored));
  }
}
