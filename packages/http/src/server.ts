/**
 * @coffer/http/server: the server half of the HTTP object store (spec/format.md §7.3), for Node.
 * It answers `HttpStorage` from any Storage (a local folder, S3, memory, ...). It authenticates
 * nobody: the app decides who may use which store before it calls `handleStorageRequest`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkObjectName, ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, type ByteRange, type Storage } from '@coffer/core';

/** Options of {@link handleStorageRequest}. */
export interface StorageRequestOptions {
  /** The largest object a PUT may store, in bytes (64 MiB by default; a pack is about 16 MiB). */
  maxObjectBytes?: number;
  /**
   * Called with every failure that is not the client's (a storage error, a bug), before the
   * client gets a `503` or `500` with no detail. Nothing secret is in the request (object names
   * reveal nothing, §1); the error may name the server's storage location.
   */
  onError?: (error: unknown) => void;
}

const DEFAULT_MAX_OBJECT_BYTES = 64 * 1024 * 1024;
const PART = '[A-Za-z0-9_-][A-Za-z0-9._-]*';
const FOLDER = new RegExp(`^(${PART}/)*$`);
const PREFIX = /^[A-Za-z0-9._/-]*$/;

/** A refusal of the client's request: its status, a code and a message for the client. */
class Refusal extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function answer(res: ServerResponse, status: number, headers: Record<string, string | number> = {}, body?: string | Uint8Array): void {
  res.writeHead(status, { 'cache-control': 'no-store', ...headers }).end(body);
}

function refuse(res: ServerResponse, r: Refusal): void {
  answer(res, r.status, { 'content-type': 'application/json; charset=utf-8' }, JSON.stringify({ error: r.code, message: r.message }));
}

/** One `/`-separated part of the path, percent-decoded (it may not decode to a `/`). */
function decodePart(part: string): string {
  let s: string;
  try {
    s = decodeURIComponent(part);
  } catch {
    throw new Refusal(400, 'bad-name', 'the URL has malformed percent-encoding');
  }
  if (s.includes('/')) throw new Refusal(400, 'bad-name', 'a part of a name may not hold an encoded /');
  return s;
}

/** The object name of a path below the store's base, checked (§1). */
function objectName(path: string): string {
  const name = path.split('/').map(decodePart).join('/');
  try {
    checkObjectName(name);
  } catch {
    throw new Refusal(400, 'bad-name', 'not an object name: parts of [A-Za-z0-9._-] separated by /, no . or .. parts, at most 512 characters');
  }
  return name;
}

/** `bytes=a-b` or `bytes=a-`; any other Range is ignored (RFC 9110 §14.2 allows it). */
function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d{1,15})-(\d{0,15})$/.exec(header ?? '');
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (start >= size) return 'unsatisfiable';
  if (end < start) return undefined;
  return { offset: start, length: end - start + 1 };
}

/** The request body into the storage, in pieces when it takes them (Storage.writer). */
async function storeBody(storage: Storage, name: string, req: IncomingMessage, limit: number): Promise<void> {
  const tooLarge = () => new Refusal(413, 'too-large', `an object may be at most ${limit} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
  const writer = storage.writer ? await storage.writer(name) : null;
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const chunk of req as AsyncIterable<Uint8Array>) {
      n += chunk.length;
      if (n > limit) throw tooLarge();
      if (writer) await writer.write(chunk);
      else parts.push(chunk);
    }
  } catch (e) {
    await writer?.abort();
    throw e;
  }
  if (!writer) return storage.put(name, Buffer.concat(parts));
  try {
    await writer.commit();
  } catch (e) {
    await writer.abort().catch(() => {});
    throw e;
  }
}

async function serve(storage: Storage, req: IncomingMessage, res: ServerResponse, target: string, options: StorageRequestOptions): Promise<void> {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
  if (path === '' || path.endsWith('/')) {
    if (req.method !== 'GET') throw new Refusal(405, 'method-not-allowed', 'a folder of the store can only be listed (GET ?list=prefix)');
    const folder = path.split('/').map(decodePart).join('/');
    const prefix = query.get('list') ?? '';
    if (!FOLDER.test(folder) || folder.length > 512) throw new Refusal(400, 'bad-name', 'not a folder of the store');
    if (!PREFIX.test(prefix) || prefix.length > 512) throw new Refusal(400, 'bad-prefix', 'a prefix is made of A-Z a-z 0-9 . _ - /');
    const names = (await storage.list(folder + prefix)).filter((n) => n.startsWith(folder + prefix)).map((n) => n.slice(folder.length));
    return answer(res, 200, { 'content-type': 'application/json' }, JSON.stringify(names));
  }
  const name = objectName(path);
  switch (req.method) {
    case 'PUT':
      if (req.headers['if-none-match'] !== '*') throw new Refusal(428, 'precondition-required', 'PUT needs If-None-Match: * (objects are write-once)');
      await storeBody(storage, name, req, options.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES);
      return answer(res, 201);
    case 'GET':
    case 'HEAD': {
      const st = await storage.stat(name);
      if (!st) return answer(res, 404);
      const range = parseRange(req.headers.range, st.size);
      if (range === 'unsatisfiable') return answer(res, 416, { 'content-range': `bytes */${st.size}` });
      const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
      if (range) headers['content-range'] = `bytes ${range.offset}-${range.offset + range.length - 1}/${st.size}`;
      const status = range ? 206 : 200;
      if (req.method === 'HEAD') return answer(res, status, { ...headers, 'content-length': range ? range.length : st.size });
      const data = st.size === 0 ? new Uint8Array(0) : await storage.get(name, range);
      return answer(res, status, { ...headers, 'content-length': data.length }, data);
    }
    case 'DELETE':
      await storage.delete(name);
      return answer(res, 204);
    default:
      throw new Refusal(405, 'method-not-allowed', 'objects take PUT, GET, HEAD and DELETE');
  }
}

/**
 * Answers one request of the HTTP object store protocol (spec/format.md §7.3) from `storage`.
 * `target` is what follows the store's base URL in the request target, still percent-encoded,
 * query included: `packs/ab/ab12…`, `?list=index/`, `repo1/?list=`. It never throws: failures
 * become answers (`4xx` for the client's, `503` when the storage is unavailable, `500` otherwise).
 *
 * @example
 * createServer((req, res) => {
 *   if (!req.url?.startsWith('/store/')) return res.writeHead(404).end();
 *   // authenticate and authorize here: this store belongs to whoever may call it
 *   void handleStorageRequest(storage, req, res, req.url.slice('/store/'.length));
 * });
 */
export async function handleStorageRequest(storage: Storage, req: IncomingMessage, res: ServerResponse, target: string, options: StorageRequestOptions = {}): Promise<void> {
  try {
    await serve(storage, req, res, target, options);
  } catch (e) {
    let refusal: Refusal;
    if (e instanceof Refusal) refusal = e;
    else if (e instanceof ObjectExistsError) refusal = new Refusal(412, 'exists', 'an object of this name exists (objects are write-once)');
    else if (e instanceof ObjectNotFoundError) refusal = new Refusal(404, 'not-found', 'no such object');
    else if (e instanceof TypeError && /object name/.test(e.message)) refusal = new Refusal(400, 'bad-name', e.message);
    else {
      options.onError?.(e);
      refusal = e instanceof StorageUnavailableError ? new Refusal(503, 'storage-unavailable', 'the store is unavailable; try again later') : new Refusal(500, 'internal', 'internal error');
    }
    if (res.headersSent) res.destroy();
    else {
      // A body the client is still sending is not read: the connection closes after the answer.
      if (!req.readableEnded) res.setHeader('connection', 'close');
      refuse(res, refusal);
    }
  }
}
