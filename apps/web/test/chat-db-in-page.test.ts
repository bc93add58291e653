/**
 * The page reads chat databases itself (spec/web-app.md §7), and treats them as someone else's
 * input: in headless Chromium, the demo phone's message database is swapped (by intercepting its
 * download) for hostile ones; each is refused with a clear message before anything in it runs, a
 * slow one is stopped at the reader's budget while the page stays responsive, and no reader
 * worker is left behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ARTIFACTS, CHAT_TABLES_SQL, launchChromium, MESSAGES_TABLE_SQL, newDevice, signUp, sqliteFile, startTestApp } from './helpers.js';

let app: Awaited<ReturnType<typeof startTestApp>>;
let browser: Browser;
let page: Page;

before(async () => {
  [app, browser] = await Promise.all([startTestApp({ sampleBytes: 256 * 1024 }), launchChromium()]);
  ({ page } = await newDevice(browser, app.url, { failOnPageError: (m) => assert.fail(`page error: ${m}`) }));
  // Main-thread stalls, as [end time, length] in ms, from the first script on.
  await page.addInitScript(() => {
    const w = window as unknown as { __stalls: [number, number][] };
    w.__stalls = [];
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      if (now - last > 40) w.__stalls.push([now, now - last]);
      last = now;
    }, 10);
  });
  await signUp(page, 'reader@example');
  await page.getByRole('button', { name: "Use this phone's chats" }).click();
  await page.locator('main[data-ready=true]').waitFor();
});
after(async () => {
  await browser?.close();
  await app?.dispose();
});

/** Serves `bytes` as the phone's message database, reloads the chats and returns what the page says, and how long it took. */
async function openWith(bytes: Buffer): Promise<{ text: string; ms: number; stalls: [number, number][]; at: number }> {
  await page.unroute('**/api/phone/file/messages.db');
  await page.route('**/api/phone/file/messages.db', (r) => r.fulfill({ status: 200, contentType: 'application/vnd.sqlite3', body: bytes }));
  await page.reload();
  const t0 = Date.now();
  const outcome = page.locator('main p.error').or(page.locator('main[data-ready=true]'));
  await outcome.first().waitFor({ timeout: 30_000 });
  const ms = Date.now() - t0;
  const text = (await page.locator('main p.error').count()) ? ((await page.locator('main p.error').textContent()) ?? '') : 'ready';
  const { stalls, at } = await page.evaluate(() => ({ stalls: (window as unknown as { __stalls: [number, number][] }).__stalls, at: performance.now() }));
  return { text, ms, stalls, at };
}

/** No chat reader worker is left running (each read ends its own). */
async function assertNoReaderLeft(): Promise<void> {
  for (let i = 0; i < 50 && page.workers().some((w) => w.url().endsWith('/chat-reader.js')); i++) await page.waitForTimeout(20);
  assert.deepEqual(page.workers().map((w) => w.url()).filter((u) => u.endsWith('/chat-reader.js')), []);
}

test('hostile databases are refused in the page before anything in them runs: views, triggers, virtual tables, generated columns, wrong schemas, non-databases', async () => {
  const refused: [string, Buffer, RegExp][] = [
    // The attack on the old server path: a view named like the table the reader queries, whose recursion never ends.
    ['recursive view', await sqliteFile('recursive-view', `${CHAT_TABLES_SQL}
      CREATE VIEW messages AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
        SELECT n AS id, 1 AS conversation_id, 1 AS sender_id, n AS timestamp, printf('%.*c', 1000, 'x') AS body FROM r;`), /not a chat database: it has a view \("messages"\)/],
    ['trigger', await sqliteFile('trigger', `${CHAT_TABLES_SQL}${MESSAGES_TABLE_SQL} CREATE TRIGGER t AFTER INSERT ON messages BEGIN DELETE FROM contacts; END;`), /it has a trigger \("t"\)/],
    ['virtual table', await sqliteFile('virtual', `${CHAT_TABLES_SQL}${MESSAGES_TABLE_SQL} CREATE VIRTUAL TABLE search USING fts5(body);`), /it has a virtual table \("search"\)/],
    ['generated column', await sqliteFile('generated', `${CHAT_TABLES_SQL} CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER, sender_id INTEGER, timestamp INTEGER, b TEXT, body TEXT GENERATED ALWAYS AS (printf('%.*c', 100000000, b)));`), /table "messages" has generated or hidden columns/],
    ['missing table', await sqliteFile('missing', CHAT_TABLES_SQL), /it has no table "messages"/],
    ['missing column', await sqliteFile('column', `${CHAT_TABLES_SQL} CREATE TABLE messages (id INTEGER PRIMARY KEY);`), /table "messages" has no column "conversation_id"/],
    ['not SQLite', Buffer.alloc(8192, 7), /it is not an SQLite database/],
    ['damaged', Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(8176, 0xff)]), /SQLite cannot (read|open) it/],
  ];
  for (const [what, bytes, why] of refused) {
    const r = await openWith(bytes);
    assert.match(r.text, /^Could not open the chats: not a chat database: /, what);
    assert.match(r.text, why, what);
    assert.ok(r.ms < 10_000, `${what}: answered after ${r.ms} ms`);
    await assertNoReaderLeft();
  }
  await mkdir(join(ARTIFACTS, 'web'), { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'web', '20-hostile-database-refused.png'), fullPage: true });
  // The phone's real database still reads.
  assert.equal((await openWith(await readFile(join(app.phoneDir, 'messages.db')))).text, 'ready');
});

test('a database that reads slowly is stopped at the reader\'s budget, and the page stays responsive meanwhile', async () => {
  // Nothing to refuse but no index: each conversation's read scans every message.
  const slow = await sqliteFile('slow', `${CHAT_TABLES_SQL}${MESSAGES_TABLE_SQL}`, (d) => {
    d.transaction(() => {
      const c = d.prepare('INSERT INTO conversations (id, kind, title, created_at) VALUES (?, ?, ?, 0)');
      for (let i = 1; i <= 500; i++) c.run(i, 'direct', `c${i}`);
      const m = d.prepare('INSERT INTO messages (conversation_id, sender_id, timestamp, body) VALUES (?, 1, ?, ?)');
      for (let i = 0; i < 300_000; i++) m.run((i % 500) + 1, (i * 7919) % 1_000_003, 'x');
    })();
  });
  const r = await openWith(slow);
  assert.equal(r.text, 'Could not open the chats: reading it took longer than 3 s; a chat database reads in far less');
  assert.ok(r.ms >= 3000 && r.ms < 15_000, `stopped after ${r.ms} ms`);
  // The last 2.5 s before the budget ran out were all reading: the page's own thread never stalled.
  const during = r.stalls.filter(([end]) => end > r.at - r.ms + 1000);
  const worst = Math.max(0, ...during.map(([, len]) => len));
  assert.ok(worst < 500, `the page stalled ${worst.toFixed(0)} ms while the database was read`);
  await assertNoReaderLeft();
});
