/**
 * Where backups live: a flat namespace of write-once objects (spec/format.md §7). Backends: memory
 * (here), local folder, S3 and WebDAV (@coffer/node). Every backend runs `storageConformance`.
 */
import { ObjectExistsError, ObjectNotFoundError } from './errors.js';

/** A byte range of a stored object: `length` bytes from `offset`. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Where backups live (spec/format.md §7): a flat namespace of write-once objects. Implementations: MemoryStorage here; local folder, S3 and WebDAV in @coffer/node. Each must pass `storageConformance` (@coffer/core/testing). */
export interface Storage {
  /** A printable description with any secret stripped (for messages and logs). */
  readonly label: string;
  /**
   * Atomic and write-once: readers see all of it or nothing; an existing name throws ObjectExistsError.
   * The backend must not keep `data` after the put resolves (the caller reuses the buffer).
   */
  put(name: string, data: Uint8Array): Promise<void>;
  /**
   * Throws ObjectNotFoundError when missing. A range past the end returns what there is. A backend
   * may read into a buffer from `alloc` (a recycled one) instead of a new one.
   */
  get(name: string, range?: ByteRange, alloc?: (size: number) => Uint8Array): Promise<Uint8Array>;
  /** `null` when missing. */
  stat(name: string): Promise<{ size: number } | null>;
  /** Every name that starts with `prefix`, in no particular order. */
  list(prefix: string): Promise<string[]>;
  /** Removing a missing object is not an error. */
  delete(name: string): Promise<void>;
  /** Makes every completed put durable (a no-op where puts already are). */
  flush(): Promise<void>;
  /**
   * Optional: an object written piece by piece, so that a large object (a pack) need not be whole in
   * memory. Nothing appears under `name` until `commit`, which is as atomic and write-once as `put`.
   */
  writer?(name: string): Promise<ObjectWriter>;
  close?(): Promise<void>;
}

/** An object being written in pieces (Storage.writer). */
export interface ObjectWriter {
  write(data: Uint8Array): Promise<void>;
  /** Makes the object appear under its name (ObjectExistsError if it exists). */
  commit(): Promise<void>;
  /** Drops what was written. */
  abort(): Promise<void>;
}

/** Object names are ASCII paths of `/`-separated parts of [A-Za-z0-9._-]; no `.` or `..` parts. */
export function checkObjectName(name: string): void {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/.test(name) || name.length > 512) {
    throw new TypeError(`invalid object name ${JSON.stringify(name.slice(0, 80))}`);
  }
}

/**
 * In-memory backend, for tests and the CPU-bound benchmark. It takes objects in pieces too
 * (`writer`), unless made with `{ writer: false }`, so tests cover both ways packs are written.
 */
export class MemoryStorage implements Storage {
  readonly label = 'memory:';
  readonly objects = new Map<string, Uint8Array>();
  readonly writer?: (name: string) => Promise<ObjectWriter>;
  constructor(options: { writer?: boolean } = {}) {
    if (options.writer !== false) this.writer = (name) => this.pieces(name);
  }

  private async pieces(name: string): Promise<ObjectWriter> {
    checkObjectName(name);
    // Each piece copied once (the caller reuses its buffer), joined once at commit.
    const parts: Uint8Array[] = [];
    let used = 0;
    return {
      write: async (data) => {
        parts.push(data.slice());
        used += data.length;
      },
      commit: async () => {
        if (this.objects.has(name)) throw new ObjectExistsError(name);
        const all = parts.length === 1 ? parts[0]! : new Uint8Array(used);
        if (parts.length !== 1) {
          let o = 0;
          for (const p of parts) {
            all.set(p, o);
            o += p.length;
          }
        }
        this.objects.set(name, all);
      },
      abort: async () => {
        parts.length = 0;
      },
    };
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    checkObjectName(name);
    if (this.objects.has(name)) throw new ObjectExistsError(name);
    this.objects.set(name, new Uint8Array(data));
  }
  async get(name: string, range?: ByteRange): Promise<Uint8Array> {
    checkObjectName(name);
    const o = this.objects.get(name);
    if (!o) throw new ObjectNotFoundError(name);
    return range ? o.slice(range.offset, range.offset + range.length) : o.slice();
  }
  async stat(name: string): Promise<{ size: number } | null> {
    checkObjectName(name);
    const o = this.objects.get(name);
    return o ? { size: o.length } : null;
  }
  async list(prefix: string): Promise<string[]> {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix));
  }
  async delete(name: string): Promise<void> {
    checkObjectName(name);
    this.objects.delete(name);
  }
  async flush(): Promise<void> {}
}
