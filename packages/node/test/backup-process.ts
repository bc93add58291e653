/**
 * A backup in a process of its own, for the resume test (which kills it):
 *   COFFER_TEST_KEY=<hex> AWS_...=... node dist/test/backup-process.js LOCATION SOURCE_DIR
 */
import { backup, fromHex, Repository, SecretKey } from '@coffer/core';
import { FolderSource, nodeCryptoProvider as crypto, openStorage, workerCodec } from '@coffer/node';

const [location, source] = process.argv.slice(2);
const storage = await openStorage(location!);
const repo = await Repository.open(storage, crypto, new SecretKey(fromHex(process.env.COFFER_TEST_KEY!)));
const codec = workerCodec(repo.keys, repo.config);
try {
  const r = await backup(repo, new FolderSource(source!), { codec });
  process.stdout.write(JSON.stringify(r) + '\n');
} finally {
  await codec.close();
  await storage.close?.();
}
