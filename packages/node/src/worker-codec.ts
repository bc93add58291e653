/**
 * A ChunkCodec that runs on worker threads, so hashing and encryption use every core while the
 * main thread does I/O. Buffers move between threads by transfer, never by copy.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DamagedBackupError, type ChunkCodec, type DamageReason, type DerivedKeys } from '@coffer/core';

interface Pending {
  resolve(v: { id?: string; data: Uint8Array }): void;
  reject(e: unknown): void;
}

interface Slot {
  worker: Worker;
  busy: number;
}

/** The buffers to transfer for a view, when it owns its whole ArrayBuffer; otherwise a copy is made. */
function transferable(data: Uint8Array): { data: Uint8Array; transfer: ArrayBuffer[] } {
  const buf = data.buffer;
  if (buf instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === buf.byteLength) return { data, transfer: [buf] };
  const copy = data.slice();
  return { data: copy, transfer: [copy.buffer as ArrayBuffer] };
}

export function workerCodec(keys: DerivedKeys, segmentSize: number, options: { threads?: number } = {}): ChunkCodec {
  const threads = options.threads ?? Math.max(1, availableParallelism());
  const pending = new Map<number, Pending>();
  let next = 0;
  let failed: unknown = null;
  const slots: Slot[] = [];
  for (let i = 0; i < threads; i++) {
    const worker = new Worker(new URL('./chunk-worker.js', import.meta.url), { workerData: { keys, segmentSize } });
    const slot = { worker, busy: 0 };
    worker.on('message', (m: { n: number; id?: string; data?: Uint8Array; error?: { name: string; message: string; reason?: DamageReason; object?: string } }) => {
      slot.busy--;
      const p = pending.get(m.n);
      pending.delete(m.n);
      if (!p) return;
      if (m.error) {
        p.reject(m.error.reason ? new DamagedBackupError(m.error.reason, m.error.object) : Object.assign(new Error(m.error.message), { name: m.error.name }));
      } else p.resolve({ id: m.id, data: m.data! });
    });
    worker.on('error', (e) => {
      failed = e;
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
    slots.push(slot);
  }
  function call(msg: Record<string, unknown>, data: Uint8Array): Promise<{ id?: string; data: Uint8Array }> {
    if (failed) return Promise.reject(failed);
    const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const n = next++;
    const t = transferable(data);
    return new Promise((resolve, reject) => {
      pending.set(n, { resolve, reject });
      slot.busy++;
      slot.worker.postMessage({ ...msg, n, data: t.data }, t.transfer);
    });
  }
  return {
    async seal(plaintext) {
      const r = await call({ op: 'seal' }, plaintext);
      return { id: r.id!, sealed: r.data };
    },
    async open(id, sealed, expectedLength, checkId) {
      return (await call({ op: 'open', id, expectedLength, checkId }, sealed)).data;
    },
    async close() {
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
