/**
 * Web Worker: reads one chat database (the demo phone's, or a restored one) with the official
 * SQLite WASM build, in the page, so that no server ever sees a chat
 * (spec/web-app.md §7). A database is someone else's input (whoever holds the backup key can
 * write a backup), so it is opened read-only from memory, refused unless its schema is a chat
 * database's (no views, triggers, virtual tables or generated columns), and read under an
 * authorizer that allows nothing but reading the chat tables. The page ends this worker when it
 * overruns its time budget (chat-db.ts, which starts it): a hostile query never freezes the page.
 *
 * Messages (types in chat-db.ts): the worker says `{ready: true}` once SQLite is loaded (the page
 * may start it before it has a database, and its clock starts then); the page asks `open` (the
 * file: checks it, keeps it open, answers the overview) and then `messages` of a conversation, one
 * request at a time, each with its budget; answers are `{ok: true, value}`, `{ok: false, message}`,
 * or `{ok: false, slow: true}` past the budget.
 */
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';
import { CHAT_TABLES, MAX_CHAT_DB_BYTES, type Attachment, type ChatOverview, type Message, type ReaderAnswer, type ReaderRequest } from './chat-db.js';

class NotAChatDatabaseError extends Error {
  override name = 'NotAChatDatabaseError';
}

// SQLite's own notes (an OPFS file system it cannot use in a worker without cross-origin
// isolation) stay out of the console; errors still reach it.
(globalThis as { sqlite3ApiConfig?: unknown }).sqlite3ApiConfig = { warn: () => {}, log: () => {}, debug: () => {} };

const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown): void; location: Location };

type Sqlite3 = Awaited<ReturnType<typeof sqlite3InitModule>>;
type Row = Record<string, unknown>;

const sqliteLoaded: Promise<Sqlite3> = (sqlite3InitModule as unknown as (o: object) => Promise<Sqlite3>)({
  locateFile: (name: string) => new URL(`/${name}`, scope.location.href).href,
  print: () => {},
  printErr: () => {},
});

/** Authorizer action codes (sqlite3.h) that reading a chat database needs. */
const SQLITE_PRAGMA = 19;
const SQLITE_READ = 20;
const SQLITE_SELECT = 21;
const SQLITE_FUNCTION = 31;
const SQLITE_OK = 0;
const SQLITE_DENY = 1;
const READABLE = new Set([...Object.keys(CHAT_TABLES), 'sqlite_master', 'sqlite_schema']);
const FUNCTIONS = new Set(['count', 'max']);

const header = (b: Uint8Array) => String.fromCharCode(...b.subarray(0, 16));

/**
 * Opens `bytes` as a read-only in-memory database with nothing allowed to run: no views, no
 * triggers, a defensive connection that trusts nothing in the schema, and an authorizer that
 * allows selecting from the chat tables and nothing else.
 */
function openUntrusted(sqlite3: Sqlite3, bytes: Uint8Array, deadline: () => number) {
  if (bytes.length < 512 || header(bytes) !== 'SQLite format 3\0') throw new NotAChatDatabaseError('it is not an SQLite database');
  const { capi, wasm, oo1 } = sqlite3;
  const db = new oo1.DB(':memory:', 'r');
  try {
    const p = wasm.allocFromTypedArray(bytes);
    // Read-only and not resizable: SQLite frees the copy when the database closes.
    const rc = capi.sqlite3_deserialize(db.pointer!, 'main', p, bytes.length, bytes.length, capi.SQLITE_DESERIALIZE_FREEONCLOSE | capi.SQLITE_DESERIALIZE_READONLY);
    if (rc !== 0) throw new NotAChatDatabaseError(`SQLite cannot open it (${capi.sqlite3_js_rc_str(rc)})`);
    for (const [op, on] of [
      [capi.SQLITE_DBCONFIG_DEFENSIVE, 1], [capi.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0], [capi.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0], [capi.SQLITE_DBCONFIG_ENABLE_VIEW, 0],
    ] as const) {
      if (capi.sqlite3_db_config(db.pointer!, op, on, 0) !== 0) throw new Error('SQLite refused a safety setting');
    }
    // No index built on the fly either: a database without the chat schema's indexes reads
    // slowly, and meets the budget, rather than making SQLite build large indexes in memory.
    db.exec('PRAGMA query_only = ON; PRAGMA cell_size_check = ON; PRAGMA automatic_index = OFF');
    // SQLite stops itself at the deadline (the page also ends this worker then, which takes
    // Chromium a second or two inside a long WASM loop).
    capi.sqlite3_progress_handler(db.pointer!, 1000, () => (performance.now() > deadline() ? 1 : 0), 0);
    capi.sqlite3_set_authorizer(db.pointer!, (_p: unknown, action: number, a1: string | 0, a2: string | 0) => {
      if (action === SQLITE_SELECT) return SQLITE_OK;
      if (action === SQLITE_READ) return typeof a1 === 'string' && READABLE.has(a1.toLowerCase()) ? SQLITE_OK : SQLITE_DENY;
      if (action === SQLITE_FUNCTION) return typeof a2 === 'string' && FUNCTIONS.has(a2.toLowerCase()) ? SQLITE_OK : SQLITE_DENY;
      if (action === SQLITE_PRAGMA) return a1 === 'table_xinfo' ? SQLITE_OK : SQLITE_DENY;
      return SQLITE_DENY;
    }, 0);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

type Db = ReturnType<typeof openUntrusted>;

function all(db: Db, sql: string, bind?: unknown[]): Row[] {
  return db.selectObjects(sql, bind as never) as Row[];
}

/**
 * Refuses any schema in which reading could run something: views, triggers, virtual tables and
 * generated columns (computed on read). Reading the schema itself runs nothing. The tables read
 * must exist with the columns read; other plain tables are ignored.
 */
function checkChatSchema(db: Db): void {
  const rows = all(db, 'SELECT type, name, sql FROM sqlite_schema') as { type: string; name: string; sql: string | null }[];
  const name = (r: { name: string }) => JSON.stringify(String(r.name).slice(0, 64));
  for (const r of rows) {
    if (r.type === 'view' || r.type === 'trigger') throw new NotAChatDatabaseError(`it has a ${r.type} (${name(r)}); a chat database has none`);
    if (r.type !== 'table' && r.type !== 'index') throw new NotAChatDatabaseError(`it has a schema entry of type ${JSON.stringify(String(r.type).slice(0, 16))}`);
    if (r.type === 'table' && /^\s*create\s+virtual\s/i.test(r.sql ?? '')) throw new NotAChatDatabaseError(`it has a virtual table (${name(r)})`);
  }
  for (const [table, columns] of Object.entries(CHAT_TABLES)) {
    if (!rows.some((r) => r.type === 'table' && r.name === table)) throw new NotAChatDatabaseError(`it has no table "${table}"`);
    const info = all(db, `PRAGMA table_xinfo("${table}")`) as { name: string; hidden: number }[];
    if (info.some((c) => c.hidden !== 0)) throw new NotAChatDatabaseError(`table "${table}" has generated or hidden columns`);
    for (const c of columns) if (!info.some((i) => i.name === c)) throw new NotAChatDatabaseError(`table "${table}" has no column "${c}"`);
  }
}

/** Who is who, and the conversations, newest first (at most 500). */
function overview(db: Db): ChatOverview {
  const self = (all(db, 'SELECT id FROM contacts WHERE is_self = 1 LIMIT 1')[0]?.['id'] as number | undefined) ?? 0;
  const contacts = all(db, 'SELECT id, name FROM contacts ORDER BY id LIMIT 10000') as ChatOverview['contacts'];
  const conversations = all(
    db,
    'SELECT c.id, c.kind, c.title, COUNT(m.id) AS messages, MAX(m.timestamp) AS last FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY last DESC LIMIT 500',
  ) as ChatOverview['conversations'];
  return { self, contacts, conversations };
}

/** The newest `limit` messages of one conversation, oldest first, with at most 16 attachments each. */
function messages(db: Db, conversationId: number, limit = 200): Message[] {
  const newest = `SELECT id FROM messages WHERE conversation_id = ?1 ORDER BY timestamp DESC, id DESC LIMIT ${limit}`;
  const byMessage = new Map<number, Attachment[]>();
  for (const { messageId, ...a } of all(db, `SELECT message_id AS messageId, kind, path, size, mime, duration_ms AS durationMs FROM attachments WHERE message_id IN (${newest}) ORDER BY message_id, id`, [conversationId]) as (Attachment & { messageId: number })[]) {
    const list = byMessage.get(messageId) ?? [];
    if (list.length < 16) list.push(a);
    byMessage.set(messageId, list);
  }
  const rows = all(db, `SELECT id, sender_id AS sender, timestamp AS ts, body FROM messages WHERE id IN (${newest}) ORDER BY timestamp, id`, [conversationId]) as Omit<Message, 'attachments'>[];
  return rows.map((m) => ({ ...m, attachments: byMessage.get(m.id) ?? [] }));
}

let db: Db | null = null;
/** The current request's deadline (SQLite's progress handler reads it). */
let deadline = Infinity;

// Ready: the page's clock starts once SQLite is loaded, not while it loads.
void sqliteLoaded.then(() => scope.postMessage({ ready: true }), () => {});

scope.onmessage = async (e: MessageEvent<ReaderRequest>) => {
  const req = e.data;
  let answer: ReaderAnswer;
  try {
    const sqlite3 = await sqliteLoaded;
    deadline = performance.now() + req.budgetMs;
    if (req.op === 'open') {
      if (db) throw new Error('this reader has a database open');
      if (req.file.size > MAX_CHAT_DB_BYTES) throw new NotAChatDatabaseError(`it is larger than ${MAX_CHAT_DB_BYTES / 2 ** 20} MiB`);
      const opened = openUntrusted(sqlite3, new Uint8Array(await req.file.arrayBuffer()), () => deadline);
      try {
        checkChatSchema(opened);
        answer = { ok: true, value: overview(opened) };
        db = opened;
      } finally {
        if (db !== opened) opened.close();
      }
    } else {
      if (!db) throw new Error('no database is open');
      answer = { ok: true, value: messages(db, req.conversationId) };
    }
  } catch (err) {
    // SQLite's own messages about a damaged file are safe to show; nothing else is.
    const sqlite = (err as Error)?.name === 'SQLite3Error';
    if (performance.now() > deadline) answer = { ok: false, slow: true };
    else answer = { ok: false, message: err instanceof NotAChatDatabaseError ? err.message : sqlite ? `SQLite cannot read it (${(err as Error).message.replace(/^SQLITE_\w+: (sqlite3 result code \d+: )?/, '')})` : 'it could not be read' };
  }
  deadline = Infinity;
  scope.postMessage(answer);
};
