/**
 * Child process of chat-db.ts: says `R` when loaded, reads one untrusted chat database from
 * standard input and writes `{ok, chat}` or `{ok: false, message}` as JSON to standard output. A process, not a thread, so
 * that it can be killed even inside a long SQLite call.
 */
import Database from 'better-sqlite3';
import { chatJson, NotAChatDatabaseError, openUntrusted } from './chat-json.js';

// Ready: the parent's clock for this database starts now, not while Node starts.
process.stdout.write('R');
const parts: Buffer[] = [];
for await (const c of process.stdin as AsyncIterable<Buffer>) parts.push(c);
let out: unknown;
try {
  // This process reads nothing else: SQLite may use 256 MiB at most, the database included.
  new Database(':memory:').pragma('hard_heap_limit = 268435456');
  const db = openUntrusted(Buffer.concat(parts));
  try {
    out = { ok: true, chat: chatJson(db) };
  } finally {
    db.close();
  }
} catch (e) {
  // SQLite's own messages about a damaged file are safe to show; nothing else is.
  const sqlite = e instanceof Error && String((e as { code?: unknown }).code ?? '').startsWith('SQLITE_');
  out = { ok: false, message: e instanceof NotAChatDatabaseError ? e.message : sqlite ? `SQLite cannot read it (${(e as Error).message})` : 'it could not be read' };
}
process.stdout.write(JSON.stringify(out));
