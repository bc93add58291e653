// Juicebox account tokens (spec/juicebox.md §7): JWTs whose `kid` names the tenant and key
// version, `iss` the tenant, `sub` the user and `aud` the realm id in hex, living at most 24 h.
// One algorithm per tenant key (HS256 or EdDSA), no negotiation; reasons never include the token.

import { createHmac, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { InvalidTokenError } from '../errors.js';

export type TenantKey = { alg: 'HS256'; secret: Uint8Array } | { alg: 'EdDSA'; publicKey: KeyObject };
export type TenantSigner = { alg: 'HS256'; secret: Uint8Array } | { alg: 'EdDSA'; privateKey: KeyObject };

/** The tenant every Coffer realm knows: its own token key, version 1. */
export const DEFAULT_TENANT = 'coffer';
export const DEFAULT_KEY_VERSION = 1;
export const MAX_LIFETIME_S = 24 * 3600;
const LEEWAY_S = 5;
const MAX_TOKEN_CHARS = 4096;

export interface JuiceboxClaims {
  tenant: string;
  user: string;
}

const TENANT = /^(test-)?[A-Za-z0-9]+$/;
const B64U = /^[A-Za-z0-9_-]*$/;

function b64uJson(x: unknown): string {
  return Buffer.from(JSON.stringify(x)).toString('base64url');
}

/** Decodes canonical unpadded base64url (re-encoding must give the same text). */
function canonicalB64u(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'base64url');
  if (!B64U.test(s) || b.toString('base64url') !== s) throw new InvalidTokenError(`${what} is not canonical base64url`);
  return b;
}

export function isValidUser(x: unknown): x is string {
  // eslint-disable-next-line no-control-regex
  return typeof x === 'string' && x.length >= 1 && x.length <= 128 && !/[\u0000-\u001f\u007f]/.test(x);
}

/** Issues a token (development tokens of `coffer vault token --audience juicebox`, and tests). */
export function issueJuiceboxToken(signer: TenantSigner, o: { tenant?: string; keyVersion?: number; user: string; realmIdHex: string; ttlSeconds: number; nowMs?: number }): string {
  const tenant = o.tenant ?? DEFAULT_TENANT;
  if (!TENANT.test(tenant)) throw new TypeError('a tenant name is alphanumeric');
  if (!isValidUser(o.user)) throw new TypeError('a user id is 1 to 128 characters without control characters');
  if (!Number.isInteger(o.ttlSeconds) || o.ttlSeconds < 1 || o.ttlSeconds > MAX_LIFETIME_S) throw new RangeError('a Juicebox token lives 1 s to 24 h');
  const now = Math.floor((o.nowMs ?? Date.now()) / 1000);
  const head = b64uJson({ alg: signer.alg, typ: 'JWT', kid: `${tenant}:${o.keyVersion ?? DEFAULT_KEY_VERSION}` });
  const body = b64uJson({ iss: tenant, sub: o.user, aud: o.realmIdHex, iat: now, nbf: now, exp: now + o.ttlSeconds, scope: 'user' });
  const input = `${head}.${body}`;
  const sig = signer.alg === 'HS256' ? createHmac('sha256', signer.secret).update(input).digest() : sign(null, Buffer.from(input), signer.privateKey);
  return `${input}.${sig.toString('base64url')}`;
}

/** Verifies a token for this realm; `keys` maps `tenant:version` to the tenant's key. */
export function verifyJuiceboxToken(keys: ReadonlyMap<string, TenantKey>, token: string, realmIdHex: string, nowMs: number): JuiceboxClaims {
  if (typeof token !== 'string' || token.length === 0) throw new InvalidTokenError('missing');
  if (token.length > MAX_TOKEN_CHARS) throw new InvalidTokenError('too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw new InvalidTokenError('not a JWT');
  const [h, p, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(canonicalB64u(h, 'header').toString('utf8')) as Record<string, unknown>;
    claims = JSON.parse(canonicalB64u(p, 'payload').toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof InvalidTokenError) throw e;
    throw new InvalidTokenError('not base64url JSON');
  }
  if (typeof header !== 'object' || header === null || typeof claims !== 'object' || claims === null) throw new InvalidTokenError('header and payload must be objects');
  if ('crit' in header) throw new InvalidTokenError('critical header extensions are not supported');
  const kid = header['kid'];
  const m = typeof kid === 'string' ? /^([^:]+):(\d{1,18})$/.exec(kid) : null;
  if (!m || !TENANT.test(m[1]!)) throw new InvalidTokenError('kid must be tenant:version');
  const key = keys.get(`${m[1]}:${Number(m[2])}`);
  if (!key) throw new InvalidTokenError('unknown tenant or key version');
  if (header['alg'] !== key.alg) throw new InvalidTokenError(`algorithm must be ${key.alg}`);
  const sig = canonicalB64u(s, 'signature');
  const input = Buffer.from(`${h}.${p}`);
  const ok =
    key.alg === 'HS256'
      ? (() => {
          const mac = createHmac('sha256', key.secret).update(input).digest();
          return sig.length === mac.length && timingSafeEqual(sig, mac);
        })()
      : sig.length === 64 && verify(null, input, key.publicKey, sig);
  if (!ok) throw new InvalidTokenError('bad signature');
  if (claims['iss'] !== m[1]) throw new InvalidTokenError('iss must be the tenant of kid');
  if (claims['aud'] !== realmIdHex) throw new InvalidTokenError('wrong audience (a token for another realm)');
  if (!isValidUser(claims['sub'])) throw new InvalidTokenError('sub must be a user id');
  const { nbf, exp, iat, scope } = claims;
  if (typeof nbf !== 'number' || typeof exp !== 'number' || !Number.isFinite(nbf) || !Number.isFinite(exp)) throw new InvalidTokenError('nbf and exp are required');
  if (exp - nbf > MAX_LIFETIME_S) throw new InvalidTokenError('lifetime longer than 24 hours');
  const now = nowMs / 1000;
  if (nbf > now + LEEWAY_S) throw new InvalidTokenError('not valid yet (nbf)');
  if (exp <= now - LEEWAY_S) throw new InvalidTokenError('expired');
  if (iat !== undefined && (typeof iat !== 'number' || iat > now + LEEWAY_S)) throw new InvalidTokenError('issued in the future');
  if (scope !== undefined && scope !== 'user') throw new InvalidTokenError('scope must be "user"');
  return { tenant: m[1]!, user: claims['sub'] as string };
}
