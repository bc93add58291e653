/** The demo phone's chat data (from @coffer/sample) as a file tree and as JSON for display. */
import { lstat, readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import Database from 'better-sqlite3';
import { generateChatData } from '@coffer/sample';

export interface TreeFile {
  path: string;
  size: number;
  mode: number;
  mtimeMs: number;
}

export interface ChatJson {
  self: number;
  contacts: { id: number; name: string }[];
  conversations: { id: number; kind: string; title: string; messages: number; last: number }[];
  /** Messages by conversation id, oldest first. */
  messages: Record<string, { id: number; sender: number; ts: number; body: string; attachments: { kind: string; path: string; size: number; mime: string; durationMs: number | null }[] }[]>;
}

/** Generates the sample into `dir` unless it holds one already. */
export async function ensureSample(dir: string, bytes: number, seed: string): Promise<void> {
  try {
    await stat(join(dir, 'messages.db'));
    return;
  } catch {}
  await generateChatData(dir, { seed, targetBytes: bytes });
}

/** Every regular file below `dir` with its size, mode and mtime ('/'-separated paths). */
export async function listTree(dir: string): Promise<TreeFile[]> {
  const out: TreeFile[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    const st = await lstat(p);
    out.push({ path: relative(dir, p).split(sep).join('/'), size: st.size, mode: st.mode & 0o777, mtimeMs: Math.floor(st.mtimeMs) });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Reads a chat database (the sample's schema) into JSON; `limit` messages per conversation, newest. */
export function chatJson(dbFileOrBytes: string | Buffer, limit = 200): ChatJson {
  const db = new Database(dbFileOrBytes as string, { readonly: typeof dbFileOrBytes === 'string', fileMustExist: true });
  try {
    const self = (db.prepare('SELECT id FROM contacts WHERE is_self = 1').get() as { id: number } | undefined)?.id ?? 0;
    const contacts = db.prepare('SELECT id, name FROM contacts ORDER BY id').all() as ChatJson['contacts'];
    const conversations = db
      .prepare('SELECT c.id, c.kind, c.title, COUNT(m.id) AS messages, MAX(m.timestamp) AS last FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY last DESC')
      .all() as ChatJson['conversations'];
    const msgs = db.prepare('SELECT id, sender_id AS sender, timestamp AS ts, body FROM messages WHERE conversation_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?');
    const atts = db.prepare('SELECT kind, path, size, mime, duration_ms AS durationMs FROM attachments WHERE message_id = ? ORDER BY id');
    const messages: ChatJson['messages'] = {};
    for (const c of conversations) {
      messages[c.id] = (msgs.all(c.id, limit) as { id: number; sender: number; ts: number; body: string }[])
        .reverse()
        .map((m) => ({ ...m, attachments: atts.all(m.id) as ChatJson['messages'][string][number]['attachments'] }));
    }
    return { self, contacts, conversations, messages };
  } finally {
    db.close();
  }
}
