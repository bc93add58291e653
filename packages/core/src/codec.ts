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

/** Names, seals and opens chunks for the engine: inline on this thread by default, or on workers (`workerCodec` in @coffer/node, `workerPoolCodec` in @coffer/core/adapters). */
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

/**
 * Opens blobs into consecutive regions of `out` (which must hold every plaintext). `out` may be the
 * very buffer the sealed blobs lie in, back to back from its start: every segment is decrypted
 * before its plaintext is written, at a position no later than where the segment was.
 */
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

/**
 * One request to a codec worker. Batches travel as one buffer each way with a table of lengths (and
 * ids as one string of hex), so a batch of a thousand small chunks is one cheap message, not a
 * thousand cloned objects.
 */
export type CodecRequest =
  | { op: 'seal'; n: number; data: Uint8Array; lengths: Uint32Array; out: Uint8Array }
  | { op: 'open'; n: number; data: Uint8Array; lengths: Uint32Array; plainLengths: Uint32Array; ids: string; checkId: boolean };

/** What a codec worker answers to a {@link CodecRequest}. */
export interface CodecReply {
  n: number;
  ids?: string;
  lengths?: Uint32Array;
  out?: Uint8Array;
  /** The input buffer, handed back for reuse. */
  input?: ArrayBuffer;
  error?: { name: string; message: string; reason?: DamageReason; object?: string; detail?: string };
}

/** Views of consecutive regions of `data` with the given lengths. */
function split(data: Uint8Array, lengths: ArrayLike<number>): Uint8Array[] {
  const out: Uint8Array[] = [];
  let o = 0;
  for (let i = 0; i < lengths.length; i++) out.push(data.subarray(o, (o += lengths[i]!)));
  return out;
}

/**
 * The body of a codec worker: answers one request with the same functions `inlineCodec` uses.
 * Worker scripts (Node's and the browser's) call this for every message after the init message.
 */
export async function answerCodecRequest(crypto: CryptoProvider, init: CodecWorkerInit, m: CodecRequest): Promise<{ reply: CodecReply; transfer: ArrayBuffer[] }> {
  const input = m.data.buffer as ArrayBuffer;
  try {
    if (m.op === 'seal') {
      const r = await sealChunks(crypto, init.keys, init.segmentSize, split(m.data, m.lengths), m.out);
      return { reply: { n: m.n, ids: r.ids.join(''), lengths: Uint32Array.from(r.sealed, (x) => x.length), out: r.buffer, input }, transfer: [m.out.buffer as ArrayBuffer, input] };
    }
    const sealed = split(m.data, m.lengths);
    const blobs = sealed.map((s, i) => ({ id: m.ids.slice(64 * i, 64 * (i + 1)), sealed: s, plainLength: m.plainLengths[i]! }));
    // In place: each plaintext is shorter than its sealed bytes and lands before them, after they
    // were read, so the one buffer goes back holding the plaintexts (openBlobs).
    const r = await openBlobs(crypto, init.keys, init.segmentSize, blobs, m.checkId, m.data);
    return { reply: { n: m.n, lengths: Uint32Array.from(r.plain, (x) => x.length), out: r.buffer }, transfer: [input] };
  } catch (e) {
    const err = e as Error;
    const damaged = e instanceof DamagedBackupError;
    return { reply: { n: m.n, input, error: { name: err?.name, message: err?.message, ...(damaged ? { reason: e.reason, object: e.object, detail: e.detail } : {}) } }, transfer: [input] };
  }
}

/**
 * Free ArrayBuffers in power-of-two sizes (4 KiB and up), keeping at most `maxBytes` of them, so
 * that buffers for chunks, batches and ranged reads are reused instead of allocated (and zeroed)
 * again and again.
 */
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private kept = 0;
  /** Buffers this pool made: only these, and views that cover a whole buffer, are ever transferred. */
  private readonly issued = new WeakSet<ArrayBuffer>();
  private readonly exact: number[];
  /** `exact`: sizes used so often (a chunk, a sealed chunk) that they get a class of their own. */
  constructor(private readonly maxBytes: number, exact: number[] = []) {
    this.exact = [...exact].sort((a, b) => a - b);
  }
  private sizeFor(size: number): number {
    const pow2 = Math.max(4096, 2 ** Math.ceil(Math.log2(Math.max(1, size))));
    const fit = this.exact.find((e) => e >= size);
    return fit !== undefined && fit < pow2 ? fit : pow2;
  }
  /** A buffer that holds `size` bytes (its length is the next power of two). */
  take(size: number): ArrayBuffer {
    const cls = this.sizeFor(size);
    let buf = this.free.get(cls)?.pop();
    if (buf) this.kept -= cls;
    else buf = new ArrayBuffer(cls);
    this.issued.add(buf);
    return buf;
  }
  give(buf: ArrayBuffer): void {
    const cls = buf.byteLength; // a detached buffer has length 0 and is not kept
    if (cls === 0 || cls !== this.sizeFor(cls) || this.kept + cls > this.maxBytes) return;
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(buf);
    this.kept += cls;
  }
  owns(buf: ArrayBufferLike): boolean {
    return buf instanceof ArrayBuffer && this.issued.has(buf);
  }
}

/**
 * A ChunkCodec on a pool of workers. `spawn` starts one worker running a script that answers with
 * `answerCodecRequest` (after it got `init`). Buffers move by transfer and are recycled.
 */
export function workerPoolCodec(spawn: () => WorkerPort, init: CodecWorkerInit, options: { threads: number; chunkSize: number }): ChunkCodec {
  const pool = new BufferPool(Math.max(32, 8 * Math.ceil(options.chunkSize / 2 ** 20)) * 2 ** 20, [options.chunkSize, sealedSize(options.chunkSize, init.segmentSize), 4 * sealedSize(options.chunkSize, init.segmentSize)]);
  const pending = new Map<number, { resolve(r: CodecReply): void; reject(e: unknown): void }>();
  let next = 0;
  let failed: unknown = null;
  // Workers start at the first request: a backup with nothing new to seal never pays for them.
  let started: { port: WorkerPort; busy: number }[] | null = null;
  const startWorkers = () => (started ??= Array.from({ length: Math.max(1, options.threads) }, () => {
    const port = spawn();
    const slot = { port, busy: 0 };
    port.post(init, []);
    port.onMessage((message) => {
      const m = message as CodecReply;
      slot.busy--;
      if (m.input) pool.give(m.input);
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
  }));
  type Request = { op: 'seal'; data: Uint8Array; lengths: Uint32Array; out: Uint8Array } | { op: 'open'; data: Uint8Array; lengths: Uint32Array; plainLengths: Uint32Array; ids: string; checkId: boolean };
  function call(request: Request): Promise<CodecReply> {
    if (failed) return Promise.reject(failed);
    const slot = startWorkers().reduce((a, b) => (b.busy < a.busy ? b : a));
    const n = next++;
    return new Promise((resolve, reject) => {
      pending.set(n, { resolve, reject });
      slot.busy++;
      const transfer = [request.data.buffer as ArrayBuffer];
      if (request.op === 'seal') transfer.push(request.out.buffer as ArrayBuffer);
      slot.port.post({ ...request, n }, transfer);
    });
  }
  /**
   * The views as one transferable buffer: a single view that is the whole of a buffer, or of one this
   * pool made, goes as it is; otherwise they are copied, one after the other, into a pooled buffer.
   */
  function gather(views: Uint8Array[]): Uint8Array {
    const v = views[0];
    if (views.length === 1 && v && v.buffer instanceof ArrayBuffer && ((v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) || pool.owns(v.buffer))) return v;
    // Views that already lie back to back in one buffer of this pool (a ranged read) move as one.
    if (v && pool.owns(v.buffer) && views.every((w, i) => w.buffer === v.buffer && (i === 0 || w.byteOffset === views[i - 1]!.byteOffset + views[i - 1]!.byteLength))) {
      return new Uint8Array(v.buffer, v.byteOffset, views.reduce((n, w) => n + w.length, 0));
    }
    const total = views.reduce((n, w) => n + w.length, 0);
    const out = new Uint8Array(pool.take(total), 0, total);
    let o = 0;
    for (const w of views) {
      out.set(w, o);
      o += w.length;
    }
    return out;
  }
  /** After `gather` copied them, the pool's own buffers among the originals can be reused. */
  function recycle(views: Uint8Array[], data: Uint8Array) {
    if (views.length === 1 && views[0] === data) return;
    for (const buf of new Set(views.map((v) => v.buffer))) if (buf !== data.buffer && pool.owns(buf)) pool.give(buf as ArrayBuffer);
  }
  return {
    async seal(chunks) {
      const data = gather(chunks);
      recycle(chunks, data);
      const size = chunks.reduce((n, c) => n + sealedSize(c.length, init.segmentSize), 0);
      const r = await call({ op: 'seal', data, lengths: Uint32Array.from(chunks, (c) => c.length), out: new Uint8Array(pool.take(size), 0, size) });
      return { ids: Array.from({ length: chunks.length }, (_, i) => r.ids!.slice(64 * i, 64 * (i + 1))), sealed: split(r.out!, r.lengths!), buffer: r.out! };
    },
    async open(blobs, checkId) {
      const views = blobs.map((b) => b.sealed);
      const data = gather(views);
      recycle(views, data);
      const r = await call({
        op: 'open', data, lengths: Uint32Array.from(blobs, (b) => b.sealed.length), plainLengths: Uint32Array.from(blobs, (b) => b.plainLength),
        ids: blobs.map((b) => b.id).join(''), checkId,
      });
      return { plain: split(r.out!, r.lengths!), buffer: r.out! };
    },
    alloc(size) {
      return new Uint8Array(pool.take(size), 0, size);
    },
    release(buffer) {
      if (buffer.buffer instanceof ArrayBuffer) pool.give(buffer.buffer);
    },
    async close() {
      await Promise.all((started ?? []).map((s) => s.port.terminate()));
      for (const p of pending.values()) p.reject(new Error('the codec workers were closed'));
      pending.clear();
    },
  };
}
