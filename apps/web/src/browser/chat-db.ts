/**
 * Chats from a chat database (the sample's schema, @coffer/sample), read in the page: the demo
 * phone's, or the one a restore just verified. No server sees a chat (spec/web-app.md §7): the
 * database is read on a Web Worker (chat-reader.ts) with the official SQLite WASM build, and the
 * worker is ended when it overruns its time budget, so a hostile database never freezes the page.
 */

export interface ChatJson {
  self: number;
  contacts: { id: number; name: string }[];
  conversations: { id: number; kind: string; title: string; messages: number; last: number }[];
  /** Messages by conversation id, oldest first. */
  messages: Record<string, { id: number; sender: number; ts: number; body: string; attachments: { kind: string; path: string; size: number; mime: string; durationMs: number | null }[] }[]>;
}

/** Where a chat folder keeps its message database. */
export const CHAT_DATABASE = 'messages.db';
/** The tables and columns the reader uses. */
export const CHAT_TABLES: Record<string, string[]> = {
  contacts: ['id', 'name', 'is_self'],
  conversations: ['id', 'kind', 'title'],
  messages: ['id', 'conversation_id', 'sender_id', 'timestamp', 'body'],
  attachments: ['id', 'message_id', 'kind', 'path', 'size', 'mime', 'duration_ms'],
};
/** The reader holds the whole database in memory (twice, briefly). */
export const MAX_CHAT_DB_BYTES = 256 * 2 ** 20;
/** Reading the chats of a database, once SQLite is loaded; a chat database reads in far less. */
export const CHAT_DB_BUDGET_MS = 3000;
/** Loading SQLite itself (on a busy machine too). */
const STARTUP_MS = 20_000;

export class ChatDatabaseError extends Error {
  override name = 'ChatDatabaseError';
}

/** Reads `file` on a worker of its own, ended when done or when its budget is up. */
export function readChat(file: Blob, o: { workerUrl?: string; budgetMs?: number } = {}): Promise<ChatJson> {
  const budget = o.budgetMs ?? CHAT_DB_BUDGET_MS;
  const worker = new Worker(o.workerUrl ?? '/chat-reader.js', { type: 'module', name: 'chat-reader' });
  return new Promise<ChatJson>((resolve, reject) => {
    const end = (then: () => void) => {
      clearTimeout(timer);
      worker.terminate();
      then();
    };
    let timer = setTimeout(() => end(() => reject(new ChatDatabaseError(`the database reader did not start in ${STARTUP_MS / 1000} s; reload the page`))), STARTUP_MS);
    const tooSlow = () => end(() => reject(new ChatDatabaseError(`reading it took longer than ${budget / 1000} s; a chat database reads in far less`)));
    worker.onmessage = (e: MessageEvent<{ ready: true } | { ok: true; chat: ChatJson } | { ok: false; message: string } | { ok: false; slow: true }>) => {
      const m = e.data;
      if ('ready' in m) {
        clearTimeout(timer);
        timer = setTimeout(tooSlow, budget);
      } else if (m.ok) end(() => resolve(m.chat));
      else if ('slow' in m) tooSlow();
      else end(() => reject(new ChatDatabaseError(`not a chat database: ${m.message}`)));
    };
    worker.onerror = (e) => end(() => reject(new ChatDatabaseError(`the database reader failed${e.message ? ` (${e.message})` : ''}`)));
    worker.postMessage({ file, budgetMs: budget });
  });
}
