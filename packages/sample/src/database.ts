/** The chat database: schema and the few statements the generator and `addActivity` share. */
import Database from 'better-sqlite3';
import { SampleError } from './errors.js';
import type { MediaKind } from './media.js';

export type Db = Database.Database;

/** Bumped whenever the schema changes; `addActivity` refuses other versions. */
export const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE contacts (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  phone TEXT NOT NULL,
  is_self INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE conversations (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
  title TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE conversation_members (
  conversation_id INTEGER NOT NULL REFERENCES conversations(id),
  contact_id INTEGER NOT NULL REFERENCES contacts(id),
  PRIMARY KEY (conversation_id, contact_id)
) WITHOUT ROWID;
CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  conversation_id INTEGER NOT NULL REFERENCES conversations(id),
  sender_id INTEGER NOT NULL REFERENCES contacts(id),
  timestamp INTEGER NOT NULL,            -- milliseconds since the epoch
  body TEXT NOT NULL,
  reply_to INTEGER REFERENCES messages(id),
  status TEXT NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed', 'received'))
);
CREATE INDEX messages_by_conversation_time ON messages (conversation_id, timestamp);
CREATE TABLE attachments (
  id INTEGER PRIMARY KEY,
  message_id INTEGER NOT NULL REFERENCES messages(id),
  kind TEXT NOT NULL CHECK (kind IN ('photo', 'voice', 'video')),
  path TEXT NOT NULL UNIQUE,             -- relative to the sample root, '/'-separated
  size INTEGER NOT NULL,
  mime TEXT NOT NULL,
  duration_ms INTEGER                    -- NULL for photos
);
CREATE INDEX attachments_by_message ON attachments (message_id);
`;

export interface MessageRow {
  id: number;
  conversationId: number;
  senderId: number;
  timestamp: number;
  body: string;
  replyTo: number | null;
  status: 'sent' | 'delivered' | 'read' | 'failed' | 'received';
}

export interface AttachmentRow {
  id: number;
  messageId: number;
  kind: MediaKind;
  path: string;
  size: number;
  mime: string;
  durationMs: number | null;
}

/** Opens (or creates, with `create`) a database with 4 KiB pages and a rollback journal. */
export function openDatabase(path: string, create: boolean): Db {
  const db = new Database(path, { fileMustExist: !create });
  if (create) {
    db.pragma('page_size = 4096'); // must precede the first table
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    db.exec(SCHEMA);
  }
  db.pragma('journal_mode = DELETE'); // no -wal/-shm files, the journal is gone after commit
  return db;
}

/** Opens an existing sample's database, or explains why it is not one. */
export function openSample(path: string): Db {
  let db: Db | undefined;
  try {
    db = openDatabase(path, false);
    const version = db.pragma('user_version', { simple: true });
    if (version !== SCHEMA_VERSION) throw new Error(`schema version ${String(version)}, expected ${SCHEMA_VERSION}`);
    return db;
  } catch (error) {
    db?.close();
    throw new SampleError(`${path} is not a coffer sample database (${(error as Error).message})`, { cause: error });
  }
}

export function insertMessages(db: Db, rows: readonly MessageRow[]): void {
  const insert = db.prepare(
    'INSERT INTO messages (id, conversation_id, sender_id, timestamp, body, reply_to, status) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  for (const m of rows) insert.run(m.id, m.conversationId, m.senderId, m.timestamp, m.body, m.replyTo, m.status);
}

/** Inserts attachment rows; voice notes carry no text, so their message body is cleared. */
export function insertAttachments(db: Db, rows: readonly AttachmentRow[]): void {
  const insert = db.prepare(
    'INSERT INTO attachments (id, message_id, kind, path, size, mime, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const clearBody = db.prepare("UPDATE messages SET body = '' WHERE id = ?");
  for (const a of rows) {
    insert.run(a.id, a.messageId, a.kind, a.path, a.size, a.mime, a.durationMs);
    if (a.kind === 'voice') clearBody.run(a.messageId);
  }
}
