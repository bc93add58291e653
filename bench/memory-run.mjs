// CPU-bound figures: backup of a folder into the in-memory store, and restore from it into a target
// that checks every byte but writes nothing (so the disk is not measured).
import { backup, generateBackupKey, MemoryStorage, Repository, restore } from '../packages/core/dist/src/index.js';
import { FolderSource, nodeCryptoProvider, workerCodec } from '../packages/node/dist/src/index.js';

const nullTarget = {
  async begin() {}, async dir() {}, async symlink() {}, async commit() {}, async abort() {},
  async file() {
    return { async write() {}, async close() {} };
  },
};

export async function run(dir) {
  const storage = new MemoryStorage();
  const repo = await Repository.init(storage, nodeCryptoProvider, generateBackupKey(nodeCryptoProvider));
  const codec = workerCodec(repo.keys, repo.config);
  try {
    let t = performance.now();
    const b = await backup(repo, new FolderSource(dir), { codec });
    const backupSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    await restore(repo, nullTarget, { codec });
    const restoreSeconds = (performance.now() - t) / 1000;
    return { bytes: b.bytes, backupSeconds, restoreSeconds };
  } finally {
    await codec.close();
  }
}
