/**
 * The password path over several independent realms (spec/juicebox.md): K registered with, and
 * recovered from, n Juicebox realms through @coffer/core/juicebox. The realms FILE has the SDK's
 * Configuration shape; tokens come from a tokens FILE (realm id -> JWT, or -> {"command": "..."}
 * that prints one), or from a "tokens" object inside the realms FILE.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { SecretKey, UsageError } from '@coffer/core';
import {
  configurationToJson, guessBound, INSECURE_TEST_ONLY_FAST_PIN_HASHING, juiceboxDelete, juiceboxRecoverBackupKey, juiceboxRegisterBackupKey,
  juiceboxRegistrationStatus, parseConfiguration, perRealmLimitFor, type JuiceboxConfiguration, type JuiceboxConnection, type RealmRegistration,
} from '@coffer/core/juicebox';
import { DEFAULT_MAX_ATTEMPTS, InvalidVaultConfigError } from '@coffer/core/vault';
import type { Io } from './output.js';

/** Names the test-only PIN hashing loudly, so it cannot be turned on by accident. */
export const INSECURE_TEST_ONLY_PIN_HASHING_ENV = 'COFFER_INSECURE_TEST_ONLY_FAST_PIN_HASHING';

/** What a profile keeps to reach its realms again (no secret: tokens are fetched when needed). */
export interface RealmsProfile {
  /** The SDK Configuration, as registered. */
  configuration: ReturnType<typeof configurationToJson>;
  /** Absolute path of the tokens FILE (or of the realms FILE when it carries the tokens). */
  tokens: string;
  /** The account (the tokens' `sub`), whose UTF-8 bytes are Juicebox's `info`. */
  account: string;
  /** Guesses each realm allows (G). */
  guessesPerRealm: number;
  /** The account's limit L that the bound keeps to. */
  accountLimit: number;
}

export interface Realms {
  conn: JuiceboxConnection;
  profile: RealmsProfile;
}

function bad(message: string, hint: string): never {
  throw new UsageError(message, hint);
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    return bad(`cannot read the ${what} ${path}: ${(e as Error).message}`, `check the path given to --${what === 'realms file' ? 'realms' : 'tokens'}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return bad(`the ${what} ${path} is not JSON`, what === 'realms file' ? 'it has the SDK Configuration shape: {"realms": [{"id", "address", "public_key"}], "register_threshold", "recover_threshold", "pin_hashing_mode"}' : 'it maps each realm id (hex) to a token, or to {"command": "..."} that prints one');
  }
}

/** Reads one realm's token: the string itself, or the output of its command. */
async function tokenFrom(entry: unknown, realmId: string, path: string): Promise<string> {
  if (typeof entry === 'string') return entry.trim();
  const command = (entry as { command?: unknown } | null)?.command;
  if (typeof command === 'string' && command.length > 0) {
    try {
      const { stdout } = await promisify(execFile)('/bin/sh', ['-c', command], { timeout: 30_000, maxBuffer: 1 << 16 });
      const token = stdout.trim().split('\n').pop()!.trim();
      if (token) return token;
    } catch (e) {
      return bad(`the token command for realm ${realmId} failed: ${(e as Error).message.split('\n')[0]}`, `check the command in ${path}`);
    }
  }
  return bad(`${path} has no token for realm ${realmId}`, 'map each realm id (hex) to a token, or to {"command": "..."} that prints one');
}

/** The `sub` of a JWT, unverified (the realms verify it): the account the tokens are for. */
function subject(token: string): string | null {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof claims.sub === 'string' ? claims.sub : null;
  } catch {
    return null;
  }
}

function checkHashing(io: Io, c: JuiceboxConfiguration): void {
  if (c.pinHashingMode !== INSECURE_TEST_ONLY_FAST_PIN_HASHING) return;
  if (io.env[INSECURE_TEST_ONLY_PIN_HASHING_ENV] !== '1') {
    bad('pin_hashing_mode "FastInsecure" protects nothing if every realm falls; it is for tests only', `use "Standard2019" (or set ${INSECURE_TEST_ONLY_PIN_HASHING_ENV}=1 in tests)`);
  }
  io.stderr.write(`coffer: WARNING: ${INSECURE_TEST_ONLY_PIN_HASHING_ENV}=1: passwords are barely stretched. For tests only.\n`);
}

/**
 * The per-realm limit G for an account limit L: with t = n it is L; with t < n it is lowered to
 * ⌊L / (n − t + 1)⌋ so that k = t − 1 compromised realms still get at most L tests (§6.3).
 */
export function guessesPerRealm(c: JuiceboxConfiguration, accountLimit: number): number {
  const g = perRealmLimitFor(c.realms.length, c.recoverThreshold, accountLimit);
  if (g < 1) {
    bad(
      `with ${c.recoverThreshold}-of-${c.realms.length} realms no per-realm limit keeps the bound at or below ${accountLimit} guesses`,
      `raise recover_threshold (n-of-n is the recommendation) or --max-attempts to at least ${c.realms.length - c.recoverThreshold + 1}`,
    );
  }
  return g;
}

/** Checks --realms/--tokens once, at the edge, and fetches the tokens. */
export async function openRealms(io: Io, o: { realms?: string | undefined; tokens?: string | undefined; maxAttempts?: number | undefined; saved?: RealmsProfile | undefined }): Promise<Realms> {
  let configuration: JuiceboxConfiguration;
  let tokensPath: string;
  let tokenMap: unknown;
  if (o.realms) {
    const realmsPath = resolve(o.realms);
    const raw = await readJson(realmsPath, 'realms file');
    try {
      configuration = parseConfiguration(raw);
    } catch (e) {
      if (e instanceof InvalidVaultConfigError) bad(`${realmsPath}: ${e.message}`, 'the realms file has the SDK Configuration shape; `coffer vault init --json` prints each realm\'s id and public key');
      throw e;
    }
    tokensPath = resolve(o.tokens ?? realmsPath);
    tokenMap = o.tokens ? await readJson(tokensPath, 'tokens file') : (raw as { tokens?: unknown }).tokens;
  } else if (o.saved) {
    configuration = parseConfiguration(o.saved.configuration);
    tokensPath = resolve(o.tokens ?? o.saved.tokens);
    const j = (await readJson(tokensPath, 'tokens file')) as { tokens?: unknown; realms?: unknown } | null;
    tokenMap = j && typeof j === 'object' && 'realms' in j ? j.tokens : j;
  } else {
    return bad('--realms FILE is required', 'give the realms file (the SDK Configuration shape)');
  }
  if (typeof tokenMap !== 'object' || tokenMap === null) bad('no tokens for the realms', 'pass --tokens FILE mapping each realm id (hex) to a token, or put a "tokens" object in the realms file');
  checkHashing(io, configuration);
  const tokens: Record<string, string> = {};
  for (const r of configuration.realms) {
    const id = Buffer.from(r.id).toString('hex');
    tokens[id] = await tokenFrom((tokenMap as Record<string, unknown>)[id], id, tokensPath);
  }
  const subs = new Set(Object.values(tokens).map(subject));
  const account = [...subs][0];
  if (subs.size !== 1 || !account) bad('the tokens do not name one account (their "sub" claims differ or are missing)', 'issue every realm\'s token for the same account');
  const accountLimit = o.maxAttempts ?? o.saved?.accountLimit ?? DEFAULT_MAX_ATTEMPTS;
  return {
    conn: { configuration, token: (id) => tokens[id]! },
    profile: { configuration: configurationToJson(configuration), tokens: tokensPath, account, guessesPerRealm: guessesPerRealm(configuration, accountLimit), accountLimit },
  };
}

export async function registerWithRealms(r: Realms, password: string, key: SecretKey): Promise<void> {
  await juiceboxRegisterBackupKey(r.conn, r.profile.account, password, key, r.profile.guessesPerRealm);
}

/** K from the realms with the password: one counted guess at each realm. */
export function recoverWithRealms(r: Realms, password: string): Promise<SecretKey> {
  return juiceboxRecoverBackupKey(r.conn, r.profile.account, password);
}

export async function deleteFromRealms(r: Realms): Promise<void> {
  await juiceboxDelete(r.conn);
}

/** What `coffer status` says about the realms: the bound, and each realm's state (Recover1 spends no guess). */
export async function realmsStatus(r: Realms): Promise<{ realms: number; recoverThreshold: number; guessesPerRealm: number; accountLimit: number; bound: number; states: { realmId: string; state: RealmRegistration; error?: string }[] }> {
  const c = r.conn.configuration;
  const n = c.realms.length;
  return {
    realms: n,
    recoverThreshold: c.recoverThreshold,
    guessesPerRealm: r.profile.guessesPerRealm,
    accountLimit: r.profile.accountLimit,
    bound: guessBound(n, c.recoverThreshold, r.profile.guessesPerRealm),
    states: await juiceboxRegistrationStatus(r.conn),
  };
}
