/**
 * The WebDAV backend (spec/format.md §7): `webdav://host/path` (HTTP) and `webdavs://host/path`
 * (HTTPS), for Nextcloud, ownCloud, NAS boxes and drive services. The protocol is small, so this is
 * plain node:http rather than a client library: every request's status must reach retry.ts
 * unwrapped to be classified, and the few requests used here fit on a page.
 *
 * Layout as in the local folder: `packs/<first two hex digits>/<id>` (and version 1's `data/`
 * likewise: a folder of a million entries is slow on most servers), every other name as it is, and
 * `tmp/` for uploads in progress. Each folder is made once per process, before the uploads that
 * need it; a MKCOL that loses a race with another client counts as done when the folder is there.
 *
 * Write-once and atomic. A put uploads to `tmp/<random>.tmp` and then MOVEs it to its name with
 * `Overwrite: F` (RFC 4918 §9.9): the server answers 412 when the name exists, and a MOVE is a
 * rename on every server that keeps files on a disk, so readers see the whole object or none.
 * (`PUT` with `If-None-Match: *` would be one request instead of two, but several servers, among
 * them the webdav-server package the tests use, ignore that header, and servers that stream a PUT
 * into place let a reader see half an object.) How strong "write-once" is depends on the server's
 * MOVE: a server that checks the destination and renames in two steps leaves a window in which two
 * processes racing for one name can both win; puts of one name from this process are serialised.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { readWindow } from './window.js';
import { checkObjectName, ObjectExistsError, ObjectNotFoundError, UsageError, type ByteRange, type Storage } from '@coffer/core';
import { isShardFolder, shardedPath, unshardedName } from '@coffer/core/adapters';
import { redactUrl } from './redact.js';
import { DEFAULT_RETRY, networkCode, StorageRefusedError, transientStatus, withRetry, WriteOnce, type RetryPolicy, type Verdict } from './retry.js';
import type { RemoteOptions } from './s3-storage.js';

/** An HTTP answer that the caller did not expect. */
class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  constructor(
    readonly method: string,
    readonly status: number,
    readonly path: string,
  ) {
    super(`${method} answered ${status}`);
  }
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Uint8Array;
}

const PROPFIND_BODY = '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/></d:prop></d:propfind>';

interface Entry {
  path: string; // decoded, relative to the root, no trailing slash
  collection: boolean;
  size: number;
  /** ms since the epoch; NaN when the server did not say. */
  modified: number;
}

/** Names kept in 256 folders by their first two hex digits (spec/format.md §1): packs, and version 1's data objects. */
const collectionTag = /<(?:[A-Za-z0-9_-]+:)?collection\b/;
const xmlText = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

/** A Storage on a WebDAV folder (Nextcloud, ownCloud, Apache, nginx, rclone; spec/format.md §7.1), with retries. */
export class WebDavStorage implements Storage {
  readonly label: string;
  private readonly writes = new WriteOnce();
  private readonly made = new Set<string>();
  private readonly making = new Map<string, Promise<void>>();
  private readonly agent: http.Agent;

  private constructor(
    private readonly origin: URL, // scheme http(s), host, port; pathname = root folder ending in '/'
    private readonly auth: string | undefined,
    label: string,
    private readonly retry: RetryPolicy,
    private readonly idleMs: number,
  ) {
    this.label = label;
    const Agent = origin.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: 32 });
  }

  /**
   * Opens `webdav[s]://[user[:password]@]host[:port]/path`. Credentials: the user part of the URL,
   * else COFFER_WEBDAV_USER and COFFER_WEBDAV_PASSWORD (prefer these: the profile keeps the URL as
   * typed). Checks that the folder is there and the credentials work; with `create`, makes the folder.
   */
  static async open(location: string, options: RemoteOptions & { create?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<WebDavStorage> {
    const env = options.env ?? process.env;
    const label = redactUrl(location);
    let u: URL;
    try {
      u = new URL(location);
    } catch {
      throw new UsageError(`${label} is not a valid webdav:// URL`, 'use webdav://host/path or webdavs://host/path');
    }
    const secure = u.protocol === 'webdavs:';
    if (!secure && u.protocol !== 'webdav:') throw new UsageError(`${label} is not a webdav:// URL`);
    if (u.search) throw new UsageError(`${label}: webdav URLs take no options`);
    const origin = new URL(`${secure ? 'https' : 'http'}://${u.host}${u.pathname.endsWith('/') ? u.pathname : u.pathname + '/'}`);
    const user = u.username ? decodeURIComponent(u.username) : env.COFFER_WEBDAV_USER;
    const password = u.password ? decodeURIComponent(u.password) : env.COFFER_WEBDAV_PASSWORD;
    const auth = user !== undefined ? 'Basic ' + Buffer.from(`${user}:${password ?? ''}`).toString('base64') : undefined;
    const s = new WebDavStorage(origin, auth, label, options.retry ?? DEFAULT_RETRY, options.idleTimeoutMs ?? 30_000);
    try {
      const root = await s.call('opening the folder', () => s.propfind('', '0'), true);
      if (root === null) {
        if (!options.create) {
          throw new StorageRefusedError(`${label}: the folder ${origin.pathname} does not exist on ${origin.host}`, 'check the path, or create the folder first');
        }
        await s.call('creating the folder', () => s.ensureRoot(), true);
      }
    } catch (e) {
      s.agent.destroy();
      throw e;
    }
    await s.removeStaleUploads().catch(() => {});
    return s;
  }

  /** Uploads left in tmp/ by puts that were killed (none takes a day) are removed; best effort, no retries. */
  private async removeStaleUploads(): Promise<void> {
    const dayAgo = Date.now() - 24 * 3600 * 1000;
    for (const e of (await this.propfind('tmp', '1')) ?? []) {
      if (!e.collection && /^tmp\/[0-9a-f]+\.tmp$/.test(e.path) && e.modified < dayAgo) await this.request('DELETE', e.path);
    }
  }

  private classify(e: unknown, opening: boolean): Verdict {
    const net = networkCode(e);
    if (!(e instanceof HttpStatusError)) return { kind: 'transient', reason: `network error (${net ?? (e as Error)?.message ?? String(e)})` };
    const st = e.status;
    const where = decodeURIComponent(this.url(e.path).pathname);
    if (transientStatus(st)) return { kind: 'transient', reason: `the server answered ${st} to ${e.method}` };
    // 401 is about who the user is; 403 about what that user may do (RFC 9110 §15.5.2, §15.5.4).
    if (st === 401) {
      return {
        kind: 'permanent',
        reason: 'the credentials were refused (401)',
        hint: 'check the user and password (COFFER_WEBDAV_USER / COFFER_WEBDAV_PASSWORD)',
      };
    }
    if (st === 403) {
      return {
        kind: 'permanent',
        reason: `the server forbade ${e.method} of ${where} (403)`,
        hint: 'check that this user may read and write this folder on the server',
      };
    }
    if (st === 413) {
      return {
        kind: 'permanent',
        reason: `the server refused an upload as too large (413 to ${e.method} of ${where})`,
        hint: 'raise the upload limit of the server (nginx: client_max_body_size, 0 for none; Apache: LimitRequestBody): packs take about 17 MiB, a manifest a few hundred bytes per file',
      };
    }
    if (st === 507) return { kind: 'permanent', reason: 'the server is out of space (507)', hint: 'free space on the server, then run the backup again' };
    if (st === 404 && opening) return { kind: 'permanent', reason: `the folder ${this.origin.pathname} does not exist`, hint: 'check the path' };
    return { kind: 'permanent', reason: `the server refused ${e.method} of ${where} (${st})` };
  }

  private call<T>(what: string, fn: (attempt: number) => Promise<T>, opening = false): Promise<T> {
    return withRetry(this.label, what, this.retry, (e) => this.classify(e, opening), fn);
  }

  private url(path: string): URL {
    return new URL(path.split('/').map(encodeURIComponent).join('/'), this.origin);
  }

  /** One request; the body of the answer is read whole (into `alloc` when given). */
  private request(
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: Uint8Array | string,
    alloc?: (n: number) => Uint8Array,
    window?: ByteRange,
  ): Promise<Answer> {
    const url = this.url(path);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<Answer>((resolve, reject) => {
      const h: Record<string, string> = { ...headers };
      if (this.auth) h.authorization = this.auth;
      if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
      const req = mod.request(url, { method, headers: h, agent: this.agent }, (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length']);
        if (window && (status === 200 || status === 206)) {
          // Only the window is kept, even from a server that ignored the Range and sends it all (§4.4).
          readWindow(res, { skip: status === 206 ? 0 : window.offset, max: window.length, ...(Number.isSafeInteger(declared) ? { declared } : {}), ...(alloc ? { alloc } : {}) }).then(
            ({ bytes, complete }) => {
              if (!complete) req.destroy();
              else if (!res.complete) return reject(Object.assign(new Error('the connection closed mid-response'), { code: 'ECONNRESET' }));
              resolve({ status, headers: res.headers, body: bytes });
            },
            reject,
          );
          return;
        }
        const sized = alloc && status >= 200 && status < 300 && Number.isSafeInteger(declared);
        const buf = sized ? alloc(declared) : null;
        const chunks: Buffer[] = [];
        let o = 0;
        res.on('data', (c: Buffer) => {
          if (buf) {
            if (o + c.length > buf.length) return req.destroy(Object.assign(new Error('the response is longer than its Content-Length'), { code: 'ECONNRESET' }));
            buf.set(c, o);
          } else chunks.push(c);
          o += c.length;
        });
        res.on('aborted', () => reject(Object.assign(new Error('the connection closed mid-response'), { code: 'ECONNRESET' })));
        res.on('error', reject);
        res.on('end', () => {
          if (!res.complete || (Number.isSafeInteger(declared) && o !== declared)) {
            return reject(Object.assign(new Error(`the response ended after ${o} bytes`), { code: 'ECONNRESET' }));
          }
          resolve({ status, headers: res.headers, body: buf ? buf.subarray(0, o) : Buffer.concat(chunks) });
        });
      });
      req.setTimeout(this.idleMs, () => req.destroy(Object.assign(new Error(`no answer for ${this.idleMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(body === undefined ? undefined : body);
    });
  }

  private fail(method: string, path: string, a: Answer): never {
    throw new HttpStatusError(method, a.status, path);
  }

  /** Makes the root folder and its parents, from the top down. */
  private async ensureRoot(): Promise<void> {
    const parts = decodeURIComponent(this.origin.pathname).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const path = '/' + parts.slice(0, i).join('/') + '/';
      if ((await this.mkcol(path)) === 'no-parent') throw new HttpStatusError('MKCOL', 409, path);
    }
    this.made.add('');
  }

  /**
   * Makes a collection and its parents, once per process: concurrent puts into one new shard wait
   * for one MKCOL. A collection known to exist is not asked for again.
   */
  private ensureCollection(path: string): Promise<void> {
    if (this.made.has(path)) return Promise.resolve();
    let making = this.making.get(path);
    if (!making) {
      making = (async () => {
        if ((await this.mkcol(path ? path + '/' : '')) === 'no-parent') {
          await this.ensureCollection(path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
          if ((await this.mkcol(path + '/')) === 'no-parent') throw new HttpStatusError('MKCOL', 409, path);
        }
        this.made.add(path);
      })().finally(() => this.making.delete(path));
      this.making.set(path, making);
    }
    return making;
  }

  /**
   * One MKCOL (`path` relative to the root, or absolute from '/'). A collection that exists already
   * is success, whatever the server answered: 405 (RFC 4918 §9.3.1), or 403 (Apache, to the loser
   * of two MKCOLs of one new folder) or 423 (rclone, the same) when a PROPFIND finds it there.
   */
  private async mkcol(path: string): Promise<'made' | 'no-parent'> {
    const a = await this.request('MKCOL', path);
    if (a.status === 201 || a.status === 200 || a.status === 204) return 'made';
    if (a.status === 409 && path !== '') return 'no-parent';
    if (a.status === 405 || a.status === 403 || a.status === 423) {
      const found = await this.request('PROPFIND', path, { depth: '0', 'content-type': 'application/xml; charset=utf-8' }, PROPFIND_BODY);
      if (found.status === 207 && collectionTag.test(Buffer.from(found.body).toString('utf8'))) return 'made';
    }
    this.fail('MKCOL', path, a);
  }

  /** PROPFIND: the entries (Depth 1: the collection and its members), or null when missing. */
  private async propfind(path: string, depth: '0' | '1'): Promise<Entry[] | null> {
    const a = await this.request('PROPFIND', path, { depth, 'content-type': 'application/xml; charset=utf-8' }, PROPFIND_BODY);
    if (a.status === 404) return null;
    if (a.status !== 207) this.fail('PROPFIND', path, a);
    const xml = Buffer.from(a.body).toString('utf8');
    const out: Entry[] = [];
    const root = decodeURIComponent(this.origin.pathname);
    for (const m of xml.matchAll(/<([A-Za-z0-9_-]+:)?response[\s>][\s\S]*?<\/([A-Za-z0-9_-]+:)?response>/g)) {
      const r = m[0];
      const href = /<(?:[A-Za-z0-9_-]+:)?href[^>]*>([^<]*)</.exec(r)?.[1];
      if (href === undefined) continue;
      let p = decodeURIComponent(new URL(xmlText(href.trim()), this.origin).pathname);
      if (!p.startsWith(root) && p + '/' !== root) continue;
      p = p.slice(root.length).replace(/\/+$/, '');
      // A 404 propstat of getcontentlength carries no number; a collection has none.
      const size = Number(/<(?:[A-Za-z0-9_-]+:)?getcontentlength[^>]*>\s*(\d+)\s*</.exec(r)?.[1] ?? 0);
      const modified = Date.parse(/<(?:[A-Za-z0-9_-]+:)?getlastmodified[^>]*>([^<]*)</.exec(r)?.[1] ?? '');
      out.push({ path: p, collection: collectionTag.test(r), size, modified });
    }
    return out;
  }

  /** The path that holds object `name`. */
  private path(name: string): string {
    checkObjectName(name);
    if (name === 'tmp' || name.startsWith('tmp/')) throw new TypeError('object names may not start with tmp/');
    return shardedPath(name);
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    const final = this.path(name);
    const parent = final.includes('/') ? final.slice(0, final.lastIndexOf('/')) : '';
    const once = async (): Promise<void> => {
      await this.ensureCollection(parent);
      await this.ensureCollection('tmp');
      const tmp = `tmp/${randomBytes(12).toString('hex')}.tmp`;
      let moved = false;
      try {
        const up = await this.request('PUT', tmp, { 'content-type': 'application/octet-stream' }, data);
        if (up.status !== 201 && up.status !== 204 && up.status !== 200) this.fail('PUT', tmp, up);
        const mv = await this.request('MOVE', tmp, { destination: this.url(final).href, overwrite: 'F' });
        if (mv.status === 412) throw new ObjectExistsError(name);
        if (mv.status === 409) this.made.delete(parent); // the folder went away: made again on the retry
        if (mv.status !== 201 && mv.status !== 204) this.fail('MOVE', tmp, mv);
        moved = true;
      } finally {
        if (!moved) await this.request('DELETE', tmp).catch(() => {});
      }
    };
    await this.writes.put(name, data, (attempt) => this.call(`writing ${name}`, attempt), once, () => this.get(name).catch((e) => {
      if (e instanceof ObjectNotFoundError) return null;
      throw e;
    }));
  }

  async get(name: string, range?: ByteRange, alloc?: (size: number) => Uint8Array): Promise<Uint8Array> {
    const path = this.path(name);
    if (range && range.length <= 0) {
      if ((await this.stat(name)) === null) throw new ObjectNotFoundError(name);
      return new Uint8Array(0);
    }
    return this.call(`reading ${name}`, async () => {
      const a = await this.request('GET', path, range ? { range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}, undefined, alloc, range);
      if (a.status === 404) throw new ObjectNotFoundError(name);
      if (a.status === 416) return new Uint8Array(0); // the range starts past the end
      if (a.status !== 200 && a.status !== 206) this.fail('GET', path, a);
      return a.body;
    });
  }

  async stat(name: string): Promise<{ size: number } | null> {
    const path = this.path(name);
    return this.call(`stat ${name}`, async () => {
      const e = (await this.propfind(path, '0'))?.[0];
      return e && !e.collection ? { size: e.size } : null;
    });
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    // Breadth first, a few folders at a time: a store has up to 256 shards of packs/ (data/ in version 1).
    let level = [''];
    while (level.length) {
      const next: string[] = [];
      for (let i = 0; i < level.length; i += 8) {
        const found = await Promise.all(level.slice(i, i + 8).map((dir) => this.call('listing', () => this.propfind(dir, '1')).then((entries) => ({ dir, entries }))));
        for (const { dir, entries } of found) {
          for (const e of entries ?? []) {
            const r = e.path;
            if (r === dir || r === '' || r === 'tmp') continue;
            if (e.collection) {
              // Only descend where names with this prefix can be.
              if (isShardFolder(r) || prefix.startsWith(r + '/') || r.startsWith(prefix) || (r + '/').startsWith(prefix)) next.push(r);
            } else {
              const name = unshardedName(r);
              if (name.startsWith(prefix)) out.push(name);
            }
          }
        }
      }
      level = next;
    }
    return out;
  }

  async delete(name: string): Promise<void> {
    const path = this.path(name);
    await this.call(`deleting ${name}`, async () => {
      const a = await this.request('DELETE', path);
      if (a.status !== 200 && a.status !== 204 && a.status !== 404) this.fail('DELETE', path, a);
    });
  }

  /** A completed MOVE is as durable as the server makes it; WebDAV has nothing more to ask for. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
