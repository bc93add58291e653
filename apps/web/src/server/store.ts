/**
 * A simple HTTP object store standing in for the user's cloud drive (spec/format.md §7 semantics),
 * one folder per account; the caller has checked that the account is the session's own
 * (spec/web-app.md §4). `PUT /store/<account>/<name>` with `If-None-Match: *` is write-once (412
 * when it exists), `GET` honours `Range: bytes=a-b`, `HEAD` gives the size, `DELETE` removes, and
 * `GET /store/<account>/[<folder>/]?list=<prefix>` is a JSON array of the names below that folder
 * (relative to it) that start with the prefix, so one account may hold several repositories.
 * Objects are files, made visible atomically with link(2): a reader never sees half an object,
 * and of two racing puts one wins.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join, relative, sep } from 'node:path';
import { HttpError, readBody, sendFile } from './http.js';

const PART = '[A-Za-z0-9_-][A-Za-z0-9._-]*';
const NAME = new RegExp(`^${PART}(/${PART})*$`);
const FOLDER = new RegExp(`^(${PART}/)*$`);
const MAX_OBJECT = 64 * 1024 * 1024;

async function listFiles(dir: string): Promise<string[]> {
  try {
    const out: string[] = [];
    for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
      if (e.isFile() && !e.name.startsWith('.tmp-')) out.push(relative(dir, join(e.parentPath, e.name)).split(sep).join('/'));
    }
    return out;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw e;
  }
}

function send(res: ServerResponse, status: number, headers: Record<string, string | number> = {}): void {
  res.writeHead(status, { 'cache-control': 'no-store', ...headers }).end();
}

/** A file or folder where the name needs the other: the names of one account conflict. */
const conflict = () => new HttpError(409, 'name-conflict', 'an object and a folder of this store would share a name');

/** Handles `/store/<account>/<rest>`; `rest` is the raw URL path after the account's slash. */
export async function handleStore(root: string, account: string, rest: string, req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<void> {
  const dir = join(root, account);
  if (rest === '' || rest.endsWith('/')) {
    if (req.method !== 'GET') throw new HttpError(405, 'method-not-allowed', 'a folder of the store can only be listed (GET ?list=prefix)');
    if (!FOLDER.test(rest) || rest.length > 512) throw new HttpError(400, 'bad-name', 'bad folder name');
    const prefix = query.get('list') ?? '';
    const names = (await listFiles(join(dir, ...rest.split('/').filter(Boolean)))).filter((n) => n.startsWith(prefix)).sort();
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(names));
    return;
  }
  if (!NAME.test(rest) || rest.length > 512 || rest.split('/').some((p) => p === '.' || p === '..')) throw new HttpError(400, 'bad-name', 'bad object name');
  const file = join(dir, ...rest.split('/'));
  switch (req.method) {
    case 'PUT': {
      if (req.headers['if-none-match'] !== '*') throw new HttpError(428, 'precondition-required', 'PUT needs If-None-Match: * (objects are write-once)');
      const data = await readBody(req, MAX_OBJECT);
      try {
        await mkdir(dirname(file), { recursive: true });
      } catch (e) {
        if (['EEXIST', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '')) throw conflict();
        throw e;
      }
      const tmp = join(dirname(file), `.tmp-${randomBytes(8).toString('hex')}`);
      await writeFile(tmp, data);
      try {
        await link(tmp, file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return send(res, 412);
        throw e;
      } finally {
        await unlink(tmp).catch(() => {});
      }
      return send(res, 201);
    }
    case 'GET':
    case 'HEAD': {
      let size: number;
      try {
        const st = await stat(file);
        if (!st.isFile()) return send(res, 404);
        size = st.size;
      } catch {
        return send(res, 404);
      }
      return sendFile(req, res, file, size, 'application/octet-stream');
    }
    case 'DELETE':
      await unlink(file).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EISDIR' || e.code === 'EPERM') throw conflict();
        if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') throw e;
      });
      return send(res, 204);
    default:
      throw new HttpError(405, 'method-not-allowed', 'objects take PUT, GET, HEAD and DELETE');
  }
}
