// Account tokens: JWT (RFC 7519) HS256 or EdDSA (Ed25519), verified by jose, for every protocol
// of the vault: the OPAQUE path (spec/vault-protocol.md §4, `coffer-vault:<realm>` audience,
// account id in `sub`) and the Juicebox realm (spec/juicebox.md §7, `kid` names the tenant key).
// One verifier: what differs between the two is a TokenRules value (key choice, audience,
// leeway, required claims, the subject they yield). No algorithm negotiation: a key has one
// algorithm and only that one is accepted. Issued here only for development and tests.

import { createHash, createHmac, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { protocol } from '@coffer/core/vault';
const { isValidAccountId } = protocol;
import { InvalidTokenError } from './errors.js';

/** A verification key and its one algorithm. */
export type TokenVerifier = { alg: 'HS256'; secret: Uint8Array } | { alg: 'EdDSA'; publicKey: KeyObject };
/** The key an auth server signs account tokens with: Ed25519 (EdDSA) or, for development realms, HS256. */
export type TokenSigner = { alg: 'HS256'; secret: Uint8Array } | { alg: 'EdDSA'; privateKey: KeyObject };

const MAX_TOKEN_CHARS = 4096;

/** What one protocol requires of its tokens. */
export interface TokenRules<S> {
  /** `aud` must be (or, unless the subject check says otherwise, contain) this. */
  audience: string;
  /** Clock leeway for `exp`, `nbf` and `iat`, in seconds. */
  leewayS: number;
  /** Claims that must be present (`exp` always is). */
  required: string[];
  /** The key for this protected header; throws InvalidTokenError if there is none. */
  key(header: ProtectedHeaderParameters): TokenVerifier;
  /** The protocol's checks of the verified claims; returns the subject, or throws InvalidTokenError. */
  subject(payload: JWTPayload, header: ProtectedHeaderParameters): S;
}

/** A verified token: its subject and the time claims checked again on every later use. */
interface Verified<S> {
  subject: S;
  exp: number;
  nbf?: number;
  iat?: number;
}

// ---------------------------------------------------------------------------- signing

function b64uJson(x: unknown): string {
  return Buffer.from(JSON.stringify(x)).toString('base64url');
}

/** A compact JWS over `claims` (header `alg`, `typ` and `extraHeader`). Development tokens and tests. */
export function signJwt(signer: TokenSigner, claims: Record<string, unknown>, extraHeader: Record<string, unknown> = {}): string {
  const input = `${b64uJson({ alg: signer.alg, typ: 'JWT', ...extraHeader })}.${b64uJson(claims)}`;
  const sig = signer.alg === 'HS256' ? createHmac('sha256', signer.secret).update(input).digest() : sign(null, Buffer.from(input), signer.privateKey);
  return `${input}.${sig.toString('base64url')}`;
}

// ---------------------------------------------------------------------------- verifying

const B64U = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * base64url without padding, spelled the one way its bytes encode to: a length that is not 1
 * mod 4, and no stray bits in the last character (RFC 4648 §3.5).
 */
export function canonicalB64u(part: string): boolean {
  if (!/^[A-Za-z0-9_-]*$/.test(part) || part.length % 4 === 1) return false;
  const unusedBits = [0, 0, 4, 2][part.length % 4]!;
  return unusedBits === 0 || (B64U.indexOf(part[part.length - 1]!) & ((1 << unusedBits) - 1)) === 0;
}

/** Why jose refused a token, in words for the client (never the token itself). */
function reason(e: unknown, alg: string): string {
  if (e instanceof joseErrors.JWTExpired) return 'expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return 'wrong audience (a token for another realm or service)';
    if (e.claim === 'nbf') return 'not valid yet (nbf is in the future)';
    if (e.claim === 'iat') return 'issued in the future';
    return `claim ${e.claim} missing or malformed`;
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return `algorithm must be ${alg}`;
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  if (e instanceof joseErrors.JOSENotSupported) return 'it uses a header extension (crit) this vault does not understand';
  return 'not a valid JWT';
}

function checkTimes(v: Verified<unknown>, nowMs: number, leewayS: number): void {
  const now = nowMs / 1000;
  if (v.exp + leewayS <= now) throw new InvalidTokenError('expired');
  if (v.nbf !== undefined && v.nbf - leewayS > now) throw new InvalidTokenError('not valid yet (nbf is in the future)');
  if (v.iat !== undefined && v.iat - leewayS > now) throw new InvalidTokenError('issued in the future');
}

/**
 * Verifies a token under `rules` (jose): the three parts in canonical base64url, the key the
 * header names with its one algorithm, no `crit` extension, the audience, `exp`, `nbf` and `iat`
 * within the leeway, the required claims, then the protocol's own claim checks. Reasons in errors
 * never include the token.
 */
export async function verifyJwt<S>(rules: TokenRules<S>, token: string, nowMs: number): Promise<Verified<S>> {
  if (typeof token !== 'string' || token.length === 0) throw new InvalidTokenError('missing');
  if (token.length > MAX_TOKEN_CHARS) throw new InvalidTokenError('too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new InvalidTokenError('not a JWT');
  if (!parts.every(canonicalB64u)) throw new InvalidTokenError('not canonical base64url (each part must be spelled the one way its bytes encode)');
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new InvalidTokenError('not a valid JWT');
  }
  const key = rules.key(header);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, key.alg === 'HS256' ? key.secret : key.publicKey, {
      algorithms: [key.alg],
      audience: rules.audience,
      clockTolerance: rules.leewayS,
      currentDate: new Date(nowMs),
      requiredClaims: ['exp', ...rules.required],
    }));
  } catch (e) {
    throw new InvalidTokenError(reason(e, key.alg));
  }
  const v: Verified<S> = { subject: rules.subject(payload, header), exp: payload.exp as number };
  if (payload.nbf !== undefined) v.nbf = payload.nbf;
  if (payload.iat !== undefined) v.iat = payload.iat;
  // jose checks `iat` only against a maximum age; a token from the future is refused here.
  checkTimes(v, nowMs, rules.leewayS);
  return v;
}

const CACHE_MAX = 10_000;

/**
 * Verifies tokens (verifyJwt) and remembers the ones that passed, by their SHA-256, until they
 * expire: a client sends one token with every request of a login or recovery, and a signature
 * check (jose on Web Crypto) costs more than the rest of the request's token handling. A cached
 * token is still checked against the clock each time; only the signature and claims parsing are
 * skipped, and only for the exact same string. Holds no token, only its hash.
 */
export class TokenVerifierCache<S> {
  readonly #rules: TokenRules<S>;
  readonly #seen = new Map<string, Verified<S>>();

  constructor(rules: TokenRules<S>) {
    this.#rules = rules;
  }

  async verify(token: string, nowMs: number): Promise<S> {
    const key = typeof token === 'string' && token.length <= MAX_TOKEN_CHARS ? createHash('sha256').update(token).digest('base64url') : null;
    const hit = key ? this.#seen.get(key) : undefined;
    if (hit) {
      checkTimes(hit, nowMs, this.#rules.leewayS);
      return hit.subject;
    }
    const v = await verifyJwt(this.#rules, token, nowMs);
    if (key) {
      if (this.#seen.size >= CACHE_MAX) {
        for (const [k, old] of this.#seen) if (old.exp + this.#rules.leewayS < nowMs / 1000 || this.#seen.size >= CACHE_MAX) this.#seen.delete(k);
      }
      this.#seen.set(key, v);
    }
    return v.subject;
  }
}

// ---------------------------------------------------------------------------- the OPAQUE path's tokens (§4)

const VAULT_LEEWAY_S = 60;

/** The `aud` of account tokens for a realm (spec/vault-protocol.md §4). */
export function audienceFor(realmIdText: string): string {
  return `coffer-vault:${realmIdText}`;
}

/** Spec §4: the one configured key, `aud` = coffer-vault:<realm>, `exp` and `sub` (an account id), 60 s leeway. */
export function vaultTokenRules(verifier: TokenVerifier, audience: string): TokenRules<string> {
  return {
    audience,
    leewayS: VAULT_LEEWAY_S,
    required: ['sub'],
    key: () => verifier,
    subject(payload) {
      if (!isValidAccountId(payload.sub)) throw new InvalidTokenError('sub is not a valid account id');
      return payload.sub;
    },
  };
}

/** Signs an account token (JWT) for `account`: what an app's auth server does for its signed-in user. */
export function issueToken(signer: TokenSigner, claims: { account: string; audience: string; ttlSeconds: number; nowMs?: number }): string {
  if (!isValidAccountId(claims.account)) throw new TypeError('account id must be 1-128 characters of [A-Za-z0-9._:@-]');
  if (!Number.isSafeInteger(claims.ttlSeconds) || claims.ttlSeconds < 1) throw new RangeError('ttl must be a positive number of seconds');
  const iat = Math.floor((claims.nowMs ?? Date.now()) / 1000);
  return signJwt(signer, { sub: claims.account, aud: claims.audience, iat, exp: iat + claims.ttlSeconds });
}

/** Verifies a vault token (§4) and returns its account id (`sub`). */
export async function verifyToken(verifier: TokenVerifier, token: string, audience: string, nowMs: number): Promise<string> {
  return (await verifyJwt(vaultTokenRules(verifier, audience), token, nowMs)).subject;
}

// ---------------------------------------------------------------------------- keys

/** The token key a realm file configures: the app's Ed25519 public key, or none (HS256: the sealed secret). */
export function configuredTokenKey(token: { alg: 'HS256' } | { alg: 'EdDSA'; publicKeyPem: string }): TokenVerifier | undefined {
  return token.alg === 'EdDSA' ? { alg: 'EdDSA', publicKey: ed25519PublicKeyFromPem(token.publicKeyPem) } : undefined;
}

/** The realm's one token key: the configured Ed25519 public key, else the sealed HS256 secret. */
export function realmTokenKey(configured: TokenVerifier | undefined, tokenSecret: string | undefined): TokenVerifier {
  if (configured) return configured;
  if (tokenSecret) return { alg: 'HS256', secret: Buffer.from(tokenSecret, 'base64url') };
  throw new TypeError('no token verification key: the realm has no HS256 secret and no EdDSA public key was configured');
}

export function ed25519PublicKeyFromPem(pem: string): KeyObject {
  const k = createPublicKey(pem);
  if (k.asymmetricKeyType !== 'ed25519') throw new TypeError('the token public key must be an Ed25519 key');
  return k;
}

export function ed25519PrivateKeyFromPem(pem: string): KeyObject {
  const k = createPrivateKey(pem);
  if (k.asymmetricKeyType !== 'ed25519') throw new TypeError('the token signing key must be an Ed25519 key');
  return k;
}
