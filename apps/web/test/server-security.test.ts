/**
 * The app server as a stranger meets it (spec/web-app.md): nothing without a session, no account
 * touches another's objects, foreign hosts and cross-site requests are refused, untrusted chat
 * databases cannot stall it, and sign-in codes cannot be guessed. Sessions are made through the
 * page with a virtual passkey; every other request is written by hand over TCP.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
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
    ['GET', '/api/phone/tree'],
    ['GET', '/api/phone/chat'],
    ['GET', '/api/phone/file/messages.db'],
    ['POST', '/api/chat-from-db', new Uint8Array(4096)],
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

/** Tables of the chat schema, for hostile databases that look like one. */
const CHAT_TABLES = `
  CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT, phone TEXT, is_self INTEGER);
  CREATE TABLE conversations (id INTEGER PRIMARY KEY, kind TEXT, title TEXT, created_at INTEGER);
  CREATE TABLE attachments (id INTEGER PRIMARY KEY, message_id INTEGER, kind TEXT, path TEXT, size INTEGER, mime TEXT, duration_ms INTEGER);
`;
const MESSAGES = 'CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER, sender_id INTEGER, timestamp INTEGER, body TEXT);';

async function sqliteFile(name: string, sql: string, fill?: (db: Database.Database) => void, pageSize = 4096): Promise<Buffer> {
  const file = join(tmpdir(), `coffer-hostile-${process.pid}-${name}.db`);
  await rm(file, { force: true });
  const db = new Database(file);
  db.pragma(`page_size = ${pageSize}`);
  db.exec(sql);
  fill?.(db);
  db.close();
  const bytes = await readFile(file);
  await rm(file, { force: true });
  return bytes;
}

/** Polls a cheap and a heavier endpoint as another signed-in client; the slowest answer, in ms. */
function otherClient(): { stop(): Promise<{ worst: number; count: number }> } {
  let running = true;
  let worst = 0;
  let count = 0;
  const loop = (async () => {
    while (running) {
      for (const target of ['/config.json', '/api/phone/tree', `/store/${B}/repo/keys/k1`]) {
        const r = await send('GET', target, { cookie: cookieB });
        assert.equal(r.status, 200);
        worst = Math.max(worst, r.ms);
        count++;
      }
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { worst, count };
    },
  };
}

const workersRunning = async () => {
  let n = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('chat-worker.js')) n++;
  }
  return n;
};

test('an uploaded database with a recursive view is rejected within 1 s while other clients keep being served', async () => {
  // The attack: a view named like the table the reader queries, whose recursion never ends.
  const db = await sqliteFile('recursive-view', `${CHAT_TABLES}
    CREATE VIEW messages AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
      SELECT n AS id, 1 AS conversation_id, 1 AS sender_id, n AS timestamp, printf('%.*c', 1000, 'x') AS body FROM r;`);
  assert.ok(db.length <= 16 * 1024, `${db.length} bytes`);
  const other = otherClient();
  const r = await send('POST', '/api/chat-from-db', { cookie: cookieA, body: db });
  const served = await other.stop();
  assert.equal(r.status, 400);
  assert.equal(r.json?.error, 'not-a-chat-database');
  assert.match(r.json!.message!, /view .*messages/);
  assert.ok(r.ms < 1000, `rejected after ${r.ms.toFixed(0)} ms`);
  assert.ok(served.count >= 3 && served.worst < 500, `other clients: ${JSON.stringify(served)}`);
});

test('uploaded databases: triggers, virtual tables, generated columns and non-databases are refused; a slow one is killed at its 1 s budget; a real one reads', async () => {
  const refused: [string, Buffer, RegExp][] = [
    ['trigger', await sqliteFile('trigger', `${CHAT_TABLES}${MESSAGES} CREATE TRIGGER t AFTER INSERT ON messages BEGIN DELETE FROM contacts; END;`), /trigger/],
    ['virtual table', await sqliteFile('virtual', `${CHAT_TABLES}${MESSAGES} CREATE VIRTUAL TABLE search USING fts5(body);`), /virtual table/],
    ['generated column', await sqliteFile('generated', `${CHAT_TABLES} CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER, sender_id INTEGER, timestamp INTEGER, b TEXT, body TEXT GENERATED ALWAYS AS (printf('%.*c', 100000000, b)));`), /generated/],
    ['missing table', await sqliteFile('missing', CHAT_TABLES), /no table "messages"/],
    ['missing column', await sqliteFile('column', `${CHAT_TABLES} CREATE TABLE messages (id INTEGER PRIMARY KEY);`), /no column/],
    ['not SQLite', Buffer.alloc(8192, 7), /not an SQLite database/],
    ['damaged', Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(8176, 0xff)]), /SQLite|could not be read/],
  ];
  for (const [what, bytes, why] of refused) {
    const r = await send('POST', '/api/chat-from-db', { cookie: cookieA, body: bytes });
    assert.equal(r.status, 400, `${what}: ${r.body.toString().slice(0, 200)}`);
    assert.match(r.json!.message!, why, what);
  }
  assert.equal((await send('POST', '/api/chat-from-db', { cookie: cookieA, body: Buffer.alloc(32 * 2 ** 20 + 1) })).status, 413);

  // A database with nothing to refuse but no index: each conversation's read scans every message.
  const slow = await sqliteFile('slow', `${CHAT_TABLES}${MESSAGES}`, (d) => {
    d.transaction(() => {
      const c = d.prepare('INSERT INTO conversations (id, kind, title, created_at) VALUES (?, ?, ?, 0)');
      for (let i = 1; i <= 500; i++) c.run(i, 'direct', `c${i}`);
      const m = d.prepare('INSERT INTO messages (conversation_id, sender_id, timestamp, body) VALUES (?, 1, ?, ?)');
      for (let i = 0; i < 300_000; i++) m.run((i % 500) + 1, (i * 7919) % 1_000_003, 'x');
    })();
  });
  const other = otherClient();
  const t0 = performance.now();
  // Three at once: two are read (and killed at the budget), the third is told to come back.
  const answers = await Promise.all([0, 1, 2].map(() => send('POST', '/api/chat-from-db', { cookie: cookieA, body: slow })));
  const elapsed = performance.now() - t0;
  const served = await other.stop();
  const statuses = answers.map((a) => a.status).sort();
  assert.deepEqual(statuses, [422, 422, 503], JSON.stringify(answers.map((a) => a.json)));
  for (const a of answers.filter((x) => x.status === 422)) assert.equal(a.json?.error, 'too-slow');
  assert.ok(elapsed < 2500, `answered after ${elapsed.toFixed(0)} ms`);
  assert.ok(served.count >= 3 && served.worst < 500, `other clients: ${JSON.stringify(served)}`);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await workersRunning(), 0, 'the readers were killed');

  const real = await send('POST', '/api/chat-from-db', { cookie: cookieA, body: await readFile(join(app.phoneDir, 'messages.db')) });
  assert.equal(real.status, 200, real.body.toString().slice(0, 200));
  assert.deepEqual(real.json, (await send('GET', '/api/phone/chat', { cookie: cookieA })).json);
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
