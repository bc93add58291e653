/**
 * The app server's small HTTP kit (spec/web-app.md §6): one error type that carries its status and
 * a message meant for the client, bounded body readers, and JSON answers. Anything thrown that is
 * not an HttpError becomes `500 internal` with no detail.
 */
import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body));
}

export function sendError(res: ServerResponse, e: HttpError): void {
  json(res, e.status, { error: e.code, message: e.message }, e.headers);
}

/** The request body, refused with 413 past `limit` bytes (checked against Content-Length first). */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new HttpError(413, 'too-large', `the request body is larger than ${limit} bytes`);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    req.resume();
    throw tooLarge();
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      req.resume();
      throw tooLarge();
    }
    parts.push(c);
  }
  return Buffer.concat(parts);
}

/** A JSON object body (Content-Type application/json, at most `limit` bytes). */
export async function readJson(req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    throw new HttpError(415, 'unsupported-media-type', 'send the body as application/json');
  }
  const text = (await readBody(req, limit)).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'bad-json', 'the request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'bad-json', 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}

/** A string field of a JSON body, or 400 naming it. */
export function field(body: Record<string, unknown>, name: string, check?: RegExp, hint = ''): string {
  const v = body[name];
  if (typeof v !== 'string' || (check && !check.test(v))) throw new HttpError(400, 'bad-request', `"${name}" is missing or malformed${hint ? `: ${hint}` : ''}`);
  return v;
}

/** decodeURIComponent that answers 400 instead of throwing URIError. */
export function decodePath(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'bad-url', 'the URL has malformed percent-encoding');
  }
}

/**
 * Answers GET or HEAD with the file of `size` bytes (a stat the caller made), or the one range of
 * it that `Range: bytes=a-[b]` asks for (206; 416 past the end).
 */
export function sendFile(req: IncomingMessage, res: ServerResponse, file: string, size: number, contentType: string): void {
  const headers: Record<string, string | number> = { 'content-type': contentType, 'accept-ranges': 'bytes', 'cache-control': 'no-store' };
  const range = /^bytes=(\d{1,15})-(\d{0,15})$/.exec(String(req.headers.range ?? ''));
  let start = 0;
  let end = size - 1;
  let status = 200;
  if (range) {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    if (start >= size) return void res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': 0 }).end();
    status = 206;
    headers['content-range'] = `bytes ${start}-${end}/${size}`;
  }
  headers['content-length'] = Math.max(0, end - start + 1);
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || end < start) return void res.end();
  createReadStream(file, { start, end }).on('error', () => res.destroy()).pipe(res);
}
