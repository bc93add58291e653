/**
 * The app server as the realms' authentication server (spec/web-app.md §4): an Ed25519 key in
 * `<data-dir>/auth/` (0600) signs short-lived EdDSA tokens, for the vault (OPAQUE) and for each
 * Juicebox realm; the realms hold only the public key.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { audienceFor, issueJuiceboxToken, issueToken } from '@coffer/vault';

/** Vault tokens live this long: enough for one registration or recovery, no more. */
export const TOKEN_TTL_SECONDS = 300;

export interface TokenKey {
  privateKey: KeyObject;
  /** Path of the PEM public key, for `coffer vault init --token-public-key`. */
  publicKeyFile: string;
}

/** Loads the signing key of `dir`, or makes one. */
export async function tokenKey(dir: string): Promise<TokenKey> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privateFile = join(dir, 'token-signing-key.pem');
  const publicKeyFile = join(dir, 'token-public-key.pem');
  let pem: string;
  try {
    pem = await readFile(privateFile, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const { privateKey } = generateKeyPairSync('ed25519');
    pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeFile(privateFile, pem, { mode: 0o600, flag: 'wx' });
  }
  await chmod(privateFile, 0o600);
  const privateKey = createPrivateKey(pem);
  await writeFile(publicKeyFile, createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string);
  return { privateKey, publicKeyFile };
}

export function vaultToken(key: TokenKey, realmId: string, account: string): string {
  return issueToken({ alg: 'EdDSA', privateKey: key.privateKey }, { account, audience: audienceFor(realmId), ttlSeconds: TOKEN_TTL_SECONDS });
}

/** One Juicebox token per realm (spec/juicebox.md §7: each realm's id is its token's audience), by realm id. */
export function realmTokens(key: TokenKey, juiceboxRealmIds: string[], account: string): Record<string, string> {
  return Object.fromEntries(
    juiceboxRealmIds.map((id) => [id, issueJuiceboxToken({ alg: 'EdDSA', privateKey: key.privateKey }, { user: account, realmIdHex: id, ttlSeconds: TOKEN_TTL_SECONDS })]),
  );
}
