/** HttpStorage: the client of the HTTP object store (spec/format.md §7.3). */
import { checkObjectName, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, type ByteRange, type Storage } from '@coffer/core';

/**
 * A Storage (spec/format.md §7) over an HTTP object store (§7.3): what a browser app backs up to
 * through its own server (`@coffer/http/server` answers it). Works in browsers and in Node (the
 * global fetch); no Node imports. Failures of the store or the network are
 * `StorageUnavailableError`, an existing name on put `ObjectExistsError`, a missing object on get
 * `ObjectNotFoundError`.
 *
 * @example
 * const storage = new HttpStorage(new URL('/store/', location.href).href);
 * const repo = await Repository.init(storage, webCryptoProvider, generateBackupKey(webCryptoProvider));
 */
export class HttpStorage implements Storage {
  readonly label: string;
  private readonly base: string;
  /**
   * `base` is the store's URL, e.g. `https://app.example/store/alice/` (a `/` is added when
   * missing). `fetchFn` is the transport (the global fetch by default): pass one that adds your
   * app's credentials, or a test double.
   */
  constructor(base: string, private readonly fetchFn: typeof fetch = (...a) => fetch(...a)) {
    this.base = base.endsWith('/') ? base : base + '/';
    this.label = `http-store:${new URL(this.base).pathname}`;
  }
  private url(name: string): string {
    return this.base + name.split('/').map(encodeURIComponent).join('/');
  }
  private async req(name: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetchFn(this.url(name), { cache: 'no-store', ...init });
    } catch (e) {
      throw new StorageUnavailableError(`${this.label}: ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
  private fail(name: string, r: Response): never {
    throw new StorageUnavailableError(`${this.label}: ${name}: HTTP ${r.status}`);
  }
  async put(name: string, data: Uint8Array): Promise<void> {
    checkObjectName(name);
    // A Blob body: Chromium uploads a Blob about ten times faster than the same bytes as a typed
    // array (measured: 1 MiB PUTs of a Uint8Array take ~80-120 ms each and do not overlap).
    const r = await this.req(name, { method: 'PUT', headers: { 'if-none-match': '*', 'content-type': 'application/octet-stream' }, body: new Blob([data as BufferSource]) });
    if (r.status === 412) throw new ObjectExistsError(name);
    if (!r.ok) this.fail(name, r);
  }
  async get(name: string, range?: ByteRange): Promise<Uint8Array> {
    checkObjectName(name);
    if (range && range.length <= 0) return new Uint8Array(0);
    const headers: Record<string, string> = range ? { range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {};
    const r = await this.req(name, { headers });
    if (r.status === 404) throw new ObjectNotFoundError(name);
    if (r.status === 416) return new Uint8Array(0);
    if (!r.ok) this.fail(name, r);
    return new Uint8Array(await r.arrayBuffer());
  }
  async stat(name: string): Promise<{ size: number } | null> {
    checkObjectName(name);
    const r = await this.req(name, { method: 'HEAD' });
    if (r.status === 404) return null;
    if (!r.ok) this.fail(name, r);
    return { size: Number(r.headers.get('content-length')) };
  }
  async list(prefix: string): Promise<string[]> {
    let r: Response;
    try {
      r = await this.fetchFn(`${this.base}?list=${encodeURIComponent(prefix)}`, { cache: 'no-store' });
    } catch (e) {
      throw new StorageUnavailableError(`${this.label}: list: ${(e as Error).message}`, { cause: e });
    }
    if (!r.ok) this.fail('list', r);
    return (await r.json()) as string[];
  }
  async delete(name: string): Promise<void> {
    checkObjectName(name);
    const r = await this.req(name, { method: 'DELETE' });
    if (!r.ok && r.status !== 404) this.fail(name, r);
  }
  async flush(): Promise<void> {}
}
