// Password protection through a Backup Key Vault: the backup key K is registered with the vault
// under a password (OPAQUE: the vault never sees the password), and a new device gets K back with
// the password alone. Each wrong guess is counted; after 10 the vault destroys K for good.
//
//   node examples/vault-password.mjs [WORK_DIR]
//
// Uses @coffer/core/vault (the client), @coffer/core and @coffer/node (the backup), and
// @coffer/vault/cli to run a development vault in this process. In production the vault is its own
// service (`coffer vault serve`, docs/vault.md) and the app's sign-in issues the account tokens.
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup, generateBackupKey, Repository, restore, SecretKey } from '@coffer/core';
import { recoverBackupKey, registerBackupKey, WrongPasswordError } from '@coffer/core/vault';
import { FolderSource, FolderTarget, LocalStorage, nodeCryptoProvider as crypto } from '@coffer/node';
import { vaultCommand } from '@coffer/vault/cli';

const work = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'coffer-example-')));

/** Runs one `coffer vault` command in this process; its JSON lines, or an error with its output. */
async function vault(args, more = {}) {
  let out = '';
  let err = '';
  const io = { stdout: { write: (s) => (out += s) }, stderr: { write: (s) => (err += s) }, ...more };
  const code = await vaultCommand([...args, '--data-dir', join(work, 'vault'), '--json'], io);
  if (code !== 0) throw new Error(`coffer vault ${args[0]} exited ${code}:\n${out}${err}`);
  return out.split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

// The vault's operator: a realm (its keys in SoftHSM2 when installed, else a development-only
// key file), a token for the account "alice", and the server on a free port.
const [realm] = await vault(['init']);
const [{ token }] = await vault(['token', '--account', 'alice']);
const stop = new AbortController();
let listening;
const url = new Promise((resolve) => (listening = resolve));
const serving = vault(['serve', '--port', '0'], { signal: stop.signal, onListening: listening });
// The app pins the realm's public key (shipped with the app), and talks to the vault over HTTP.
const connection = { vaultUrl: await url, realmPublicKey: realm.realmPublicKey, token };

try {
  // Device 1: makes K, registers it under the user's password, and backs up.
  const key = generateBackupKey(crypto);
  const registered = await registerBackupKey({ ...connection, password: 'correct horse battery staple', backupKey: key.expose() });
  console.log(`backup key registered with the vault: ${registered.maxAttempts} guesses allowed`);
  await mkdir(join(work, 'chat'), { recursive: true });
  await writeFile(join(work, 'chat', 'messages.txt'), 'alice: see you at noon\n');
  const storage = await LocalStorage.open(join(work, 'cloud'), { create: true });
  const source = new FolderSource(join(work, 'chat'));
  await backup(await Repository.init(storage, crypto, key), source);
  await source.close();

  // Device 2 has nothing but the store and the password. A typo costs one guess.
  try {
    await recoverBackupKey({ ...connection, password: 'correct horse battery stapler' });
    throw new Error('a wrong password opened the vault');
  } catch (e) {
    if (!(e instanceof WrongPasswordError)) throw e;
    console.log(`wrong password: ${e.guessesRemaining} guesses remain`);
  }
  const recovered = new SecretKey(await recoverBackupKey({ ...connection, password: 'correct horse battery staple' }));
  console.log('the right password recovered the backup key');
  const repo = await Repository.open(await LocalStorage.open(join(work, 'cloud')), crypto, recovered);
  await restore(repo, new FolderTarget(join(work, 'restored')));
  console.log(`restored: ${(await readFile(join(work, 'restored', 'messages.txt'), 'utf8')).trim()}`);
} finally {
  stop.abort();
  await serving;
}
