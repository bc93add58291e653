/**
 * A chat database (the sample's schema, @coffer/sample) read into JSON for display. Untrusted
 * databases go through `checkChatSchema` first (spec/web-app.md §6): nothing in them may run.
 */
import Database from 'better-sqlite3';

export interface ChatJson {
  self: number;
  contacts: { id: number; name: string }[];
  conversations: { id: number; kind: string; title: string; messages: number; last: number }[];
  /** Messages by conversation id, oldest first. */
  messages: Record<string, { id: number; sender: number; ts: number; body: string; attachments: { kind: string; path: string; size: number; mime: string; durationMs: number | null }[] }[]>;
}

/** The tables and columns this reader uses. */
const TABLES: Record<string, string[]> = {
  contacts: ['id', 'name', 'is_self'],
  conversations: ['id', 'kind', 'title'],
  messages: ['id', 'conversation_id', 'sender_id', 'timestamp', 'body'],
  attachments: ['id', 'message_id', 'kind', 'path', 'size', 'mime', 'duration_ms'],
};

export class NotAChatDatabaseError extends Error {
  override name = 'NotAChatDatabaseError';
}

/**
 * Refuses any schema in which reading could run something: views, triggers, virtual tables and
 * generated columns (whose expressions are computed on read). Reading the schema itself runs
 * nothing. The tables read must exist with the columns read; other plain tables are ignored.
 */
export function checkChatSchema(db: Database.Database): void {
  const rows = db.prepare('SELECT type, name, sql FROM sqlite_schema').all() as { type: string; name: string; sql: string | null }[];
  for (const r of rows) {
    if (r.type === 'view' || r.type === 'trigger') throw new NotAChatDatabaseError(`it has a ${r.type} (${JSON.stringify(r.name.slice(0, 64))}); a chat database has none`);
    if (r.type !== 'table' && r.type !== 'index') throw new NotAChatDatabaseError(`it has a schema entry of type ${JSON.stringify(String(r.type).slice(0, 16))}`);
    if (r.type === 'table' && /^\s*create\s+virtual\s/i.test(r.sql ?? '')) throw new NotAChatDatabaseError(`it has a virtual table (${JSON.stringify(r.name.slice(0, 64))})`);
  }
  for (const [table, columns] of Object.entries(TABLES)) {
    if (!rows.some((r) => r.type === 'table' && r.name === table)) throw new NotAChatDatabaseError(`it has no table "${table}"`);
    const info = db.prepare(`PRAGMA table_xinfo("${table}")`).all() as { name: string; hidden: number }[];
    if (info.some((c) => c.hidden !== 0)) throw new NotAChatDatabaseError(`table "${table}" has generated or hidden columns`);
    for (const c of columns) if (!info.some((i) => i.name === c)) throw new NotAChatDatabaseError(`table "${table}" has no column "${c}"`);
  }
}

/** Reads a chat database into JSON: the newest `limit` messages of at most 500 conversations. */
export function chatJson(db: Database.Database, limit = 200): ChatJson {
  const self = (db.prepare('SELECT id FROM contacts WHERE is_self = 1').get() as { id: number } | undefined)?.id ?? 0;
  const contacts = db.prepare('SELECT id, name FROM contacts ORDER BY id LIMIT 10000').all() as ChatJson['contacts'];
  const conversations = db
    .prepare('SELECT c.id, c.kind, c.title, COUNT(m.id) AS messages, MAX(m.timestamp) AS last FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY last DESC LIMIT 500')
    .all() as ChatJson['conversations'];
  const msgs = db.prepare('SELECT id, sender_id AS sender, timestamp AS ts, body FROM messages WHERE conversation_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?');
  const atts = db.prepare('SELECT kind, path, size, mime, duration_ms AS durationMs FROM attachments WHERE message_id = ? ORDER BY id LIMIT 16');
  const messages: ChatJson['messages'] = {};
  for (const c of conversations) {
    messages[c.id] = (msgs.all(c.id, limit) as { id: number; sender: number; ts: number; body: string }[])
      .reverse()
      .map((m) => ({ ...m, attachments: atts.all(m.id) as ChatJson['messages'][string][number]['attachments'] }));
  }
  return { self, contacts, conversations, messages };
}

/** Opens an untrusted database from memory, read-only, with nothing allowed to run. */
export function openUntrusted(bytes: Uint8Array): Database.Database {
  if (bytes.length < 512 || Buffer.from(bytes.subarray(0, 16)).toString('latin1') !== 'SQLite format 3\0') {
    throw new NotAChatDatabaseError('it is not an SQLite database');
  }
  let db: Database.Database;
  try {
    db = new Database(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), { readonly: true });
  } catch (e) {
    throw new NotAChatDatabaseError(`SQLite cannot open it (${(e as Error).message})`);
  }
  try {
    db.pragma('query_only = ON');
    db.pragma('trusted_schema = OFF');
    db.pragma('cell_size_check = ON');
    db.pragma('cache_size = -8192'); // 8 MiB
    checkChatSchema(db);
    return db;
  } catch (e) {
    db.close();
    if (e instanceof NotAChatDatabaseError) throw e;
    throw new NotAChatDatabaseError(`SQLite cannot read its schema (${(e as Error).message})`);
  }
}
