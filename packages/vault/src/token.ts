// Account tokens: JWT (RFC 7519) HS256 or EdDSA (Ed25519), spec/vault-protocol.md §4. Verified by
// jose; issued here (development tokens only). No algorithm negotiation: the configured algorithm
// is the only one accepted.

import { createHash, createHmac, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { protocol } from '@coffer/core/vault';
const { isValidAccountId } = protocol;
import { InvalidTokenError } from './errors.js';

export type TokenVerifier = { alg: 'HS256'; secret: Uint8Array } | { alg: 'EdDSA'; publicKey: KeyObject };
export type TokenSigner = { alg: 'HS256'; secret: Uint8Array } | { alg: 'EdDSA'; privateKey: KeyObject };

const LEEWAY_S = 60;
const MAX_TOKEN_CHARS = 4096;

function b64uJson(x: unknown): string {
  return Buffer.from(JSON.stringify(x)).toString('base64url');
}

export function audienceFor(realmIdText: string): string {
  return `coffer-vault:${realmIdText}`;
}

export function issueToken(signer: TokenSigner, claims: { account: string; audience: string; ttlSeconds: number; nowMs?: number }): string {
  if (!isValidAccountId(claims.account)) throw new TypeError('account id must be 1-128 characters of [A-Za-z0-9._:@-]');
  if (!Number.isSafeInteger(claims.ttlSeconds) || claims.ttlSeconds < 1) throw new RangeError('ttl must be a positive number of seconds');
  const iat = Math.floor((claims.nowMs ?? Date.now()) / 1000);
  const head = b64uJson({ alg: signer.alg, typ: 'JWT' });
  const body = b64uJson({ sub: claims.account, aud: claims.audience, iat, exp: iat + claims.ttlSeconds });
  const input = `${head}.${body}`;
  const sig = signer.alg === 'HS256' ? createHmac('sha256', signer.secret).update(input).digest() : sign(null, Buffer.from(input), signer.privateKey);
  return `${input}.${sig.toString('base64url')}`;
}

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

/** The time claims of a verified token, kept to check it again without its signature. */
interface Verified {
  sub: string;
  exp: number;
  nbf?: number;
  iat?: number;
}

function checkTimes(v: Verified, nowMs: number): void {
  const now = nowMs / 1000;
  if (v.exp + LEEWAY_S < now) throw new InvalidTokenError('expired');
  if (v.nbf !== undefined && v.nbf - LEEWAY_S > now) throw new InvalidTokenError('not valid yet (nbf is in the future)');
  if (v.iat !== undefined && v.iat - LEEWAY_S > now) throw new InvalidTokenError('issued in the future');
}

const CACHE_MAX = 10_000;

/**
 * Verifies tokens (verifyToken) and remembers the ones that passed, by their SHA-256, until they
 * expire: a client sends one token with every request of a login, and a signature check (jose on
 * Web Crypto) costs more than the rest of the request's token handling. A cached token is still
 * checked against the clock each time; only the signature and claims parsing are skipped, and
 * only for the exact same string. Holds no token, only its hash.
 */
export class TokenVerifierCache {
  readonly #verifier: TokenVerifier;
  readonly #audience: string;
  readonly #seen = new Map<string, Verified>();

  constructor(verifier: TokenVerifier, audience: string) {
    this.#verifier = verifier;
    this.#audience = audience;
  }

  async verify(token: string, nowMs: number): Promise<string> {
    const key = typeof token === 'string' && token.length <= MAX_TOKEN_CHARS ? createHash('sha256').update(token).digest('base64url') : null;
    const hit = key ? this.#seen.get(key) : undefined;
    if (hit) {
      checkTimes(hit, nowMs);
      return hit.sub;
    }
    const v = await verifyClaims(this.#verifier, token, this.#audience, nowMs);
    if (key) {
      if (this.#seen.size >= CACHE_MAX) {
        for (const [k, old] of this.#seen) if (old.exp + LEEWAY_S < nowMs / 1000 || this.#seen.size >= CACHE_MAX) this.#seen.delete(k);
      }
      this.#seen.set(key, v);
    }
    return v.sub;
  }
}

/**
 * Verifies a token (jose) and returns its account id (`sub`). Spec §4: only the configured
 * algorithm, canonical base64url, no `crit` extension, `aud`, `exp`, `nbf` and `iat` with 60 s
 * leeway. Reasons in errors never include the token.
 */
export async function verifyToken(verifier: TokenVerifier, token: string, audience: string, nowMs: number): Promise<string> {
  return (await verifyClaims(verifier, token, audience, nowMs)).sub;
}

async function verifyClaims(verifier: TokenVerifier, token: string, audience: string, nowMs: number): Promise<Verified> {
  if (typeof token !== 'string' || token.length === 0) throw new InvalidTokenError('missing');
  if (token.length > MAX_TOKEN_CHARS) throw new InvalidTokenError('too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new InvalidTokenError('not a JWT');
  if (!parts.every(canonicalB64u)) throw new InvalidTokenError('not canonical base64url (each part must be spelled the one way its bytes encode)');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, verifier.alg === 'HS256' ? verifier.secret : verifier.publicKey, {
      algorithms: [verifier.alg],
      audience,
      clockTolerance: LEEWAY_S,
      currentDate: new Date(nowMs),
      requiredClaims: ['exp', 'sub'],
    }));
  } catch (e) {
    throw new InvalidTokenError(reason(e, verifier.alg));
  }
  if (!isValidAccountId(payload.sub)) throw new InvalidTokenError('sub is not a valid account id');
  const v: Verified = { sub: payload.sub, exp: payload.exp as number };
  if (payload.nbf !== undefined) v.nbf = payload.nbf;
  if (payload.iat !== undefined) v.iat = payload.iat;
  // jose checks `iat` only against a maximum age; a token from the future is refused here.
  checkTimes(v, nowMs);
  return v;
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
