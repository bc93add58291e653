/**
 * The chunk pipeline (spec/format.md §3.1, §4): naming and sealing chunks into blobs, and opening
 * blobs, in one place. `inlineCodec` runs it on the calling thread; `workerPoolCodec` runs the same
 * functions on a pool of workers (Node worker threads or Web Workers), in batches, so that small
 * chunks cost one message per batch and every core is used.
 */
import type { CryptoProvider } from './crypto.js';
import { DamagedBackupError, type DamageReason } from './errors.js';
import type { DerivedKeys } from './keys.js';
import { dataObjectName } from './layout.js';
import { chunkId, ObjectType, openObject, sealedSize, sealObject } from './object.js';

/** Chunks named and sealed as blobs: `sealed[i]` is a view into `buffer`. */
export interface SealedBatch {
  ids: string[];
  sealed: Uint8Array[];
  /** The one buffer every view shares; give it back with `release` once copied. */
  buffer: Uint8Array;
}

/** A blob to open, stored under `data/<id>` (version 1) or in a pack (version 2). */
export interface BlobToOpen {
  id: string;
  sealed: Uint8Array;
  plainLength: number;
}

/** Opened blobs: `plain[i]` is a view into `buffer`. */
export interface OpenedBatch {
  plain: Uint8Array[];
  buffer: Uint8Array;
}

export interface ChunkCodec {
  /** Names and seals a batch of chunks. It may take ownership of them (their buffers may move to a worker). */
  seal(chunks: Uint8Array[]): Promise<SealedBatch>;
  /** Opens blobs (§4.4, each checked as `data/<id>`); with `checkId` also recomputes each id (§4.4 step 5). */
  open(blobs: BlobToOpen[], checkId: boolean): Promise<OpenedBatch>;
  /** A buffer for reading a chunk into (recycled when possible). */
  alloc?(size: number): Uint8Array;
  /** Takes back a buffer from `alloc`, or a batch's `buffer`, once the caller is done with it. */
  release?(buffer: Uint8Array): void;
  close(): Promise<void>;
}

/** Seals `chunks` into consecutive regions of `out` (which must hold them all). */
export async function sealChunks(crypto: CryptoProvider, keys: DerivedKeys, segmentSize: number, chunks: Uint8Array[], out?: Uint8Array): Promise<SealedBatch> {
  const total = chunks.reduce((n, c) => n + sealedSize(c.length, segmentSize), 0);
  const buffer = out ? out.subarray(0, total) : new Uint8Array(total);
  const ids: string[] = [];
  const sealed: Uint8Array[] = [];
  let o = 0;
  for (const c of chunks) {
    const id = await chunkId(crypto, keys, c);
    const s = await sealObject(crypto, keys, { type: ObjectType.data, id }, c, { segmentSize, into: buffer.subarray(o) });
    ids.push(id);
    sealed.push(s);
    o += s.length;
  }
  return { ids, sealed, buffer };
}

/** Opens blobs into consecutive regions of `out` (which must hold every plaintext). */
export async function openBlobs(crypto: CryptoProvider, keys: DerivedKeys, segmentSize: number, blobs: BlobToOpen[], checkId: boolean, out?: Uint8Array): Promise<OpenedBatch> {
  const total = blobs.reduce((n, b) => n + b.plainLength, 0);
  const buffer = out ? out.subarray(0, total) : new Uint8Array(total);
  const plain: Uint8Array[] = [];
  let o = 0;
  for (const b of blobs) {
    const name = dataObjectName(b.id);
    const p = await openObject(crypto, keys, { type: ObjectType.data, id: b.id }, b.sealed, name, { segmentSize, expectedLength: b.plainLength, into: buffer.subarray(o) });
    if (checkId && (await chunkId(crypto, keys, p)) !== b.id) throw new DamagedBackupError('misplaced', name, { detail: 'content does not match its name' });
    plain.push(p);
    o += p.length;
  }
  return { plain, buffer };
}

/** A ChunkCodec on the calling thread, with any CryptoProvider (browsers, tests, small jobs). */
export function inlineCodec(crypto: CryptoProvider, keys: DerivedKeys, segmentSize: number): ChunkCodec {
  return {
    seal: (chunks) => sealChunks(crypto, keys, segmentSize, chunks),
    open: (blobs, checkId) => openBlobs(crypto, keys, segmentSize, blobs, checkId),
    async close() {},
  };
}

/* ------------------------------------------------------------------------------------------------
 * Workers
 * --------------------------------------------------------------------------------------------- */

/** What a pool needs of a worker: Node's worker_threads and browsers' Web Workers both fit. */
export interface WorkerPort {
  post(message: unknown, transfer: ArrayBuffer[]): void;
  onMessage(handler: (message: unknown) => void): void;
  onError(handler: (error: unknown) => void): void;
  terminate(): Promise<unknown> | void;
}

/** The first message a codec worker gets. */
export interface CodecWorkerInit {
  keys: DerivedKeys;
  segmentSize: number;
}

export type CodecRequest =
  | { op: 'seal'; n: number; chunks: Uint8Array[]; out: Uint8Array }
  | { op: 'open'; n: number; blobs: BlobToOpen[]; checkId: boolean; out: Uint8Array };

interface CodecReply {
  n: number;
  ids?: string[];
  lengths?: number[];
  out?: Uint8Array;
  /** Input buffers, handed back for reuse. */
  inputs?: ArrayBuffer[];
  error?: { name: string; message: string; reason?: DamageReason; object?: string; detail?: string };
}

const ownBuffers = (views: Uint8Array[]): ArrayBuffer[] => [...new Set(views.map((v) => v.buffer as ArrayBuffer))];

/**
 * The body of a codec worker: answers one request with the same functions `inlineCodec` uses.
 * Worker scripts (Node's and the browser's) call this for every message after the init message.
 */
export async function answerCodecRequest(crypto: CryptoProvider, init: CodecWorkerInit, m: CodecRequest): Promise<{ reply: CodecReply; transfer: ArrayBuffer[] }> {
  try {
    if (m.op === 'seal') {
      const r = await sealChunks(crypto, init.keys, init.segmentSize, m.chunks, m.out);
      const inputs = ownBuffers(m.chunks);
      return { reply: { n: m.n, ids: r.ids, lengths: r.sealed.map((s) => s.length), out: r.buffer, inputs }, transfer: [m.out.buffer as ArrayBuffer, ...inputs] };
    }
    const r = await openBlobs(crypto, init.keys, init.segmentSize, m.blobs, m.checkId, m.out);
    const inputs = ownBuffers(m.blobs.map((b) => b.sealed));
    return { reply: { n: m.n, lengths: r.plain.map((p) => p.length), out: r.buffer, inputs }, transfer: [m.out.buffer as ArrayBuffer, ...inputs] };
  } catch (e) {
    const err = e as Error;
    const damaged = e instanceof DamagedBackupError;
    return { reply: { n: m.n, error: { name: err?.name, message: err?.message, ...(damaged ? { reason: e.reason, object: e.object, detail: e.detail } : {}) } }, transfer: [] };
  }
}

/** Free ArrayBuffers of a few fixed sizes; at most `limit` of each are kept. */
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly sizes: number[];
  constructor(sizes: number[], private readonly limit: number) {
    this.sizes = [...new Set(sizes)].sort((a, b) => a - b);
    for (const s of this.sizes) this.free.set(s, []);
  }
  /** Buffers this pool made: only these, and views that cover a whole buffer, are ever transferred. */
  private readonly issued = new WeakSet<ArrayBuffer>();
  /** A buffer of the smallest pooled size that holds `size` bytes, or of exactly `size` if none does. */
  take(size: number): ArrayBuffer {
    const cls = this.sizes.find((s) => s >= size) ?? size;
    const buf = this.free.get(cls)?.pop() ?? new ArrayBuffer(cls);
    this.issued.add(buf);
    return buf;
  }
  owns(buf: ArrayBufferLike): boolean {
    return buf instanceof ArrayBuffer && this.issued.has(buf);
  }
  give(buf: ArrayBuffer): void {
    const list = this.free.get(buf.byteLength); // a detached buffer has length 0 and is not kept
    if (list && list.length < this.limit) list.push(buf);
  }
}

/**
 * Views whose buffers can move to a worker as they are: a view of a whole buffer, or of a buffer
 * this pool made (several views of one such buffer move together). Anything else (a slice of
 * Node's shared Buffer pool, say) is copied once into a pooled buffer.
 */
function transferable(views: Uint8Array[], pool: BufferPool): Uint8Array[] {
  return views.map((v) => {
    if (v.buffer instanceof ArrayBuffer && ((v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) || pool.owns(v.buffer))) return v;
    const copy = new Uint8Array(pool.take(v.length), 0, v.length);
    copy.set(v);
    return copy;
  });
}

/**
 * A ChunkCodec on a pool of workers. `spawn` starts one worker running a script that answers with
 * `answerCodecRequest` (after it got `init`). Buffers move by transfer and are recycled.
 */
export function workerPoolCodec(spawn: () => WorkerPort, init: CodecWorkerInit, options: { threads: number; chunkSize: number }): ChunkCodec {
  const sealedChunk = sealedSize(options.chunkSize, init.segmentSize);
  const pool = new BufferPool([options.chunkSize, sealedChunk], 16);
  const pending = new Map<number, { resolve(r: CodecReply): void; reject(e: unknown): void }>();
  let next = 0;
  let failed: unknown = null;
  const slots = Array.from({ length: Math.max(1, options.threads) }, () => {
    const port = spawn();
    const slot = { port, busy: 0 };
    port.post(init, []);
    port.onMessage((message) => {
      const m = message as CodecReply;
      slot.busy--;
      for (const b of m.inputs ?? []) pool.give(b);
      const p = pending.get(m.n);
      pending.delete(m.n);
      if (!p) return;
      if (m.error) {
        p.reject(m.error.reason ? new DamagedBackupError(m.error.reason, m.error.object, m.error.detail ? { detail: m.error.detail } : {}) : Object.assign(new Error(m.error.message), { name: m.error.name }));
      } else p.resolve(m);
    });
    port.onError((e) => {
      failed = e;
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
    return slot;
  });
  type Request = { op: 'seal'; chunks: Uint8Array[]; out: Uint8Array } | { op: 'open'; blobs: BlobToOpen[]; checkId: boolean; out: Uint8Array };
  function call(request: Request, inputs: Uint8Array[]): Promise<CodecReply> {
    if (failed) return Promise.reject(failed);
    const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const n = next++;
    const out = request.out;
    return new Promise((resolve, reject) => {
      pending.set(n, { resolve, reject });
      slot.busy++;
      slot.port.post({ ...request, n }, [out.buffer as ArrayBuffer, ...ownBuffers(inputs)]);
    });
  }
  const views = (out: Uint8Array, lengths: number[]) => {
    let o = 0;
    return lengths.map((l) => out.subarray(o, (o += l)));
  };
  return {
    async seal(chunks) {
      const moved = transferable(chunks, pool);
      const size = moved.reduce((n, c) => n + sealedSize(c.length, init.segmentSize), 0);
      const r = await call({ op: 'seal', chunks: moved, out: new Uint8Array(pool.take(size), 0, size) }, moved);
      return { ids: r.ids!, sealed: views(r.out!, r.lengths!), buffer: r.out! };
    },
    async open(blobs, checkId) {
      const moved = transferable(blobs.map((b) => b.sealed), pool);
      const size = blobs.reduce((n, b) => n + b.plainLength, 0);
      const r = await call(
        { op: 'open', blobs: blobs.map((b, i) => ({ ...b, sealed: moved[i]! })), checkId, out: new Uint8Array(pool.take(size), 0, size) },
        moved,
      );
      return { plain: views(r.out!, r.lengths!), buffer: r.out! };
    },
    alloc(size) {
      return new Uint8Array(pool.take(size), 0, size);
    },
    release(buffer) {
      if (buffer.buffer instanceof ArrayBuffer) pool.give(buffer.buffer);
    },
    async close() {
      await Promise.all(slots.map((s) => s.port.terminate()));
      for (const p of pending.values()) p.reject(new Error('the codec workers were closed'));
      pending.clear();
    },
  };
}
