/**
 * Secrets given to `coffer` without putting them on its command line, where `ps` shows them:
 * `--password-file FILE`, `--token-file FILE` and `COFFER_TOKEN` (README "CLI tour"). A file that
 * other users can read is refused: the secret in it is already out.
 */
import { readFile, stat } from 'node:fs/promises';
import { UsageError } from '@coffer/core';
import type { Io } from './output.js';

/** The first `lines` lines of a private file (mode 0600 or stricter), without line ends. */
export async function readSecretFile(path: string, flag: string, lines = 1): Promise<string[]> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (cause) {
    throw new UsageError(`${flag} ${path}: cannot read it (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`, `give a file that holds the secret on its first line`, { cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new UsageError(`${flag} ${path} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')})`, `make it private first: chmod 600 ${path}`);
  }
  const text = await readFile(path, 'utf8');
  const got = text.split('\n').slice(0, lines).map((l) => l.replace(/\r$/, ''));
  if (got.length < lines || got.some((l) => l === '')) throw new UsageError(`${flag} ${path} holds no secret${lines > 1 ? ` on each of its first ${lines} lines` : ' on its first line'}`);
  return got;
}

/** The account token: `--token`, else `--token-file FILE`, else `$COFFER_TOKEN`; undefined when none is given. */
export async function tokenOption(io: Io, values: { token?: string | undefined; 'token-file'?: string | undefined }): Promise<string | undefined> {
  if (values.token !== undefined && values['token-file'] !== undefined) throw new UsageError('choose --token or --token-file, not both');
  if (values.token !== undefined) return values.token;
  if (values['token-file'] !== undefined) return (await readSecretFile(values['token-file'], '--token-file'))[0];
  return io.env['COFFER_TOKEN'] || undefined;
}
