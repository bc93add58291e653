/**
 * A ChunkCodec that runs on worker threads, so hashing and encryption use every core while the
 * main thread does I/O. Buffers move between threads by transfer, never by copy, and are recycled
 * through a small pool, so memory stays flat however much data flows through.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DamagedBackupError, sealedSize, type ChunkCodec, type DamageReason, type DerivedKeys } from '@coffer/core';

interface Reply {
  n: number;
  id?: string;
  data?: Uint8Array;
  input?: ArrayBuffer;
  error?: { name: string; message: string; reason?: DamageReason; object?: string };
}

/** Free ArrayBuffers of a few fixed sizes (a chunk, a sealed chunk); at most `limit` of each are kept. */
class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly sizes: number[];
  constructor(sizes: number[], private readonly limit: number) {
    this.sizes = [...sizes].sort((a, b) => a - b);
    for (const s of sizes) this.free.set(s, []);
  }
  /** A buffer of the smallest pooled size that holds `size` bytes (or exactly `size` if none does). */
  take(size: number): ArrayBuffer {
    const cls = this.sizes.find((s) => s >= size) ?? size;
    return this.free.get(cls)?.pop() ?? new ArrayBuffer(cls);
  }
  give(buf: ArrayBuffer): void {
    const list = this.free.get(buf.byteLength); // a detached buffer has length 0 and is not kept
    if (list && list.length < this.limit) list.push(buf);
  }
}

/** A view that owns its whole ArrayBuffer can be transferred as is; anything else is copied once. */
function ownBuffer(data: Uint8Array, pool: BufferPool): Uint8Array {
  const buf = data.buffer;
  if (buf instanceof ArrayBuffer && data.byteOffset === 0) return data;
  const copy = new Uint8Array(pool.take(data.length), 0, data.length);
  copy.set(data);
  return copy;
}

export function workerCodec(
  keys: DerivedKeys,
  config: { segmentSize: number; chunkSize: number },
  options: { threads?: number } = {},
): ChunkCodec {
  const threads = options.threads ?? Math.max(1, availableParallelism());
  const sealedCapacity = sealedSize(config.chunkSize, config.segmentSize);
  const pool = new BufferPool([config.chunkSize, sealedCapacity], 16);
  const pending = new Map<number, { resolve(r: Reply): void; reject(e: unknown): void }>();
  let next = 0;
  let failed: unknown = null;
  const slots: { worker: Worker; busy: number }[] = [];
  for (let i = 0; i < threads; i++) {
    const worker = new Worker(new URL('./chunk-worker.js', import.meta.url), { workerData: { keys, segmentSize: config.segmentSize } });
    const slot = { worker, busy: 0 };
    worker.on('message', (m: Reply) => {
      slot.busy--;
      if (m.input) pool.give(m.input);
      const p = pending.get(m.n);
      pending.delete(m.n);
      if (!p) return;
      if (m.error) {
        p.reject(m.error.reason ? new DamagedBackupError(m.error.reason, m.error.object) : Object.assign(new Error(m.error.message), { name: m.error.name }));
      } else p.resolve(m);
    });
    worker.on('error', (e) => {
      failed = e;
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
    slots.push(slot);
  }
  function call(msg: Record<string, unknown>, data: Uint8Array, outSize: number): Promise<Reply> {
    if (failed) return Promise.reject(failed);
    const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const n = next++;
    const input = ownBuffer(data, pool);
    const out = new Uint8Array(pool.take(outSize));
    return new Promise((resolve, reject) => {
      pending.set(n, { resolve, reject });
      slot.busy++;
      slot.worker.postMessage({ ...msg, n, data: input, out }, [input.buffer as ArrayBuffer, out.buffer]);
    });
  }
  return {
    async seal(plaintext) {
      const r = await call({ op: 'seal' }, plaintext, sealedCapacity);
      return { id: r.id!, sealed: r.data! };
    },
    async open(id, sealed, expectedLength, checkId) {
      return (await call({ op: 'open', id, expectedLength, checkId }, sealed, Math.max(expectedLength, config.chunkSize))).data!;
    },
    alloc(size) {
      return new Uint8Array(pool.take(size), 0, size);
    },
    release(buffer) {
      if (buffer.buffer instanceof ArrayBuffer) pool.give(buffer.buffer);
    },
    async close() {
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
