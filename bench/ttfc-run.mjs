// Time to first chat (spec/format.md §6.3): a restore of this device's newest backup into `target`,
// noting when the message databases are restored and verified, beside the whole restore.
//   COFFER_HOME=... node bench/rss.mjs ttfc <target>
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromHex, Repository, restore, SecretKey } from '../packages/core/dist/src/index.js';
import { FolderIndexCache, FolderTarget, nodeCryptoProvider, openStorage, workerCodec } from '../packages/node/dist/src/index.js';

export async function run(target) {
  const home = process.env.COFFER_HOME;
  const profile = JSON.parse(await readFile(join(home, 'profile.json'), 'utf8'));
  const repo = await Repository.open(await openStorage(profile.storage), nodeCryptoProvider, new SecretKey(fromHex(profile.key)));
  const codec = workerCodec(repo.keys, repo.config);
  const t0 = performance.now();
  let firstChatSeconds = null;
  let databases = 0;
  try {
    const m = await repo.readManifest((await repo.manifests()).at(-1));
    const dbs = new Set(m.entries.filter((e) => e.kind === 'file' && /\.(db|sqlite|sqlite3)$/i.test(e.path)).map((e) => e.path));
    databases = dbs.size;
    await restore(repo, new FolderTarget(target), {
      codec,
      indexCache: new FolderIndexCache(join(home, 'cache', repo.config.backupId, 'index')),
      onFile(e) {
        dbs.delete(e.path);
        if (dbs.size === 0 && firstChatSeconds === null) firstChatSeconds = (performance.now() - t0) / 1000;
      },
    });
    return { databases, firstChatSeconds, restoreSeconds: (performance.now() - t0) / 1000 };
  } finally {
    await codec.close();
  }
}
