/**
 * `@coffer/core/adapters`: the building blocks for code that plugs into the engine rather than
 * calls it: a Storage on a file-like backend (object names to sharded paths, spec/format.md §7.1),
 * an IndexCache (names of index objects, §3.3), a CryptoProvider (copying into recycled buffers),
 * a BackupSource (parent paths of entries), and the chunk codec run on Web Workers or worker
 * threads (the messages between the pool and its workers). Apps that only back up and restore
 * need none of it.
 *
 * @packageDocumentation
 */
export { place } from './crypto.js';
export { idOf, indexName, isShardFolder, shardedPath, unshardedName } from './layout.js';
export { parentPath } from './manifest.js';
export type { DerivedKeys } from './keys.js';
export {
  answerCodecRequest, inlineCodec, workerPoolCodec, type BlobToOpen, type ChunkCodec, type CodecReply, type CodecRequest, type CodecWorkerInit,
  type OpenedBatch, type SealedBatch, type WorkerPort,
} from './codec.js';
