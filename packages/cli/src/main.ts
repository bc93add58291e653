/** The `coffer` command. Each subcommand checks its input once, here at the edge. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  backup, DamagedBackupError, formatRecoveryKey, generateBackupKey, parseRecoveryKey, Repository, restore, UsageError, verify,
  type SecretKey, type Storage,
} from '@coffer/core';
import {
  DEFAULT_RETRY, FolderIndexCache, FolderSource, FolderTarget, isEmptyOrMissing, nodeCryptoProvider as crypto, openStorage, redactUrl, TargetNotEmptyError, transferDefaults, workerCodec,
  type RetryPolicy,
} from '@coffer/node';
import { hostname } from 'node:os';
import {
  Exit, formatBytes, onInterrupt, printable, ProgressView, promptSecret, readStdinLine, readStdinLines, reportError, storeWaitNotice,
  type Io,
} from './output.js';
import {
  indexCacheDir, keyHex, loadProfile, loadState, profileDir, profileExists, profileKey, rememberSeq, removeProfile, saveProfile, tempDir,
  type Profile,
} from './profile.js';
import { cmdMigrate } from './migrate.js';
import { readSecretFile, tokenOption } from './secrets.js';
import { cmdForget, cmdPrune, keepOptions, keepPolicy, MAINTENANCE_HELP, retainAfterBackup, type Kit } from './maintenance.js';
import type { Realms } from './realms.js';

type Passwords = typeof import('./passwords.js');
let passwordsModule: Promise<Passwords> | undefined;
/** The password paths load only when a command needs them (passwords.ts says why). */
const passwords = (): Promise<Passwords> => (passwordsModule ??= import('./passwords.js'));

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP = `coffer ${VERSION} - end-to-end encrypted backups

Usage: coffer <command> [options]

Commands:
  init --storage LOCATION [--recovery-key]   turn on backups; prints the 64-digit recovery key once
  init --storage LOCATION --recovery-key-stdin
                                             connect this device to an existing backup
  backup DIR [--keep-last N]                 back up a folder (only changes are uploaded); with --keep-*,
                                             forget and prune after it
  restore DIR [--storage LOCATION --recovery-key-stdin]
                                             restore the newest backup into DIR (a new or empty folder)
  status                                     show the profile, the store and its backups
  verify                                     read back every stored object and check it
  migrate [--dry-run]                        convert a store of backup format version 1 to version 2 (once)
  forget --keep-last N [--keep-daily D --keep-weekly W --keep-monthly M] [--dry-run]
                                             remove the backups that the policy does not keep
  prune [--dry-run] [--max-unused 10%]       delete (and repack) the data no kept backup needs

Password instead of a recovery key (the key is kept by a Backup Key Vault, see \`coffer vault --help\`):
  init --storage LOCATION --vault URL --realm-key KEY --token-file FILE [--password-stdin | --password-file FILE]
  restore DIR --storage LOCATION --vault URL --realm-key KEY --token-file FILE [--password-stdin | --password-file FILE]
  init --storage LOCATION --realms FILE [--tokens FILE] [--password-stdin | --password-file FILE]
  restore DIR --storage LOCATION --realms FILE [--tokens FILE] [--password-stdin | --password-file FILE]
                                             the same over several independent realms (Juicebox protocol)
  password change [--password-stdin | --password-file FILE]
                                             current and new password (two lines on stdin or in FILE)
  backup disable --yes                       delete the key from the vault and this profile
  vault init | serve | token | migrate | hsm | rotate-channel-key | realm-update
                                             run a vault (operators; see \`coffer vault --help\`)

Options for every command:
  --profile DIR   profile folder (default: $COFFER_HOME, else ~/.coffer if it exists, else
                  $XDG_CONFIG_HOME/coffer, by default ~/.config/coffer)
  --json          machine-readable output on stdout; progress as JSON lines on stderr
  --quiet         no progress output
  --retry-for T   keep trying a store that does not answer for T (default 60s; 0 = fail at once)
  --help          help for a command

LOCATION is a folder path, a file:// URL, s3://bucket/prefix or webdav(s)://host/path
(credentials from AWS_* or COFFER_WEBDAV_USER / COFFER_WEBDAV_PASSWORD; see the README);
$COFFER_STORAGE stands for --storage. The vault token: --token-file FILE, $COFFER_TOKEN or --token
TOKEN (argv is visible to other users in ps). Files of secrets must be private (chmod 600).
Exit codes: 0 ok, 1 failure, 2 bad usage, 3 wrong key or password, 4 damaged backup,
5 storage unreachable, 6 key destroyed by the vault, 7 vault unreachable or refused,
8 backup completed with files skipped or changing while read, 9 local disk full, read-only or not writable.
`;

const COMMAND_HELP: Record<string, string> = {
  migrate: `Usage: coffer migrate [--dry-run] [--profile DIR] [--json] [--quiet]

Rewrites this profile's store from backup format version 1 (one object per chunk) to version 2
(packs), in place. Chunks are copied into packs as they are (nothing is decrypted), every backup
keeps its number, and the version 1 objects are removed at the end. Every backup stays restorable
throughout: an interrupted migration (Ctrl-C, a crash, a lost connection) leaves the store as it
was or already converted, and running the command again finishes the job. Backups into the store
can start again once it is done.

Run it once, from one device, after updating coffer on every device that backs up into the store.
With --dry-run, it says what it would do and changes nothing. Exit code 4 when objects that were
already damaged could not be migrated (they are listed, and stay in the store as they were).
`,
  init: `Usage: coffer init --storage LOCATION [--recovery-key | --recovery-key-stdin] [--profile DIR] [--json]
       coffer init --storage LOCATION --vault URL --realm-key KEY (--token-file FILE | --token TOKEN)
                   [--password-stdin | --password-file FILE] [--max-attempts N]
       coffer init --storage LOCATION --realms FILE [--tokens FILE] [--password-stdin | --password-file FILE]
                   [--max-attempts N]

Creates a profile holding a new random backup key and an empty backup at LOCATION, and prints the
64-digit recovery key once. With --recovery-key-stdin, connects this device to the existing backup
at LOCATION instead, using the recovery key read from standard input.

With --vault, the key is protected by a password instead: it is registered with the Backup Key
Vault, which never sees the password (OPAQUE) and destroys the key after --max-attempts wrong
guesses (default 10). If LOCATION already holds a backup, the password recovers its key from the
vault and connects this device to it. The password is asked twice on a terminal, or read from the
first line of standard input with --password-stdin, or of a private file with --password-file.
The token may also come from $COFFER_TOKEN, and LOCATION from $COFFER_STORAGE.

With --realms FILE, the key is spread over several independent realms instead (the Juicebox
protocol; FILE has the Juicebox SDK's Configuration shape, tokens come from --tokens FILE or a
"tokens" object in FILE, each a JWT or {"command": "..."} printing one). Every password test costs
a guess at every realm it needs. With n-of-n (the default and the recommendation) each realm
allows --max-attempts guesses and whoever rolls back or seizes n-1 realms gains no guess; with
t-of-n each realm's limit is lowered to max-attempts / (n - t + 1), so that t-1 compromised realms
still get at most --max-attempts tests. \`coffer status\` prints that bound.
`,
  password: `Usage: coffer password change [--password-stdin | --password-file FILE] [--token-file FILE | --token TOKEN]
                              [--profile DIR] [--json]

Changes the vault password. With --password-stdin (or --password-file FILE, a private file), the
current and the new password are the first two lines. A wrong current password costs one guess.
`,
  vault: 'Run `coffer vault --help`.\n',
  backup: `Usage: coffer backup DIR [--sqlite GLOB]... [--keep-last N] [--keep-daily D] [--keep-weekly W]
                   [--keep-monthly M] [--profile DIR] [--json] [--quiet]
       coffer backup disable --yes [--profile DIR]   (turn backups off: delete the key from the vault and this profile)

Backs up the folder DIR. Files unchanged since the last backup are not read again, and chunks the
store already holds are not uploaded again. An interrupted backup leaves earlier ones intact; run
it again to finish.

The folder may change while it is backed up. A file that vanishes or cannot be read is skipped
with a warning; a file that keeps changing while it is read is stored marked "changed while read".
Either way the backup completes, and exits with code 8. SQLite databases (found by their header,
or named by --sqlite GLOB, e.g. --sqlite '*.db') are stored from a consistent snapshot.

With --keep-last N (and --keep-daily, --keep-weekly, --keep-monthly, as \`coffer forget\` takes
them), the backups the policy does not keep are forgotten and their data pruned after the backup.
`,
  restore: `Usage: coffer restore DIR [--storage LOCATION (--recovery-key-stdin | prompt)] [--backup N]
                     [--overwrite] [--allow-rollback] [--keep-special-modes] [--profile DIR] [--json] [--quiet]
       coffer restore DIR --storage LOCATION --vault URL --realm-key KEY (--token-file FILE | --token TOKEN)
                     [--password-stdin | --password-file FILE]
       coffer restore DIR --storage LOCATION --realms FILE [--tokens FILE] [--password-stdin | --password-file FILE]

Restores the newest backup (or backup number N) into DIR. Without --storage (or $COFFER_STORAGE),
uses the profile.
With --vault, the backup key is recovered from the vault with the password; each wrong password
costs one of a limited number of guesses, after which the vault destroys the key for good.
DIR must be new or empty unless --overwrite is given. Nothing appears in DIR until every file has
been verified, and nothing is ever written outside DIR. setuid, setgid and sticky bits are dropped
unless --keep-special-modes is given. A newest backup that does not open is skipped, with a
warning, for the newest one that does.
`,
  status: `Usage: coffer status [--profile DIR] [--json]\n\nShows the profile, the store and its backups.\n`,
  ...MAINTENANCE_HELP,
  verify: `Usage: coffer verify [--profile DIR] [--json] [--quiet]\n\nReads back every object of every backup and checks it; exit code 4 if any is damaged.\n`,
};

const common = {
  profile: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
  'retry-for': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O, positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...common, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ''), 'see `coffer <command> --help`');
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals])}`, 'see `coffer <command> --help`');
  return parsed as { values: { [K in keyof (O & typeof common)]?: K extends keyof O ? (O[K] extends { type: 'boolean' } ? boolean : string) : K extends 'profile' | 'retry-for' ? string : boolean }; positionals: string[] };
}

/** How a store is opened: --retry-for, and a notice while it does not answer (spec/format.md §7.2). */
function storeOptions(io: Io, values: { json?: boolean; quiet?: boolean; 'retry-for'?: string }): { retry: RetryPolicy } {
  let retryForMs = DEFAULT_RETRY.retryForMs;
  const t = values['retry-for'];
  if (t !== undefined) {
    const m = /^(\d{1,6})(s|m|h)?$/.exec(t);
    if (!m) throw new UsageError(`--retry-for takes a time such as 30s, 5m or 1h, not ${JSON.stringify(t)}`);
    retryForMs = Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h' ?? 's'];
  }
  return { retry: { ...DEFAULT_RETRY, retryForMs, onRetry: storeWaitNotice(io, !!values.json, values.quiet) } };
}

export function say(io: Io, json: boolean, human: string, data: Record<string, unknown>, ok = true): void {
  io.stdout.write(json ? JSON.stringify({ ok, ...data }) + '\n' : human);
}

async function readKey(io: Io, fromStdin: boolean | undefined): Promise<SecretKey> {
  const text = fromStdin ? await readStdinLine(io) : await promptSecret(io, 'Recovery key (64 digits): ');
  return parseRecoveryKey(text);
}

const vaultOptions = {
  vault: { type: 'string' },
  realms: { type: 'string' },
  tokens: { type: 'string' },
  'realm-key': { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'password-stdin': { type: 'boolean' },
  'password-file': { type: 'string' },
} as const;

async function cmdInit(io: Io, args: string[]): Promise<number> {
  const { openRealms, vaultConnection, recoverWithRealms, readPassword, recoverKey, registerWithRealms, registerBackupKey } = await passwords();
  const { values } = parse(
    args,
    { storage: { type: 'string' }, 'recovery-key': { type: 'boolean' }, 'recovery-key-stdin': { type: 'boolean' }, 'max-attempts': { type: 'string' }, ...vaultOptions },
    0,
  );
  const json = !!values.json;
  const home = profileDir(values.profile, io.env);
  values.storage ??= io.env['COFFER_STORAGE'] || undefined;
  values.token = await tokenOption(io, values);
  if (!values.storage) throw new UsageError('--storage is required (or $COFFER_STORAGE)', 'pass the store: a folder, file://, s3://bucket/prefix or webdav(s)://host/path');
  // A plain path is kept absolute, so the profile works from any folder.
  if (!/^[a-z][a-z0-9+.-]*:/i.test(values.storage)) values.storage = resolve(values.storage);
  const password = values.vault !== undefined || values.realms !== undefined || values['password-stdin'] !== undefined || values['password-file'] !== undefined;
  if ([values['recovery-key'], values['recovery-key-stdin'], password].filter(Boolean).length > 1) {
    throw new UsageError('choose one of --recovery-key, --recovery-key-stdin and --vault or --realms (password)');
  }
  if (values.vault !== undefined && values.realms !== undefined) throw new UsageError('choose --vault (one realm, OPAQUE) or --realms (several, Juicebox), not both');
  if (values.tokens !== undefined && values.realms === undefined) throw new UsageError('--tokens goes with --realms');
  let maxAttempts: number | undefined;
  if (values['max-attempts'] !== undefined) {
    if (!password) throw new UsageError('--max-attempts goes with --vault or --realms');
    if (!/^\d{1,4}$/.test(values['max-attempts'])) throw new UsageError(`--max-attempts takes a number, not ${JSON.stringify(values['max-attempts'])}`);
    maxAttempts = Number(values['max-attempts']);
  }
  if (await profileExists(home)) throw new UsageError(`a profile already exists in ${home}`, 'pass --profile DIR (or set COFFER_HOME) to make another one');
  const storageLabel = redactUrl(values.storage);
  const realms: Realms | undefined = values.realms !== undefined ? await openRealms(io, { realms: values.realms, tokens: values.tokens, maxAttempts }) : undefined;
  const conn = password && !realms ? vaultConnection(io, values) : undefined;
  const profile = (key: SecretKey, repo: Repository): Profile => ({
    version: 1, storage: values.storage!, backupId: repo.config.backupId, key: keyHex(key), createdAt: new Date().toISOString(),
    ...(repo.config.mac ? { configMac: repo.config.mac } : {}),
    ...(realms
      ? { protection: 'password', realms: realms.profile }
      : conn
        ? { protection: 'password', vault: { url: conn.vaultUrl, realmKey: conn.realmPublicKey, token: conn.token } }
        : { protection: 'recovery-key' }),
  });
  const connect = async (key: SecretKey, how: string) => {
    const storage = await openStorage(values.storage!, storeOptions(io, values));
    const repo = await Repository.open(storage, crypto, key);
    await saveProfile(home, profile(key, repo));
    key.wipe();
    say(io, json, `Connected to the backup at ${storageLabel} (${how}).\nProfile: ${home}\n`, { profile: home, storage: storageLabel, backupId: repo.config.backupId });
    return Exit.ok;
  };
  if (values['recovery-key-stdin']) return connect(await readKey(io, true), 'recovery key');

  const storage = await openStorage(values.storage, { create: true, ...storeOptions(io, values) });
  const existing = await storage.stat('config');
  if (realms && existing) return connect(await recoverWithRealms(realms, await readPassword(io, values, false)), 'password, realms');
  if (conn && existing) {
    // This account's key is in the vault already: recover it and connect this device.
    return connect(await recoverKey(conn, await readPassword(io, values, false)), 'password');
  }
  if (existing) throw new UsageError(`${storageLabel} already holds a backup`, 'to connect this device to it, pass --recovery-key-stdin (or --vault with its password)');
  const key = generateBackupKey(crypto);
  try {
    let vaultInfo: { maxAttempts: number } | undefined;
    if (realms) {
      // Registered first: if the realms refuse, nothing was written to the store.
      await registerWithRealms(realms, await readPassword(io, values, true), key);
      const repo = await Repository.init(storage, crypto, key);
      await saveProfile(home, profile(key, repo));
      const p = realms.profile;
      const n = p.configuration.realms.length;
      const t = p.configuration.recover_threshold;
      say(
        io,
        json,
        `Encrypted backups are on, protected by your password across ${n} independent realms (${t}-of-${n}).\n\n` +
          `Each realm allows ${p.guessesPerRealm} wrong guesses; whoever controls or rolls back ${t - 1} of them still gets at most ${p.accountLimit} password tests.\n` +
          `No realm sees your password or the backup key.\n\nProfile: ${home}\nStore:   ${storageLabel}\n`,
        { profile: home, storage: storageLabel, backupId: repo.config.backupId, protection: 'password', realms: n, recoverThreshold: t, guessesPerRealm: p.guessesPerRealm, bound: p.accountLimit },
      );
      return Exit.ok;
    }
    if (conn) {
      // Registered first: if the vault refuses, nothing was written to the store.
      const pw = await readPassword(io, values, true);
      vaultInfo = await registerBackupKey({ ...conn, password: pw, backupKey: key.expose(), ...(maxAttempts === undefined ? {} : { maxAttempts }) });
    }
    const repo = await Repository.init(storage, crypto, key);
    await saveProfile(home, profile(key, repo));
    if (vaultInfo) {
      say(
        io,
        json,
        `Encrypted backups are on, protected by your password.\n\nThe backup key is kept by the vault at ${redactUrl(conn!.vaultUrl)}, which never sees your password and\n` +
          `destroys the key after ${vaultInfo.maxAttempts} wrong guesses. Without the password (or this device), nobody can restore\nyour backups, not even the vault's operator.\n\nProfile: ${home}\nStore:   ${storageLabel}\n`,
        { profile: home, storage: storageLabel, backupId: repo.config.backupId, protection: 'password', maxAttempts: vaultInfo.maxAttempts },
      );
      return Exit.ok;
    }
    const recoveryKey = formatRecoveryKey(key);
    const groups = recoveryKey.split(' ');
    const lines = [0, 4, 8, 12].map((i) => '    ' + groups.slice(i, i + 4).join(' ')).join('\n');
    say(
      io,
      json,
      `Encrypted backups are on.\n\nYour recovery key (shown only this once):\n\n${lines}\n\n` +
        `Write it down and keep it safe. With it, anyone can restore your backups; without it and\n` +
        `without this device, nobody can, not even the operator of the store.\n\nProfile: ${home}\nStore:   ${storageLabel}\n`,
      { profile: home, storage: storageLabel, backupId: repo.config.backupId, recoveryKey },
    );
    return Exit.ok;
  } finally {
    key.wipe();
  }
}

/** This device's backup: the profile's store, opened and checked with the profile's key and pinned config. */
export async function openProfileBackup(io: Io, values: { profile?: string; json?: boolean; quiet?: boolean; 'retry-for'?: string }) {
  const home = profileDir(values.profile, io.env);
  let profile = await loadProfile(home);
  const storage = await openStorage(profile.storage, storeOptions(io, values));
  const key = profileKey(profile);
  try {
    const repo = await Repository.open(storage, crypto, key, { pinnedMac: profile.configMac ?? null });
    if (repo.config.backupId !== profile.backupId) {
      throw new UsageError('the store holds another backup than this profile', 'check the storage location in profile.json');
    }
    // A profile made before configs had MACs (or before a migration) pins the config it sees now.
    if (repo.config.mac && !profile.configMac) {
      profile = { ...profile, configMac: repo.config.mac };
      await saveProfile(home, profile);
    }
    const lastSeenSeq = (await loadState(home)).seen[repo.config.backupId] ?? null;
    const indexCache = new FolderIndexCache(indexCacheDir(home, repo.config.backupId));
    return { home, profile, storage, repo, lastSeenSeq, indexCache };
  } finally {
    key.wipe(); // the repository holds the derived keys it needs
  }
}

/** At most this many paths in a human-readable list; --json lists them all. */
const SHOWN = 10;
export const listPaths = (paths: string[]) => paths.slice(0, SHOWN).map((p) => `  ${p}\n`).join('') + (paths.length > SHOWN ? `  ... and ${paths.length - SHOWN} more (--json lists them all)\n` : '');

async function cmdBackup(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { yes: { type: 'boolean' }, token: { type: 'string' }, 'token-file': { type: 'string' }, sqlite: { type: 'string', multiple: true }, ...keepOptions }, 1);
  const json = !!values.json;
  const dir = positionals[0];
  if (dir === 'disable') return disableBackups(io, values);
  if (!dir) throw new UsageError('which folder should be backed up?', 'coffer backup DIR');
  const sqlite = (values.sqlite as string[] | undefined) ?? [];
  for (const g of sqlite) if (!g || g.startsWith('/')) throw new UsageError(`--sqlite takes a pattern relative to the folder, not ${JSON.stringify(g)}`, "for example --sqlite '*.db' or --sqlite 'databases/**'");
  const keep = keepPolicy(values);
  const { home, profile, repo, lastSeenSeq, indexCache } = await openProfileBackup(io, values);
  if (repo.version === 1) throw new UsageError('this store uses backup format version 1, which this coffer reads but no longer writes', 'run `coffer migrate` once to convert it to version 2 (your backups stay restorable throughout)');
  const view = ProgressView.for(io, json, 'backup', values.quiet);
  const codec = workerCodec(repo.keys, repo.config);
  const source = new FolderSource(dir, { sqlite, tempDir: tempDir(home) });
  // Ctrl-C: the snapshots (chats in the clear) go with the process.
  const stopWatching = onInterrupt(() => source.close());
  try {
    const { packsInFlight } = transferDefaults(profile.storage);
    const r = await backup(repo, source, { codec, lastSeenSeq, onProgress: view.update, indexCache, host: hostname(), pid: process.pid, packsInFlight });
    view.end();
    await rememberSeq(home, repo.config.backupId, r.seq);
    const secs = view.elapsedSeconds();
    const special = r.skipped.filter((k) => k.reason === 'special');
    const warned = r.skipped.filter((k) => k.reason !== 'special');
    const incomplete = warned.length > 0 || r.changed.length > 0;
    const after = keep ? await retainAfterBackup(io, kit, repo, indexCache, keep, { json, quiet: values.quiet }) : null;
    say(
      io,
      json,
      `Backup #${r.seq} ${incomplete ? 'completed with warnings' : 'done'} in ${secs.toFixed(1)} s: ${r.files} files, ${formatBytes(r.bytes)}; ` +
        `${r.filesRead} files read, ${r.chunksUploaded} new chunks (${formatBytes(r.bytesUploaded)}) uploaded, ${r.chunksReused} reused.\n` +
        (special.length ? `Skipped ${special.length} special files (sockets, pipes, devices).\n` : '') +
        (warned.length ? `Warning: ${warned.length} files skipped (they vanished or could not be read during the backup):\n${listPaths(warned.map((k) => `${printable(k.path)} (${k.reason})`))}` : '') +
        (r.changed.length ? `Warning: ${r.changed.length} files kept changing while they were read; they are stored marked "changed while read":\n${listPaths(r.changed.map(printable))}` : '') +
        (source.snapshotted.length ? `${source.snapshotted.length} SQLite databases stored from a consistent snapshot.\n` : '') +
        (after?.human ?? ''),
      { ...r, seconds: secs, snapshots: source.snapshotted, incomplete, ...after?.data },
      after?.code == null,
    );
    return after?.code ?? (incomplete ? Exit.incomplete : Exit.ok);
  } finally {
    stopWatching();
    view.end();
    await source.close();
    await codec.close();
  }
}

/** `coffer backup disable`: the vault forgets the key (if it held it), then this device does. */
async function disableBackups(io: Io, values: { yes?: boolean; token?: string; 'token-file'?: string; profile?: string; json?: boolean }): Promise<number> {
  const { deleteBackupKey, vaultConnection, deleteFromRealms, openRealms } = await passwords();
  const json = !!values.json;
  const home = profileDir(values.profile, io.env);
  const profile = await loadProfile(home);
  if (!values.yes) {
    throw new UsageError('this deletes the backup key from this device' + (profile.vault ? ' and from the vault' : profile.realms ? ' and from the realms' : ''), 'add --yes to turn backups off; keep the recovery key or another device if you want to restore them later');
  }
  let deleted = false;
  if (profile.vault) deleted = (await deleteBackupKey(vaultConnection(io, { token: await tokenOption(io, values) }, profile.vault))).deleted;
  if (profile.realms) {
    await deleteFromRealms(await openRealms(io, { saved: profile.realms }));
    deleted = true;
  }
  await removeProfile(home);
  say(io, json, `Backups are off. ${profile.vault ? 'The vault deleted the backup key; ' : profile.realms ? 'Every realm deleted its share; ' : ''}this device no longer holds it.\nThe encrypted backups stay at ${redactUrl(profile.storage)} until you delete them.\n`, {
    profile: home, vaultDeleted: deleted,
  });
  return Exit.ok;
}

async function cmdPassword(io: Io, args: string[]): Promise<number> {
  const { readPassword, openRealms, recoverWithRealms, registerWithRealms, vaultConnection, changePassword } = await passwords();
  const { values, positionals } = parse(args, { 'password-stdin': { type: 'boolean' }, 'password-file': { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' } }, 1);
  if (positionals[0] !== 'change') throw new UsageError('the only password command is `coffer password change`');
  const json = !!values.json;
  const home = profileDir(values.profile, io.env);
  const profile = await loadProfile(home);
  if (!profile.vault && !profile.realms) throw new UsageError('this profile is protected by a recovery key, not a password', 'passwords exist for backups turned on with --vault or --realms');
  let current: string;
  let next: string;
  if (values['password-file'] !== undefined) {
    [current = '', next = ''] = await readSecretFile(values['password-file'], '--password-file', 2);
  } else if (values['password-stdin']) {
    [current = '', next = ''] = await readStdinLines(io, 2);
    if (!current || !next) throw new UsageError('give the current and the new password as the first two lines of standard input');
  } else {
    current = await promptSecret(io, 'Current password: ');
    next = await readPassword(io, {}, true);
  }
  const key = profileKey(profile);
  try {
    if (profile.realms) {
      // The current password first (one counted guess at each realm), then a new registration.
      const realms = await openRealms(io, { saved: profile.realms });
      const got = await recoverWithRealms(realms, current);
      const same = keyHex(got) === profile.key;
      got.wipe();
      if (!same) throw new UsageError('the realms hold another backup key than this profile', 'the account may belong to another backup; check the tokens');
      await registerWithRealms(realms, next, key);
      say(io, json, `Password changed. Each realm allows ${realms.profile.guessesPerRealm} wrong guesses.\n`, { guessesPerRealm: realms.profile.guessesPerRealm });
      return Exit.ok;
    }
    const conn = vaultConnection(io, { token: await tokenOption(io, values) }, profile.vault!);
    const r = await changePassword({ ...conn, password: current, newPassword: next, backupKey: key.expose() });
    say(io, json, `Password changed. The vault allows ${r.maxAttempts} wrong guesses.\n`, { maxAttempts: r.maxAttempts, guessesRemaining: r.guessesRemaining });
    return Exit.ok;
  } finally {
    key.wipe();
  }
}

async function cmdVault(io: Io, args: string[]): Promise<number> {
  const { vaultCommand } = await import('@coffer/vault/cli');
  return vaultCommand(args, { stdout: io.stdout, stderr: io.stderr, stdin: io.stdin });
}

async function cmdRestore(io: Io, args: string[]): Promise<number> {
  const { recoverWithRealms, openRealms, readPassword, recoverKey, vaultConnection } = await passwords();
  const { values, positionals } = parse(
    args,
    {
      storage: { type: 'string' }, 'recovery-key-stdin': { type: 'boolean' }, overwrite: { type: 'boolean' }, backup: { type: 'string' },
      'allow-rollback': { type: 'boolean' }, 'keep-special-modes': { type: 'boolean' }, ...vaultOptions,
    },
    1,
  );
  const json = !!values.json;
  const dir = positionals[0];
  if (!dir) throw new UsageError('where should the backup be restored?', 'coffer restore DIR (a new or empty folder)');
  let seq: number | undefined;
  if (values.backup !== undefined) {
    if (!/^[1-9]\d{0,15}$/.test(values.backup)) throw new UsageError(`--backup takes a backup number, not ${JSON.stringify(values.backup)}`, 'see `coffer status` for the numbers');
    seq = Number(values.backup);
  }
  if (!values.overwrite && !(await isEmptyOrMissing(dir))) throw new TargetNotEmptyError(dir);
  const home = profileDir(values.profile, io.env);
  let storage: Storage;
  let key: SecretKey;
  values.storage ??= io.env['COFFER_STORAGE'] || undefined;
  values.token = await tokenOption(io, values);
  const password = values.vault !== undefined || values.realms !== undefined || values['password-stdin'] !== undefined || values['password-file'] !== undefined;
  if (password && values['recovery-key-stdin']) throw new UsageError('--recovery-key-stdin and --vault or --realms (password) do not go together');
  if (values.vault !== undefined && values.realms !== undefined) throw new UsageError('choose --vault (one realm, OPAQUE) or --realms (several, Juicebox), not both');
  let pinnedMac: string | null = null;
  let location: string;
  if (values.storage) {
    location = values.storage;
    storage = await openStorage(values.storage, storeOptions(io, values));
    // Check that the store holds a backup before a password guess is spent on it.
    await Repository.readConfig(storage);
    if (values.realms !== undefined) key = await recoverWithRealms(await openRealms(io, { realms: values.realms, tokens: values.tokens }), await readPassword(io, values, false));
    else key = password ? await recoverKey(vaultConnection(io, values), await readPassword(io, values, false)) : await readKey(io, values['recovery-key-stdin']);
  } else {
    if (values['recovery-key-stdin'] || password) throw new UsageError('--recovery-key-stdin and --vault need --storage (and so does --realms)', 'give the store to restore from');
    const profile = await loadProfile(home);
    location = profile.storage;
    storage = await openStorage(profile.storage, storeOptions(io, values));
    key = profileKey(profile);
    pinnedMac = profile.configMac ?? null;
  }
  const view = ProgressView.for(io, json, 'restore', values.quiet);
  let codec;
  try {
    const repo = await Repository.open(storage, crypto, key, { pinnedMac });
    codec = workerCodec(repo.keys, repo.config);
    const state = await loadState(home);
    const target = new FolderTarget(dir, { overwrite: !!values.overwrite });
    // Ctrl-C: what was restored so far goes with the process (§6.1 rule 6).
    const stopWatching = onInterrupt(() => target.abort());
    const r = await restore(repo, target, {
      codec, seq, lastSeenSeq: state.seen[repo.config.backupId] ?? null, allowRollback: !!values['allow-rollback'],
      keepSpecialModes: !!values['keep-special-modes'], onProgress: view.update,
      readAhead: transferDefaults(location).readAhead,
      // A device with a profile keeps index copies; a restore with --storage leaves no cache behind.
      ...(values.storage ? {} : { indexCache: new FolderIndexCache(indexCacheDir(home, repo.config.backupId)) }),
    }).finally(stopWatching);
    view.end();
    await rememberSeq(home, repo.config.backupId, r.seq);
    const secs = view.elapsedSeconds();
    say(
      io,
      json,
      r.skippedManifests.map((k) => `Warning: backup #${k.seq} does not open (${k.message}); restored #${r.seq} instead.\n`).join('') +
        `Restored backup #${r.seq} (${printable(r.createdAt)}) into ${dir}: ${r.files} files, ${formatBytes(r.bytes)} in ${secs.toFixed(1)} s, every byte verified.\n` +
        (r.changed.length ? `Warning: ${r.changed.length} files were changing while they were backed up and may be inconsistent:\n${listPaths(r.changed.map(printable))}` : '') +
        target.warnings.map((w) => `Warning: ${w}\n`).join('') +
        (r.specialModesDropped ? `Dropped the setuid, setgid or sticky bits of ${r.specialModesDropped} files (--keep-special-modes keeps them).\n` : ''),
      { ...r, target: dir, seconds: secs, ...(target.warnings.length ? { warnings: target.warnings } : {}) },
    );
    return Exit.ok;
  } finally {
    view.end();
    key.wipe();
    await codec?.close();
  }
}

async function cmdStatus(io: Io, args: string[]): Promise<number> {
  const { values } = parse(args, {}, 0);
  const json = !!values.json;
  const { home, profile, storage, repo, lastSeenSeq } = await openProfileBackup(io, values);
  const refs = await repo.manifests();
  const seqs = refs.map((r) => r.seq);
  const backups = [];
  for (const ref of refs.slice(-10)) {
    try {
      const h = (await repo.readManifest(ref)).header;
      backups.push({ seq: ref.seq, name: ref.name, createdAt: h.createdAt, files: h.files, bytes: h.bytes });
    } catch (e) {
      if (!(e instanceof DamagedBackupError)) throw e;
      backups.push({ seq: ref.seq, name: ref.name, damaged: e.message });
    }
  }
  const objects = (await storage.list(repo.version === 1 ? 'data/' : 'packs/')).length;
  let vault: Record<string, unknown> | undefined;
  if (profile.vault) {
    try {
      const { vaultStatus, vaultConnection } = await passwords();
      vault = { url: redactUrl(profile.vault.url), ...(await vaultStatus(vaultConnection(io, {}, profile.vault))) };
    } catch (e) {
      vault = { url: redactUrl(profile.vault.url), error: (e as Error).message };
    }
  }
  let realms: Awaited<ReturnType<Passwords['realmsStatus']>> | { error: string } | undefined;
  if (profile.realms) {
    try {
      const { realmsStatus, openRealms } = await passwords();
      realms = await realmsStatus(await openRealms(io, { saved: profile.realms }));
    } catch (e) {
      realms = { error: (e as Error).message };
    }
  }
  const data = {
    ...(vault ? { vault } : {}),
    ...(realms ? { realms } : {}),
    profile: home, storage: redactUrl(profile.storage), backupId: repo.config.backupId, format: repo.version, protection: profile.protection,
    backups: seqs.length, newest: seqs.at(-1) ?? null, lastSeen: lastSeenSeq, objects, recent: backups,
  };
  const lines = backups.map((b) => ('damaged' in b ? `  #${b.seq}  damaged: ${b.damaged}` : `  #${b.seq}  ${printable(b.createdAt!)}  ${b.files} files  ${formatBytes(b.bytes!)}`));
  say(
    io,
    json,
    `Profile:    ${home}\nStore:      ${data.storage}\nBackup id:  ${data.backupId}\nProtection: ${profile.protection}\n` +
      (vault
        ? `Vault:      ${vault['url']}: ${'error' in vault ? `unreachable (${vault['error']})` : vault['registered'] ? `${vault['guessesRemaining']} of ${vault['maxAttempts']} guesses left` : vault['destroyed'] ? 'the key was destroyed after too many wrong passwords' : 'no key registered'}\n`
        : '') +
      (realms
        ? 'error' in realms
          ? `Realms:     unreachable (${realms.error})\n`
          : `Realms:     ${realms.realms} (recover ${realms.recoverThreshold}-of-${realms.realms}), each allowing ${realms.guessesPerRealm} wrong guesses\n` +
            `            bound: at most ${realms.bound} password tests for whoever controls or rolls back ${realms.recoverThreshold - 1} realm${realms.recoverThreshold - 1 === 1 ? '' : 's'} (account limit ${realms.accountLimit})\n` +
            realms.states.map((s) => `            ${s.realmId}: ${s.state}${s.error ? ` (${s.error})` : ''}\n`).join('')
        : '') +
      `Backups:    ${seqs.length}${seqs.length ? ` (newest #${data.newest})` : ''}; ${objects} ${repo.version === 1 ? 'stored chunks (format version 1: run `coffer migrate`)' : 'packs'}\n` +
      (lines.length ? `Recent backups:\n${lines.join('\n')}\n` : 'No backup yet: run `coffer backup DIR`.\n'),
    data,
  );
  return Exit.ok;
}

async function cmdVerify(io: Io, args: string[]): Promise<number> {
  const { values } = parse(args, {}, 0);
  const json = !!values.json;
  const { repo, lastSeenSeq, indexCache } = await openProfileBackup(io, values);
  const view = ProgressView.for(io, json, 'verify', values.quiet);
  const codec = workerCodec(repo.keys, repo.config);
  try {
    const r = await verify(repo, { codec, lastSeenSeq, onProgress: view.update, indexCache });
    view.end();
    const ok = r.damaged.length === 0;
    say(
      io,
      json,
      ok
        ? `All ${r.objectsChecked} objects of ${r.manifests.length} backups check out (${formatBytes(r.bytesChecked)}).\n`
        : `${r.damaged.length} damaged objects:\n${r.damaged.map((d) => `  ${d.object}: ${d.reason}`).join('\n')}\n`,
      { ...r },
      ok,
    );
    return ok ? Exit.ok : Exit.damaged;
  } finally {
    view.end();
    await codec.close();
  }
}

const kit: Kit = { parse, say, openProfileBackup, listPaths };

const COMMANDS: Record<string, (io: Io, args: string[]) => Promise<number>> = {
  init: cmdInit,
  backup: cmdBackup,
  restore: cmdRestore,
  status: cmdStatus,
  verify: cmdVerify,
  migrate: cmdMigrate,
  forget: (io, args) => cmdForget(io, args, kit),
  prune: (io, args) => cmdPrune(io, args, kit),
  password: cmdPassword,
  vault: cmdVault,
};

const defaultIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });

/** Runs one `coffer` command line (`argv` without node and the script) and returns its exit code (README "Exit codes"). */
export async function main(argv: string[], io: Io = defaultIo()): Promise<number> {
  const [command, ...rest] = argv;
  const json = rest.includes('--json');
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    io.stdout.write(HELP);
    return command ? Exit.ok : Exit.usage;
  }
  if (command === '--version') {
    io.stdout.write(`coffer ${VERSION}\n`);
    return Exit.ok;
  }
  const run = COMMANDS[command];
  if (!run) return reportError(io, new UsageError(`unknown command ${JSON.stringify(command)}`, 'see `coffer --help`'), json);
  if (command !== 'vault' && (rest.includes('--help') || rest.includes('-h'))) {
    io.stdout.write(COMMAND_HELP[command] ?? HELP);
    return Exit.ok;
  }
  try {
    return await run(io, rest);
  } catch (e) {
    return reportError(io, e, json);
  }
}
