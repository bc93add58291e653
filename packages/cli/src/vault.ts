/**
 * The password path of the CLI (issue 3): K registered with, and recovered from, the Backup Key
 * Vault through the isomorphic client in @coffer/core/vault. Secrets stay in variables only.
 */
import { SecretKey, UsageError, wipe } from '@coffer/core';
import { INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, recoverBackupKey, type KeyStretching, type VaultConnection } from '@coffer/core/vault';
import { promptSecret, readStdinLines, type Io } from './output.js';
import { readSecretFile } from './secrets.js';

/** Names the test-only setting loudly, so it cannot be turned on by accident. */
export const INSECURE_TEST_ONLY_ENV = 'COFFER_INSECURE_TEST_ONLY_FAST_KEY_STRETCHING';

export interface VaultFlags {
  vault?: string | undefined;
  'realm-key'?: string | undefined;
  token?: string | undefined;
}

function keyStretching(io: Io): KeyStretching {
  if (io.env[INSECURE_TEST_ONLY_ENV] === '1') {
    io.stderr.write(`coffer: WARNING: ${INSECURE_TEST_ONLY_ENV}=1: passwords are barely stretched. For tests only.\n`);
    return INSECURE_TEST_ONLY_FAST_KEY_STRETCHING;
  }
  return 'memory-constrained';
}

/** Checks the three vault flags once, at the edge. */
export function vaultConnection(io: Io, flags: VaultFlags, saved?: { url: string; realmKey: string; token: string }): VaultConnection {
  const vaultUrl = flags.vault ?? saved?.url;
  const realmPublicKey = flags['realm-key'] ?? saved?.realmKey;
  const token = flags.token ?? saved?.token;
  if (!vaultUrl || !realmPublicKey || !token) {
    throw new UsageError('the password path needs --vault URL, --realm-key KEY and a token (--token-file FILE, $COFFER_TOKEN or --token TOKEN)', 'the realm key is printed by `coffer vault init`; a development token by `coffer vault token --account ID`');
  }
  return { vaultUrl, realmPublicKey, token, keyStretching: keyStretching(io) };
}

/** Where a password comes from: `--password-stdin`, `--password-file FILE`, else the terminal. */
export interface PasswordSource {
  'password-stdin'?: boolean | undefined;
  'password-file'?: string | undefined;
}

/** A password from stdin (`--password-stdin`: first line), a private file (`--password-file`), or asked twice on the terminal. */
export async function readPassword(io: Io, from: PasswordSource, confirm: boolean): Promise<string> {
  if (from['password-stdin'] && from['password-file'] !== undefined) throw new UsageError('choose --password-stdin or --password-file, not both');
  if (from['password-file'] !== undefined) return (await readSecretFile(from['password-file'], '--password-file'))[0]!;
  if (from['password-stdin']) {
    const [p] = await readStdinLines(io, 1);
    if (!p) throw new UsageError('no password on standard input', 'pipe the password as the first line');
    return p;
  }
  const p = await promptSecret(io, 'Password: ');
  if (!p) throw new UsageError('the password is empty');
  if (confirm && (await promptSecret(io, 'Password again: ')) !== p) throw new UsageError('the two passwords differ');
  return p;
}

/** K from the vault with the password: one counted guess (wrong: WrongPasswordError). */
export async function recoverKey(conn: VaultConnection, password: string): Promise<SecretKey> {
  const raw = await recoverBackupKey({ ...conn, password });
  try {
    return new SecretKey(raw);
  } finally {
    wipe(raw);
  }
}
