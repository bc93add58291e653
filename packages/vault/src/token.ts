// Account tokens: JWT (RFC 7519) HS256 or EdDSA (Ed25519), spec/vault-protocol.md §4.
// No algorithm negotiation: the configured algorithm is the only one accepted.

import { createHmac, createPrivateKey, createPublicKey, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
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

/** Verifies a token and returns its account id (`sub`). Reasons in errors never include the token. */
export function verifyToken(verifier: TokenVerifier, token: string, audience: string, nowMs: number): string {
  if (typeof token !== 'string' || token.length === 0) throw new InvalidTokenError('missing');
  if (token.length > MAX_TOKEN_CHARS) throw new InvalidTokenError('too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new InvalidTokenError('not a JWT');
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let payload: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidTokenError('not base64url JSON');
  }
  if (typeof header !== 'object' || header === null || (header as { alg?: unknown }).alg !== verifier.alg) {
    throw new InvalidTokenError(`algorithm must be ${verifier.alg}`);
  }
  const sig = Buffer.from(s, 'base64url');
  const input = Buffer.from(`${h}.${p}`);
  let ok: boolean;
  if (verifier.alg === 'HS256') {
    const mac = createHmac('sha256', verifier.secret).update(input).digest();
    ok = sig.length === mac.length && timingSafeEqual(sig, mac);
  } else {
    ok = sig.length === 64 && verify(null, input, verifier.publicKey, sig);
  }
  if (!ok) throw new InvalidTokenError('bad signature');
  const c = payload as { sub?: unknown; aud?: unknown; exp?: unknown; iat?: unknown };
  if (typeof payload !== 'object' || payload === null) throw new InvalidTokenError('payload is not an object');
  const auds = Array.isArray(c.aud) ? c.aud : [c.aud];
  if (!auds.includes(audience)) throw new InvalidTokenError('wrong audience (a token for another realm or service)');
  const now = nowMs / 1000;
  if (typeof c.exp !== 'number' || c.exp + LEEWAY_S < now) throw new InvalidTokenError('expired');
  if (c.iat !== undefined && (typeof c.iat !== 'number' || c.iat - LEEWAY_S > now)) throw new InvalidTokenError('issued in the future');
  if (!isValidAccountId(c.sub)) throw new InvalidTokenError('sub is not a valid account id');
  return c.sub;
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
