// Juicebox account tokens (spec/juicebox.md §7): JWTs whose `kid` names the tenant and key
// version, `iss` the tenant, `sub` the user and `aud` the realm id in hex, living at most 24 h.
// Verified by the vault's one token verifier (../token.ts) under these rules.

import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import { InvalidTokenError } from '../errors.js';
import { signJwt, type TokenRules, type TokenSigner, type TokenVerifier } from '../token.js';

/** The tenant every Coffer realm knows: its own token key, version 1. */
export const DEFAULT_TENANT = 'coffer';
export const DEFAULT_KEY_VERSION = 1;
export const MAX_LIFETIME_S = 24 * 3600;
const LEEWAY_S = 5;

export interface JuiceboxClaims {
  tenant: string;
  user: string;
}

const TENANT = /^(test-)?[A-Za-z0-9]+$/;

export function isValidUser(x: unknown): x is string {
  // eslint-disable-next-line no-control-regex
  return typeof x === 'string' && x.length >= 1 && x.length <= 128 && !/[\u0000-\u001f\u007f]/.test(x);
}

/** `tenant:version`, the key of a tenant's signing key. */
export function tenantKeyId(tenant: string, version: number): string {
  return `${tenant}:${version}`;
}

/** Issues a token (development tokens of `coffer vault token --audience juicebox`, and tests). */
export function issueJuiceboxToken(signer: TokenSigner, o: { tenant?: string; keyVersion?: number; user: string; realmIdHex: string; ttlSeconds: number; nowMs?: number }): string {
  const tenant = o.tenant ?? DEFAULT_TENANT;
  if (!TENANT.test(tenant)) throw new TypeError('a tenant name is alphanumeric');
  if (!isValidUser(o.user)) throw new TypeError('a user id is 1 to 128 characters without control characters');
  if (!Number.isInteger(o.ttlSeconds) || o.ttlSeconds < 1 || o.ttlSeconds > MAX_LIFETIME_S) throw new RangeError('a Juicebox token lives 1 s to 24 h');
  const now = Math.floor((o.nowMs ?? Date.now()) / 1000);
  return signJwt(signer, { iss: tenant, sub: o.user, aud: o.realmIdHex, iat: now, nbf: now, exp: now + o.ttlSeconds, scope: 'user' }, { kid: tenantKeyId(tenant, o.keyVersion ?? DEFAULT_KEY_VERSION) });
}

/** §7 for this realm; `keys` maps `tenant:version` to the tenant's key. */
export function juiceboxTokenRules(keys: ReadonlyMap<string, TokenVerifier>, realmIdHex: string): TokenRules<JuiceboxClaims> {
  const tenantOf = (header: ProtectedHeaderParameters): string => {
    const m = typeof header.kid === 'string' ? /^([^:]+):(\d{1,18})$/.exec(header.kid) : null;
    if (!m || !TENANT.test(m[1]!)) throw new InvalidTokenError('kid must be tenant:version');
    return m[1]!;
  };
  return {
    audience: realmIdHex,
    leewayS: LEEWAY_S,
    required: ['iss', 'sub', 'nbf'],
    key(header) {
      const tenant = tenantOf(header);
      const key = keys.get(tenantKeyId(tenant, Number(/:(\d+)$/.exec(header.kid!)![1])));
      if (!key) throw new InvalidTokenError('unknown tenant or key version');
      return key;
    },
    subject(c: JWTPayload, header) {
      const tenant = tenantOf(header);
      if (c.iss !== tenant) throw new InvalidTokenError('iss must be the tenant of kid');
      if (c.aud !== realmIdHex) throw new InvalidTokenError('aud must be this realm id, one string');
      if (!isValidUser(c.sub)) throw new InvalidTokenError('sub must be a user id');
      if ((c.exp as number) - (c.nbf as number) > MAX_LIFETIME_S) throw new InvalidTokenError('lifetime longer than 24 hours');
      if (c['scope'] !== undefined && c['scope'] !== 'user') throw new InvalidTokenError('scope must be "user"');
      return { tenant, user: c.sub };
    },
  };
}
