/**
 * A simple HTTP object store standing in for the user's cloud drive (spec/format.md §7 semantics):
 * `PUT /store/<account>/<name>` with `If-None-Match: *` is write-once (412 when it exists), `GET`
 * honours `Range: bytes=a-b`, `HEAD` gives the size, `GET /store/<account>/?list=<prefix>` a JSON
 * array of names, `DELETE` removes. Objects are files under `root/<account>/`, made visible
 * atomically with link(2), so a reader never sees half an object and two racing puts have one winner.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join, relative, sep } from 'node:path';

const NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;
export const ACCOUNT = /^[a-z0-9][a-z0-9._@-]{0,63}$/;
const MAX_OBJECT = 64 * 1024 * 1024;

async function body(req: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw Object.assign(new Error('object too large'), { status: 413 });
    parts.push(c);
  }
  return Buffer.concat(parts);
}

async function listFiles(dir: string): Promise<string[]> {
  try {
    const out: string[] = [];
    for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
      if (e.isFile() && !e.name.startsWith('.tmp-')) out.push(relative(dir, join(e.parentPath, e.name)).split(sep).join('/'));
    }
    return out;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

function send(res: ServerResponse, status: number, text = ''): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(text);
}

/** Handles `/store/...`; `path` is the URL path after `/store/`. */
export async function handleStore(root: string, req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
  const slash = path.indexOf('/');
  const account = decodeURIComponent(slash < 0 ? path : path.slice(0, slash));
  const name = slash < 0 ? '' : path.slice(slash + 1);
  if (!ACCOUNT.test(account)) return send(res, 400, 'bad account');
  const dir = join(root, account);
  if (name === '') {
    if (req.method !== 'GET') return send(res, 405);
    const prefix = query.get('list') ?? '';
    const names = (await listFiles(dir)).filter((n) => n.startsWith(prefix));
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(names));
    return;
  }
  if (!NAME.test(name) || name.length > 512 || name.split('/').some((p) => p === '.' || p === '..')) return send(res, 400, 'bad object name');
  const file = join(dir, ...name.split('/'));
  switch (req.method) {
    case 'PUT': {
      if (req.headers['if-none-match'] !== '*') return send(res, 428, 'PUT needs If-None-Match: * (objects are write-once)');
      let data: Buffer;
      try {
        data = await body(req, MAX_OBJECT);
      } catch (e) {
        return send(res, (e as { status?: number }).status ?? 400, (e as Error).message);
      }
      await mkdir(dirname(file), { recursive: true });
      const tmp = join(dirname(file), `.tmp-${randomBytes(8).toString('hex')}`);
      await writeFile(tmp, data);
      try {
        await link(tmp, file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return send(res, 412, 'exists');
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
        return send(res, 404, 'not found');
      }
      const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'accept-ranges': 'bytes' };
      const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
      let start = 0;
      let end = size - 1;
      let status = 200;
      if (range) {
        start = Number(range[1]);
        end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
        if (start >= size) {
          res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
          return;
        }
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
      headers['content-length'] = Math.max(0, end - start + 1);
      res.writeHead(status, headers);
      if (req.method === 'HEAD' || end < start) {
        res.end();
        return;
      }
      createReadStream(file, { start, end }).pipe(res);
      return;
    }
    case 'DELETE':
      await unlink(file).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      return send(res, 204);
    default:
      return send(res, 405);
  }
}
