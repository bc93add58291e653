/**
 * The chunk pipeline on worker threads (core's workerPoolCodec over node:worker_threads), so hashing
 * and encryption use every core while the main thread does I/O.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { workerPoolCodec, type ChunkCodec, type DerivedKeys, type WorkerPort } from '@coffer/core/adapters';
import { minorGcEvery } from './gc.js';

function spawnWorker(): WorkerPort {
  const w = new Worker(new URL('./chunk-worker.js', import.meta.url));
  return {
    post: (m, transfer) => w.postMessage(m, transfer),
    onMessage: (h) => w.on('message', h),
    onError: (h) => w.on('error', h),
    terminate: () => w.terminate(),
  };
}

/** The chunk codec on worker threads (one per core by default), for backup, restore and verify options. */
export function workerCodec(keys: DerivedKeys, config: { segmentSize: number; chunkSize: number }, options: { threads?: number } = {}): ChunkCodec {
  const codec = workerPoolCodec(spawnWorker, { keys, segmentSize: config.segmentSize }, { threads: options.threads ?? Math.max(1, availableParallelism()), chunkSize: config.chunkSize });
  // Buffers that come back from the workers, and those the pool no longer keeps, are garbage the
  // main thread's small heap would let pile up (see gc.ts): a young-generation collection every few
  // batches keeps them to a few MiB.
  const collect = minorGcEvery(4);
  return {
    ...codec,
    seal: (chunks) => (collect(), codec.seal(chunks)),
    open: (blobs, checkId) => codec.open(blobs, checkId),
  };
}
