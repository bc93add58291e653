// The page (bundled by serve.mjs): backs up the app's data to the HTTP object store and restores
// it, all encrypted in the browser with Web Crypto. Uses @coffer/core and @coffer/http only.
import { backup, formatRecoveryKey, generateBackupKey, parseRecoveryKey, Repository, restore, webCryptoProvider as crypto } from '@coffer/core';
import { HttpStorage } from '@coffer/http';

const log = (line) => (document.getElementById('log').textContent += line + '\n');

/** The app's data as a BackupSource: here files in memory; an app would read IndexedDB or OPFS. */
class AppData {
  constructor(files) {
    this.files = files;
  }
  /** @returns {Promise<import('@coffer/core').TreeEntry[]>} */
  async scan() {
    const mtimeNs = String(BigInt(Date.now()) * 1_000_000n);
    return [...this.files].map(([path, data]) => ({ path, kind: 'file', mode: 0o600, mtimeNs, size: data.length }));
  }
  async *read(entry, chunkSize) {
    const data = this.files.get(entry.path);
    for (let at = 0; at < data.length; at += chunkSize) yield data.slice(at, at + chunkSize);
  }
}

/** Where a restore writes (a RestoreTarget): here memory; an app would write to OPFS. */
class RestoredData {
  files = new Map();
  async begin() {}
  async dir() {}
  async file(entry) {
    const bytes = new Uint8Array(entry.size);
    this.files.set(entry.path, bytes);
    return { write: async (offset, data) => bytes.set(data, offset), close: async () => {} };
  }
  async symlink() {
    return false; // this target holds no symlinks
  }
  async commit() {}
  async abort() {
    this.files.clear();
  }
}

async function main() {
  const photo = crypto.randomBytes(200_000);
  const data = new Map([
    ['messages.json', new TextEncoder().encode(JSON.stringify([{ from: 'alice', text: 'lunch at noon?' }]))],
    ['media/photo.jpg', photo],
  ]);

  // This device: K, shown once as the recovery key; the store is the app server's /store/.
  const key = generateBackupKey(crypto);
  const recoveryKey = formatRecoveryKey(key);
  const storage = new HttpStorage(new URL('/store/', location.href).href);
  const repo = await Repository.init(storage, crypto, key);
  const done = await backup(repo, new AppData(data));
  log(`backed up ${done.files} files (${done.bytes} bytes) over HTTP`);

  // A new device: the store and the recovery key.
  const again = await Repository.open(new HttpStorage(new URL('/store/', location.href).href), crypto, parseRecoveryKey(recoveryKey));
  const target = new RestoredData();
  const back = await restore(again, target);
  log(`restored ${back.files} files (${back.bytes} bytes)`);
  const same = [...data].every(([path, bytes]) => {
    const got = target.files.get(path);
    return got && got.length === bytes.length && got.every((b, i) => b === bytes[i]);
  });
  if (!same) throw new Error('the restored files differ');
  log('the restored files are identical to the originals');
}

main().then(
  () => (document.body.dataset.result = 'ok'),
  (e) => {
    log(`failed: ${e.message}`);
    document.body.dataset.result = 'failed';
  },
);
