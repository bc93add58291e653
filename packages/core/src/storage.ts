/**
 * Where backups live: a flat namespace of write-once objects (spec/format.md §7). Backends: memory
 * (here), local folder, S3 and WebDAV (@coffer/node). Every backend runs `storageConformance`.
 */
import { ObjectExistsError, ObjectNotFoundError } from './errors.js';

export interface ByteRange {
  offset: number;
  length: number;
}

export interface Storage {
  /** A printable description with any secret stripped (for messages and logs). */
  readonly label: string;
  /** Atomic and write-once: readers see all of it or nothing; an existing name throws ObjectExistsError. */
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
  close?(): Promise<void>;
}

/** Object names are ASCII paths of `/`-separated parts of [A-Za-z0-9._-]; no `.` or `..` parts. */
export function checkObjectName(name: string): void {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/.test(name) || name.length > 512) {
    throw new TypeError(`invalid object name ${JSON.stringify(name.slice(0, 80))}`);
  }
}

/** In-memory backend, for tests and the CPU-bound benchmark. */
export class MemoryStorage implements Storage {
  readonly label = 'memory:';
  readonly objects = new Map<string, Uint8Array>();

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
