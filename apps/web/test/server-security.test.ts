/**
 * The app server as a stranger meets it (spec/web-app.md): nothing without a session, no account
 * touches another's objects, vault and realm tokens are the session's account's only, foreign
 * hosts and cross-site requests are refused, no path takes a chat database, and sign-in codes
 * cannot be guessed. Sessions are made through the page with a virtual passkey; every other
 * request is written by hand over TCP.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium, rawRequest, sessionCookie, startTestApp, type RawResponse } from './helpers.js';

let app: Awaited<ReturnType<typeof startTestApp>>;
let browser: Browser;
let port: number;
let host: string;
let cookieA: string;
let cookieB: string;
const A = 'alice@example';
const B = 'bob@example';

before(async () => {
  [app, browser] = await Promise.all([startTestApp(), launchChromium()]);
  const u = new URL(app.url);
  port = Number(u.port);
  host = u.host;
  [cookieA, cookieB] = [await sessionCookie(browser, app.url, A), await sessionCookie(browser, app.url, B)];
});
after(async () => {
  await browser?.close();
  await app?.dispose();
});

/** A request as this site's own page would send it (right Host and Origin), with `cookie` if given. */
function send(method: string, target: string, o: { cookie?: string; body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  return rawRequest(port, method, target, {
    headers: { host, origin: app.url, ...(o.cookie ? { cookie: o.cookie } : {}), ...o.headers },
    ...(o.body !== undefined ? { body: o.body } : {}),
  });
}
const postJson = (target: string, body: unknown, cookie?: string) =>
  send('POST', target, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, ...(cookie ? { cookie } : {}) });

test('no session: /api/token, /store, the vault proxy and everything else of an account answer 401 and do nothing', async () => {
  const cases: [string, string, (Uint8Array | string)?, Record<string, string>?][] = [
    ['POST', '/api/token', JSON.stringify({ purpose: 'use' }), { 'content-type': 'application/json' }],
    ['POST', '/api/token', JSON.stringify({ purpose: 'register', keyStretching: 'memory-constrained' }), { 'content-type': 'application/json' }],
    ['GET', `/store/${A}/?list=`],
    ['GET', `/store/${A}/keys/x`],
    ['HEAD', `/store/${A}/keys/x`],
    ['PUT', `/store/${A}/keys/x`, 'data', { 'if-none-match': '*' }],
    ['DELETE', `/store/${A}/keys/x`],
    ['POST', '/v1/vault', new Uint8Array(100), { 'content-type': 'application/octet-stream', authorization: 'Bearer x.y.z' }],
    ['POST', '/realms/1/req', new Uint8Array(100), { 'content-type': 'application/octet-stream', authorization: 'Bearer x.y.z' }],
    ['POST', '/realms/3/req', new Uint8Array(100), { 'content-type': 'application/octet-stream' }],
    ['GET', '/api/phone/tree'],
    ['GET', '/api/phone/file/messages.db'],
    ['POST', '/api/passkeys/options', '{}', { 'content-type': 'application/json' }],
  ];
  for (const cookie of [undefined, 'coffer_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'coffer_session=not-a-session']) {
    for (const [method, target, body, headers] of cases) {
      const r = await send(method, target, { ...(body !== undefined ? { body } : {}), ...(headers ? { headers } : {}), ...(cookie ? { cookie } : {}) });
      assert.equal(r.status, 401, `${method} ${target} with cookie ${cookie}: ${r.body.toString().slice(0, 200)}`);
      if (method !== 'HEAD') assert.equal(r.json?.error, 'not-signed-in');
    }
  }
  assert.deepEqual(await readdir(app.cloudDir), [], 'nothing was stored');
  // The page's own session endpoint says nobody is signed in.
  assert.deepEqual((await send('GET', '/api/session')).json, { account: null });
});

test("account A's session cannot touch B's objects, nor get a vault token for B", async () => {
  const put = await send('PUT', `/store/${B}/repo/keys/k1`, { cookie: cookieB, body: 'bob secret', headers: { 'if-none-match': '*' } });
  assert.equal(put.status, 201);
  for (const [method, target] of [
    ['GET', `/store/${B}/repo/keys/k1`], ['HEAD', `/store/${B}/repo/keys/k1`], ['DELETE', `/store/${B}/repo/keys/k1`],
    ['PUT', `/store/${B}/repo/keys/k2`], ['GET', `/store/${B}/?list=`], ['GET', `/store/${B}/repo/?list=keys/`],
    ['GET', `/store/bob%40example/repo/keys/k1`], ['GET', `/store/BOB@example/repo/keys/k1`], ['DELETE', `/store/${A}/../${B}/repo/keys/k1`],
  ] as const) {
    const r = await send(method, target, { cookie: cookieA, ...(method === 'PUT' ? { body: 'mallory', headers: { 'if-none-match': '*' } } : {}) });
    assert.equal(r.status, 403, `${method} ${target}: ${r.status} ${r.body.toString().slice(0, 200)}`);
  }
  // Smuggling a slash or dots into the object name does not leave A's folder either.
  for (const target of [`/store/${A}/..%2f${B}/repo/keys/k1`, `/store/${A}/%2e%2e/${B}/repo/keys/k1`, `/store/${A}/repo/..%2f..%2f${B}%2frepo%2fkeys%2fk1`]) {
    const r = await send('GET', target, { cookie: cookieA });
    assert.ok(r.status === 400 || r.status === 403 || r.status === 404, `${target}: ${r.status}`);
  }
  const still = await send('GET', `/store/${B}/repo/keys/k1`, { cookie: cookieB });
  assert.equal(still.status, 200);
  assert.equal(still.body.toString(), 'bob secret');
  assert.deepEqual((await send('GET', `/store/${B}/repo/?list=`, { cookie: cookieB })).json, ['keys/k1']);
  // A's own store works, and is A's alone.
  assert.equal((await send('PUT', `/store/${A}/repo/keys/k1`, { cookie: cookieA, body: 'alice', headers: { 'if-none-match': '*' } })).status, 201);
  assert.deepEqual((await readdir(join(app.cloudDir, A, 'repo', 'keys'))).sort(), ['k1']);
  assert.equal(await readFile(join(app.cloudDir, B, 'repo', 'keys', 'k1'), 'utf8'), 'bob secret');

  // Vault tokens: always for the session's account, whatever the body asks, and short-lived.
  const t = await postJson('/api/token', { purpose: 'use', account: B, sub: B }, cookieA);
  assert.equal(t.status, 200);
  const claims = JSON.parse(Buffer.from(String(t.json!['token']).split('.')[1]!, 'base64url').toString()) as { sub: string; exp: number; iat: number };
  const head = JSON.parse(Buffer.from(String(t.json!['token']).split('.')[0]!, 'base64url').toString()) as { alg: string };
  assert.equal(claims.sub, A);
  assert.equal(head.alg, 'EdDSA');
  assert.ok(claims.exp - claims.iat <= 300, `token lives ${claims.exp - claims.iat} s`);
});

test('realm tokens: one per realm, for the session\'s account only, short-lived; the realms are reached over Noise through /realms/<n>/req only', async () => {
  const config = (await send('GET', '/config.json')).json as { juicebox: { realms: { id: string; address: string; public_key: string }[]; register_threshold: number; recover_threshold: number } };
  const realms = config.juicebox.realms;
  assert.equal(realms.length, 3);
  assert.deepEqual([config.juicebox.register_threshold, config.juicebox.recover_threshold], [3, 3]);
  realms.forEach((r, i) => {
    assert.match(r.id, /^[0-9a-f]{32}$/);
    // A public key makes the page speak the hardware-realm wire (Noise): this server sees no share.
    assert.match(r.public_key, /^[0-9a-f]{64}$/);
    assert.equal(r.address, `${app.url}/realms/${i + 1}/`);
  });
  assert.equal(new Set(realms.map((r) => r.id)).size, 3, 'three independent realms');
  // A preset the page cannot have is refused.
  assert.equal((await postJson('/api/token', { purpose: 'register', keyStretching: 'juicebox:None' }, cookieA)).status, 400);
  const t = await postJson('/api/token', { purpose: 'register', keyStretching: 'juicebox:FastInsecure', account: B, sub: B }, cookieA);
  assert.equal(t.status, 200);
  assert.equal(t.json!['token'], undefined, 'no vault token for a password over the realms');
  const tokens = t.json!['realmTokens'] as Record<string, string>;
  assert.deepEqual(Object.keys(tokens).sort(), realms.map((r) => r.id).sort());
  for (const [id, token] of Object.entries(tokens)) {
    const [head, claims] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>);
    assert.deepEqual([head!['alg'], head!['kid']], ['EdDSA', 'coffer:1']);
    assert.deepEqual([claims!['sub'], claims!['aud'], claims!['iss']], [A, id, 'coffer']);
    assert.ok((claims!['exp'] as number) - (claims!['iat'] as number) <= 300);
  }
  // From now on A's "use" tokens are the realms' too (the recorded preset says where the password is).
  const use = await postJson('/api/token', { purpose: 'use' }, cookieA);
  assert.deepEqual([Object.keys(use.json!['realmTokens'] as object).length, use.json!['keyStretching']], [3, 'juicebox:FastInsecure']);
  // Only POST /realms/<1-3>/req, with a session.
  assert.equal((await send('GET', '/realms/1/req', { cookie: cookieA })).status, 405);
  for (const target of ['/realms/4/req', '/realms/0/req', '/realms/1/', '/realms/1/req/x', '/realms/', '/realms/1/metrics']) {
    assert.equal((await send('POST', target, { cookie: cookieA, body: new Uint8Array(10), headers: { 'content-type': 'application/octet-stream' } })).status, 404, target);
  }
  // With a session the request reaches the realm, which answers a malformed one itself (4xx).
  const r = await send('POST', '/realms/1/req', { cookie: cookieA, body: new Uint8Array(10), headers: { 'content-type': 'application/octet-stream' } });
  assert.ok(r.status >= 400 && r.status < 500, `a malformed request to a realm: ${r.status}`);
});

test('only the origin host is served (421), the vault proxy too; loopback addresses are sent to it', async () => {
  for (const badHost of ['evil.example', `evil.example:${port}`, `localhost:${port + 1}`, `localhost.evil.example:${port}`, '']) {
    for (const [method, target] of [['GET', '/'], ['GET', '/config.json'], ['POST', '/api/token'], ['POST', '/v1/vault'], ['GET', `/store/${A}/?list=`], ['GET', '/dev/inbox']] as const) {
      const headers: Record<string, string> = { origin: app.url, cookie: cookieA, 'content-type': 'application/json' };
      if (badHost) headers['host'] = badHost;
      const r = await rawRequest(port, method, target, { headers, ...(method === 'POST' ? { body: '{"purpose":"use"}' } : {}) });
      // (Node answers a request with no Host at all with 400 itself.)
      assert.ok(r.status === 421 || (badHost === '' && r.status === 400), `${method} ${target} for Host ${JSON.stringify(badHost)}: ${r.status}`);
      if (r.status === 421) assert.equal(r.json?.error, 'misdirected-request');
    }
  }
  const page = await send('GET', '/');
  assert.deepEqual([page.headers['x-frame-options'], page.headers['x-content-type-options']], ['DENY', 'nosniff']);
  const csp = String(page.headers['content-security-policy']);
  for (const d of ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "object-src 'none'", "frame-ancestors 'none'"]) assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
  assert.ok(!csp.includes('unsafe-inline') && !/'unsafe-eval'/.test(csp), csp);
  const moved = await rawRequest(port, 'GET', '/config.json?x=1', { headers: { host: `127.0.0.1:${port}` } });
  assert.equal(moved.status, 308);
  assert.equal(moved.headers['location'], `${app.url}/config.json?x=1`);
  assert.equal((await rawRequest(port, 'POST', '/api/token', { headers: { host: `127.0.0.1:${port}`, origin: app.url, cookie: cookieA } })).status, 421);
  assert.equal((await send('GET', '/config.json')).status, 200);
});

test('cross-site requests are refused (403) and the session cookie is HttpOnly and SameSite=Strict', async () => {
  for (const origin of [undefined, 'https://evil.example', 'null', `http://127.0.0.1:${port}`]) {
    const headers: Record<string, string> = { host, cookie: cookieA, 'content-type': 'application/json', 'if-none-match': '*' };
    if (origin) headers['origin'] = origin;
    for (const [method, target] of [['POST', '/api/token'], ['PUT', `/store/${A}/csrf/x`], ['DELETE', `/store/${A}/repo/keys/k1`], ['POST', '/api/signout'], ['POST', '/v1/vault']] as const) {
      const r = await rawRequest(port, method, target, { headers, body: '{"purpose":"use"}' });
      assert.equal(r.status, 403, `${method} ${target} from ${origin}`);
      assert.equal(r.json?.error, 'cross-origin');
    }
  }
  assert.equal((await send('GET', `/store/${A}/repo/keys/k1`, { cookie: cookieA })).status, 200, 'nothing was deleted');
  await assert.rejects(stat(join(app.cloudDir, A, 'csrf')));
  // The cookie the server sets.
  const code = await postJson('/api/code/send', { account: A });
  assert.equal(code.status, 202);
  const signin = await postJson('/api/code/verify', { account: A, code: app.devInbox!.entries[0]!.code });
  assert.equal(signin.status, 200);
  assert.match(signin.headers['set-cookie']!, /^coffer_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
  // Signing out ends that session for good.
  const fresh = signin.headers['set-cookie']!.split(';')[0]!;
  assert.equal((await send('GET', '/api/session', { cookie: fresh })).json?.['account'], A);
  assert.equal((await send('POST', '/api/signout', { cookie: fresh })).status, 200);
  assert.equal((await postJson('/api/token', { purpose: 'use' }, fresh)).status, 401);
});

test('no chat reaches the server: the old database upload path is gone, and the phone\'s chats are its files only', async () => {
  const db = await readFile(join(app.phoneDir, 'messages.db'));
  for (const target of ['/api/chat-from-db', '/api/phone/chat', '/api/chat']) {
    const r = await send('POST', target, { cookie: cookieA, body: db, headers: { 'content-type': 'application/octet-stream' } });
    assert.ok(r.status === 404 || r.status === 405, `POST ${target}: ${r.status} ${r.body.toString().slice(0, 200)}`);
    assert.equal((await send('GET', target, { cookie: cookieA })).status, 404, `GET ${target}`);
  }
});

test('one-time codes: wrong codes are counted and void the code, unknown accounts look the same, and sends and tries are rate-limited', async () => {
  const inbox = app.devInbox!;
  const sent = await postJson('/api/code/send', { account: B });
  assert.equal(sent.status, 202);
  const code = inbox.entries[0]!.code;
  assert.equal(inbox.entries[0]!.account, B);
  const wrong = code === '000000' ? '000001' : '000000';
  for (let i = 0; i < 5; i++) {
    const r = await postJson('/api/code/verify', { account: B, code: wrong });
    assert.equal(r.status, 401);
    assert.equal(r.json?.error, 'wrong-code');
  }
  const late = await postJson('/api/code/verify', { account: B, code });
  assert.equal(late.status, 401, 'five wrong tries void the code');
  // An account that does not exist: the same answers, and no code sent.
  const before = inbox.entries.length;
  const ghost = await postJson('/api/code/send', { account: 'nobody@example' });
  assert.equal(ghost.status, 202);
  assert.deepEqual(Object.keys(ghost.json!).sort(), Object.keys(sent.json!).sort());
  assert.equal(inbox.entries.length, before);
  const ghostTry = await postJson('/api/code/verify', { account: 'nobody@example', code: '123456' });
  assert.deepEqual([ghostTry.status, ghostTry.json], [late.status, late.json]);
  // Three sends per account in 10 minutes (one was spent above).
  assert.equal((await postJson('/api/code/send', { account: B })).status, 202);
  assert.equal((await postJson('/api/code/send', { account: B })).status, 202);
  const limited = await postJson('/api/code/send', { account: B });
  assert.equal(limited.status, 429);
  assert.match(limited.headers['retry-after']!, /^\d+$/);
  // Code tries per account: 10 an hour (6 were spent above), whatever the code.
  const tries = [];
  for (let i = 0; i < 6; i++) tries.push((await postJson('/api/code/verify', { account: B, code: wrong })).status);
  assert.deepEqual(tries, [401, 401, 401, 401, 429, 429]);
  assert.equal((await postJson('/api/code/verify', { account: B, code: inbox.entries[0]!.code })).status, 429, 'even the right code waits');
});

test('sign-in attempts are rate-limited per client address (last: it spends this address\'s allowance)', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 60 && !statuses.includes(429); i++) statuses.push((await postJson('/api/signin/options', {})).status);
  // The allowance is a burst of 30 refilled at one a second; earlier tests spent part of it.
  assert.ok(statuses.includes(429), `no limit after ${statuses.length} requests`);
  assert.ok(statuses.slice(0, statuses.indexOf(429)).every((s) => s === 200));
  const r = await postJson('/api/signin/options', {});
  assert.equal(r.status, 429);
  assert.match(r.json!.message!, /too many sign-in attempts; try again in \d+ s/);
});
