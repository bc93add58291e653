/**
 * A ChunkCodec that seals chunks on Web Workers (one per core), so a backup in the page uses every
 * core as the CLI's worker threads do. Opening (restore) stays on the calling thread, where the
 * engine's damage classes are thrown as they are.
 *
 * Memory stays flat however large the files: the page lends each worker the plaintext and an
 * output buffer, both transferred (never copied) and both coming back with the result, and hands
 * them out again (`alloc`, `release`). Buffers made on a worker and sent to the page pile up there
 * instead: the page's garbage collector runs late for them (measured with a 0.5-2 GiB video: the
 * renderer peaked at 400-475 MB that way, up to 1.2 GB when the page itself allocated little; with
 * lent buffers, 300-350 MB).
 */
import { inlineCodec, sealedSize, webCryptoProvider, type ChunkCodec, type DerivedKeys } from '@coffer/core';

/** Buffers by size, each pool bounded. */
class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  take(size: number): Uint8Array {
    return this.free.get(size)?.pop() ?? new Uint8Array(size);
  }
  /** Takes back a buffer that is a whole ArrayBuffer (anything else is left to the collector). */
  give(b: Uint8Array): void {
    if (b.byteOffset !== 0 || b.byteLength !== b.buffer.byteLength) return;
    const list = this.free.get(b.byteLength) ?? [];
    if (list.length < 64) list.push(b);
    this.free.set(b.byteLength, list);
  }
}

export function workerCodec(keys: DerivedKeys, segmentSize: number, workerUrl = '/chunk-worker.js', threads = Math.max(1, Math.min(8, navigator.hardwareConcurrency || 2))): ChunkCodec {
  const inline = inlineCodec(webCryptoProvider, keys, segmentSize);
  const pool = new BufferPool();
  const pending = new Map<number, { resolve(r: { id: string; sealed: Uint8Array }): void; reject(e: unknown): void }>();
  const workers = Array.from({ length: threads }, () => {
    const w = { worker: new Worker(workerUrl, { type: 'module' }), busy: 0 };
    w.worker.postMessage({ init: true, keys, segmentSize });
    w.worker.onmessage = (e: MessageEvent) => {
      const r = e.data as { n: number; id?: string; length?: number; plaintext: Uint8Array; out: Uint8Array; error?: string };
      const p = pending.get(r.n);
      pending.delete(r.n);
      w.busy--;
      pool.give(r.plaintext);
      if (r.error !== undefined) {
        pool.give(r.out);
        p?.reject(new Error(`sealing a chunk failed on a worker: ${r.error}`));
      } else {
        p?.resolve({ id: r.id!, sealed: r.out.subarray(0, r.length!) });
      }
    };
    w.worker.onerror = (e) => {
      for (const p of pending.values()) p.reject(new Error(`a chunk worker failed: ${e.message}`));
      pending.clear();
    };
    return w;
  });
  let next = 0;
  return {
    alloc: (size) => pool.take(size),
    release: (buffer) => pool.give(new Uint8Array(buffer.buffer, 0, buffer.buffer.byteLength)),
    seal(plaintext) {
      const n = next++;
      const w = workers.reduce((a, b) => (b.busy < a.busy ? b : a));
      w.busy++;
      return new Promise((resolve, reject) => {
        pending.set(n, { resolve, reject });
        // Takes ownership of the chunk (ChunkCodec.seal allows it): its buffer moves to the worker.
        const whole = plaintext.byteOffset === 0 && plaintext.byteLength === plaintext.buffer.byteLength;
        const data = whole ? plaintext : plaintext.slice();
        const out = pool.take(sealedSize(data.byteLength, segmentSize));
        w.worker.postMessage({ n, plaintext: data, out }, [data.buffer as ArrayBuffer, out.buffer as ArrayBuffer]);
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
