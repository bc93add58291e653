/**
 * The chunk pipeline on Web Workers (one per core): core's workerPoolCodec, the same pool the CLI
 * runs on worker threads, so a backup in the page uses every core.
 */
import { DEFAULT_CHUNK_SIZE, type ChunkCodec } from '@coffer/core';
import { workerPoolCodec, type DerivedKeys, type WorkerPort } from '@coffer/core/adapters';

export function workerCodec(keys: DerivedKeys, segmentSize: number, workerUrl = '/chunk-worker.js', threads = Math.max(1, Math.min(8, navigator.hardwareConcurrency || 2))): ChunkCodec {
  const spawn = (): WorkerPort => {
    const w = new Worker(workerUrl, { type: 'module' });
    return {
      post: (m, transfer) => w.postMessage(m, transfer),
      onMessage: (h) => (w.onmessage = (e: MessageEvent) => h(e.data)),
      onError: (h) => (w.onerror = (e) => h(new Error(`a chunk worker failed: ${e.message}`))),
      terminate: () => w.terminate(),
    };
  };
  return workerPoolCodec(spawn, { keys, segmentSize }, { threads, chunkSize: DEFAULT_CHUNK_SIZE });
}
