/**
 * The chunk pipeline on worker threads (core's workerPoolCodec over node:worker_threads), so hashing
 * and encryption use every core while the main thread does I/O.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { workerPoolCodec, type ChunkCodec, type DerivedKeys, type WorkerPort } from '@coffer/core';

function spawnWorker(): WorkerPort {
  const w = new Worker(new URL('./chunk-worker.js', import.meta.url));
  return {
    post: (m, transfer) => w.postMessage(m, transfer),
    onMessage: (h) => w.on('message', h),
    onError: (h) => w.on('error', h),
    terminate: () => w.terminate(),
  };
}

export function workerCodec(keys: DerivedKeys, config: { segmentSize: number; chunkSize: number }, options: { threads?: number } = {}): ChunkCodec {
  return workerPoolCodec(spawnWorker, { keys, segmentSize: config.segmentSize }, { threads: options.threads ?? Math.max(1, availableParallelism()), chunkSize: config.chunkSize });
}
