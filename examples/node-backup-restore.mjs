// Back up a folder into a store (here another folder, standing in for the cloud), then restore it
// on a "new device" that has nothing but the store and the 64-digit recovery key.
//
//   node examples/node-backup-restore.mjs [WORK_DIR]
//
// Uses @coffer/core (keys, repository, backup, restore) and @coffer/node (Node's crypto, a local
// folder store, a folder to back up and one to restore into).
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup, formatRecoveryKey, generateBackupKey, parseRecoveryKey, Repository, restore } from '@coffer/core';
import { FolderSource, FolderTarget, LocalStorage, nodeCryptoProvider as crypto } from '@coffer/node';

const work = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'coffer-example-')));
const chat = join(work, 'chat');
const cloud = join(work, 'cloud');
const restored = join(work, 'restored');

// Something to back up: a message log and a "photo".
await mkdir(join(chat, 'media'), { recursive: true });
await writeFile(join(chat, 'messages.txt'), 'alice: the keys are under the mat\nbob: thanks!\n');
await writeFile(join(chat, 'media', 'photo.bin'), new Uint8Array(300_000).map((_, i) => (i * 7) % 251));

// 1. This device makes the backup key K. The app shows it once as the recovery key (or keeps it
//    in a vault behind a password: examples/vault-password.mjs).
const key = generateBackupKey(crypto);
const recoveryKey = formatRecoveryKey(key);

// 2. A new store, and a backup of the folder: only ciphertext reaches the store.
const storage = await LocalStorage.open(cloud, { create: true });
const repo = await Repository.init(storage, crypto, key);
const source = new FolderSource(chat);
const done = await backup(repo, source);
await source.close();
console.log(`backed up ${done.files} files (${done.bytes} bytes) as backup #${done.seq}`);

// 3. A new device: the store and the recovery key the user typed back.
const again = await Repository.open(await LocalStorage.open(cloud), crypto, parseRecoveryKey(recoveryKey));
const back = await restore(again, new FolderTarget(restored));
console.log(`restored ${back.files} files (${back.bytes} bytes) from backup #${back.seq}`);

// The restored folder holds the same bytes.
for (const file of ['messages.txt', join('media', 'photo.bin')]) {
  const [a, b] = await Promise.all([readFile(join(chat, file)), readFile(join(restored, file))]);
  if (!a.equals(b)) throw new Error(`${file} differs after the restore`);
}
console.log('the restored files are identical to the originals');
