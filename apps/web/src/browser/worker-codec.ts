/**
 * A ChunkCodec that seals chunks on Web Workers (one per core), so a backup in the page uses every
 * core as the CLI's worker threads do. Opening (restore) stays on the calling thread, where the
 * engine's damage classes are thrown as they are.
 */
import { inlineCodec, webCryptoProvider, type ChunkCodec, type DerivedKeys } from '@coffer/core';

export function workerCodec(keys: DerivedKeys, segmentSize: number, workerUrl = '/chunk-worker.js', threads = Math.max(1, Math.min(8, navigator.hardwareConcurrency || 2))): ChunkCodec {
  const inline = inlineCodec(webCryptoProvider, keys, segmentSize);
  const pending = new Map<number, { resolve(r: { id: string; sealed: Uint8Array }): void; reject(e: unknown): void }>();
  const workers = Array.from({ length: threads }, () => {
    const w = { worker: new Worker(workerUrl, { type: 'module' }), busy: 0 };
    w.worker.postMessage({ init: true, keys, segmentSize });
    w.worker.onmessage = (e: MessageEvent) => {
      const r = e.data as { n: number; id?: string; sealed?: Uint8Array; error?: string };
      const p = pending.get(r.n);
      pending.delete(r.n);
      w.busy--;
      if (r.error !== undefined) p?.reject(new Error(`sealing a chunk failed on a worker: ${r.error}`));
      else p?.resolve({ id: r.id!, sealed: r.sealed! });
    };
    w.worker.onerror = (e) => {
      for (const p of pending.values()) p.reject(new Error(`a chunk worker failed: ${e.message}`));
      pending.clear();
    };
    return w;
  });
  let next = 0;
  return {
    seal(plaintext) {
      const n = next++;
      const w = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      w.busy++;
      return new Promise((resolve, reject) => {
        pending.set(n, { resolve, reject });
        // Takes ownership of the chunk (ChunkCodec.seal allows it): its buffer moves to the worker.
        const whole = plaintext.byteOffset === 0 && plaintext.byteLength === plaintext.buffer.byteLength;
        const data = whole ? plaintext : plaintext.slice();
        w.worker.postMessage({ n, plaintext: data }, [data.buffer as ArrayBuffer]);
      });
    },
    open: (id, sealed, expectedLength, checkId) => inline.open(id, sealed, expectedLength, checkId),
    async close() {
      for (const w of workers) w.worker.terminate();
      for (const p of pending.values()) p.reject(new Error('the chunk workers were closed'));
      pending.clear();
    },
  };
}
