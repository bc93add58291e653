/**
 * Fuzzed requests (spec/web-app.md §6): random methods, request targets (bad percent-encoding,
 * dot segments, odd characters, every route's prefix), headers and bodies (random bytes, broken
 * and valid JSON of the wrong shape), with and without a session, sent one by one over TCP. None
 * may get a 5xx, and no answer may carry a stack trace.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Browser } from 'playwright-core';
import { launchChromium, rawRequest, sessionCookie, startTestApp } from './helpers.js';

let app: Awaited<ReturnType<typeof startTestApp>>;
let browser: Browser;
let cookie: string;
const ACCOUNT = 'fuzz@example';

before(async () => {
  [app, browser] = await Promise.all([startTestApp(), launchChromium()]);
  cookie = await sessionCookie(browser, app.url, ACCOUNT);
  await browser.close();
});
after(async () => {
  await app?.dispose();
});

const ROUTES = [
  '/', '/index.html', '/app.js', '/app.css', '/config.json', '/harness.html?script=', '/dev/inbox', '/api/session', '/api/signout',
  '/api/signup/options', '/api/signup/verify', '/api/signin/options', '/api/signin/verify', '/api/passkeys/options', '/api/passkeys/verify',
  '/api/code/send', '/api/code/verify', '/api/token', '/api/phone/tree', '/api/phone/file/', '/chat-reader.js', '/sqlite3.wasm',
  '/api/phone/file/messages.db', '/v1/vault', '/v1/vault/', `/store/${ACCOUNT}/`, `/store/${ACCOUNT}/repo/`, `/store/${ACCOUNT}/data/ab`, '/store/', '/store/other@example/x',
];

/** Pieces of a request target that have broken servers before. */
const nasty = fc.constantFrom(
  '%', '%z', '%zz', '%E0%A4%A', '%C0%AF', '%ff', '%00', '%2e%2e', '%2f', '..', '.', '//', '/./', '/../', '?', '#', '&', '=', '%25', '\u00e9', '\u{1F600}',
  '..%2f', '%5c', '\\', ';', '@', ':', '*', "'", '"', '<', '>', '{}', '[', ']', 'a'.repeat(600), '0'.repeat(20),
);
const segment = fc.oneof(nasty, fc.string({ maxLength: 12 }), fc.stringMatching(/^[A-Za-z0-9._@-]{1,12}$/));
const target = fc
  .tuple(fc.constantFrom(...ROUTES), fc.array(fc.tuple(fc.constantFrom('/', '', '%2F'), segment), { maxLength: 5 }), fc.option(fc.array(fc.tuple(segment, segment), { maxLength: 3 })))
  .map(([route, parts, query]) => route + parts.map(([sep, p]) => sep + p).join('') + (query ? '?' + query.map(([k, v]) => `${k}=${v}`).join('&') : ''))
  // A request line cannot hold spaces, CR or LF; Node refuses other control characters itself.
  .map((t) => t.replace(/[\s\u0000-\u001f\u007f]/gu, (c) => encodeURIComponent(c)));
const jsonBody = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.json({ maxDepth: 2 }).map((j) => j.slice(0, Math.max(0, j.length - 1))),
  fc.record({ account: segment, code: fc.string({ maxLength: 8 }), purpose: fc.constantFrom('use', 'register', 'x'), keyStretching: fc.string({ maxLength: 30 }), ceremony: fc.string({ maxLength: 30 }), response: fc.anything({ maxDepth: 3 }) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.constantFrom('{"response":{"id":"x","rawId":"x","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}}', '{"account":"fuzz@example","code":"000000"}', '[]', 'null', '"', '{"__proto__":{"x":1}}', '1e999999', '{"a":'),
);
const body = fc.oneof(jsonBody, fc.uint8Array({ maxLength: 2048 }), fc.constant(''), fc.constant(Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(1024, 1)])));
const request = fc.record({
  method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND'),
  target,
  body,
  session: fc.boolean(),
  contentType: fc.constantFrom(undefined, 'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x'),
  extra: fc.record({ range: fc.constantFrom('bytes=0-10', 'bytes=99999999999999999999-', 'bytes=-5', 'bytes=5-1', 'items=1-2'), 'if-none-match': fc.constantFrom('*', 'x') }, { requiredKeys: [] }),
});

test('fuzzed URLs, headers and bodies never get a 5xx or a stack trace', async () => {
  const host = new URL(app.url).host;
  const port = Number(new URL(app.url).port);
  const seen = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      const headers: Record<string, string> = { host, origin: app.url, ...r.extra };
      if (r.session) headers['cookie'] = cookie;
      if (r.contentType) headers['content-type'] = r.contentType;
      const res = await rawRequest(port, r.method, r.target, { headers, ...(r.method === 'GET' || r.method === 'HEAD' ? {} : { body: r.body }) });
      seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
      assert.ok(res.status >= 200 && res.status < 500, `${r.method} ${r.target} -> ${res.status} ${res.body.toString('utf8').slice(0, 300)}`);
      assert.doesNotMatch(res.body.toString('utf8').slice(0, 4096), /\n\s+at .*\(|internal error|TypeError|RangeError|SyntaxError/, `${r.method} ${r.target}`);
    }),
    { numRuns: 400, seed: 20261129, endOnFailure: true },
  );
  // The fuzzer reached past the front door: refusals of many kinds, and successes.
  for (const status of [200, 400, 401, 403, 404, 405]) assert.ok(seen.has(status), `no ${status} among ${JSON.stringify([...seen])}`);
  assert.deepEqual(app.logs.filter((l) => l.includes('internal error')), []);
});

test('malformed request lines and headers get a 4xx from the server itself', async () => {
  const host = new URL(app.url).host;
  const port = Number(new URL(app.url).port);
  for (const t of ['http://evil.example/', '*', 'x', '/%', '/api/phone/file/%E0%A4%A', '/api/phone/file/..%2f..%2f..%2fetc%2fpasswd', '/store/%ff/x', '/store/fuzz@example/%zz']) {
    const res = await rawRequest(port, 'GET', t, { headers: { host, cookie } });
    assert.ok(res.status >= 400 && res.status < 500, `GET ${t} -> ${res.status}`);
  }
  const bad = await rawRequest(port, 'POST', '/api/token', { headers: { host, origin: app.url, cookie, 'content-type': 'application/json' }, body: '{"purpose":' });
  assert.deepEqual([bad.status, bad.json?.error], [400, 'bad-json']);
  const big = await rawRequest(port, 'POST', '/api/token', { headers: { host, origin: app.url, cookie, 'content-type': 'application/json' }, body: JSON.stringify({ purpose: 'use', pad: 'x'.repeat(10_000) }) });
  assert.deepEqual([big.status, big.json?.error], [413, 'too-large']);
  const pct = await rawRequest(port, 'GET', '/store/%E0%A4%A/x', { headers: { host, cookie } });
  assert.deepEqual([pct.status, pct.json?.error], [400, 'bad-url']);
});
