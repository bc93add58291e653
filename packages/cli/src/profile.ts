/**
 * The local profile: a folder (`--profile`, `COFFER_HOME`, `~/.coffer` if it exists, else
 * `$XDG_CONFIG_HOME/coffer`, by default `~/.config/coffer`) with `profile.json`
 * (storage location and K, mode 0600: spec/keys.md §1) and `state.json` (newest backup seen per
 * repository, for rollback detection: spec/format.md §6). Files are replaced atomically.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { CofferError, fromHex, SecretKey, toHex, UsageError } from '@coffer/core';
import type { RealmsProfile } from './realms.js';

export interface Profile {
  version: 1;
  storage: string;
  backupId: string;
  /** K in hex. Only in this file, mode 0600. */
  key: string;
  protection: 'recovery-key' | 'password';
  vault?: { url: string; realmKey: string; token: string };
  /** Several independent realms (spec/juicebox.md) instead of one vault. */
  realms?: RealmsProfile;
  /** The MAC of the store's config when this device connected (format.md §2): the config is pinned. */
  configMac?: string;
  createdAt: string;
}

export interface State {
  /** backupId -> newest seq written or restored on this device. */
  seen: Record<string, number>;
}

/**
 * The profile folder: `--profile DIR`, else `$COFFER_HOME`, else `~/.coffer` if it exists (where
 * coffer kept profiles before), else `$XDG_CONFIG_HOME/coffer` (default `~/.config/coffer`).
 */
export function profileDir(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag) return resolve(flag);
  if (env.COFFER_HOME) return resolve(env.COFFER_HOME);
  const home = env.HOME || homedir();
  const legacy = join(home, '.coffer');
  if (existsSync(legacy)) return legacy;
  // The XDG base directory spec ignores a relative XDG_CONFIG_HOME.
  const config = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : join(home, '.config');
  return join(config, 'coffer');
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CofferError('bad-profile', `cannot read ${path}: ${(e as Error).message}`, { cause: e, hint: 'restore the file from a copy, or create a new profile with `coffer init`' });
  }
}

/** Writes a file atomically with mode 0600 (temporary name, fsync, rename). */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

export async function loadProfile(dir: string): Promise<Profile> {
  const p = await readJson<Profile>(join(dir, 'profile.json'));
  if (!p) throw new UsageError(`no Coffer profile in ${dir}`, 'run `coffer init --storage LOCATION` first, or pass --profile', { code: 'no-profile' });
  if (p.version !== 1 || typeof p.storage !== 'string' || !/^[0-9a-f]{64}$/.test(p.key ?? '')) {
    throw new CofferError('bad-profile', `${join(dir, 'profile.json')} is not a valid profile`, { hint: 'restore it from a copy, or create a new profile with `coffer init`' });
  }
  return p;
}

export async function profileExists(dir: string): Promise<boolean> {
  return (await readJson(join(dir, 'profile.json'))) !== null;
}

export async function saveProfile(dir: string, p: Profile): Promise<void> {
  await ensureDir(dir);
  await writePrivateFile(join(dir, 'profile.json'), JSON.stringify(p, null, 2) + '\n');
}

/** Deletes the profile's key file (the state file stays: it holds nothing secret). */
export async function removeProfile(dir: string): Promise<void> {
  await unlink(join(dir, 'profile.json'));
}

export const profileKey = (p: Profile): SecretKey => new SecretKey(fromHex(p.key));
/** Where this profile keeps copies of a store's index objects (format.md §3.3). */
export const indexCacheDir = (dir: string, backupId: string): string => join(dir, 'cache', backupId, 'index');
/** A private folder for SQLite snapshots taken during a backup (format.md §6.2). */
export const tempDir = (dir: string): string => join(dir, 'tmp');
export const keyHex = (k: SecretKey): string => toHex(k.expose());

export async function loadState(dir: string): Promise<State> {
  return (await readJson<State>(join(dir, 'state.json'))) ?? { seen: {} };
}

/** Remembers `seq` for `backupId` if it is newer than what was remembered. */
export async function rememberSeq(dir: string, backupId: string, seq: number): Promise<void> {
  const s = await loadState(dir);
  if ((s.seen[backupId] ?? 0) >= seq) return;
  s.seen[backupId] = seq;
  await ensureDir(dir);
  await writePrivateFile(join(dir, 'state.json'), JSON.stringify(s, null, 2) + '\n');
}
