/**
 * Chats from a chat database (the sample's schema, @coffer/sample), read in the page: the demo
 * phone's, or the one a restore just verified. No server sees a chat (spec/web-app.md §7): the
 * database is read on a Web Worker of its own (chat-reader.ts) with the official SQLite WASM
 * build, one request at a time, each with a time budget after which the worker is ended, so a
 * hostile database never freezes the page. The worker keeps the database open while its chats
 * are shown: the conversation list comes first, each thread when it is opened.
 */

export type Attachment = { kind: string; path: string; size: number; mime: string; durationMs: number | null };
export type Message = { id: number; sender: number; ts: number; body: string; attachments: Attachment[] };

export interface ChatOverview {
  self: number;
  contacts: { id: number; name: string }[];
  /** Newest first. */
  conversations: { id: number; kind: string; title: string; messages: number; last: number }[];
}

/** What the page asks the worker (chat-reader.ts), and what it answers. */
export type ReaderRequest = { op: 'open'; file: Blob; budgetMs: number } | { op: 'messages'; conversationId: number; budgetMs: number };
export type ReaderAnswer = { ok: true; value: unknown } | { ok: false; message: string } | { ok: false; slow: true };

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
/** Each request to the reader, once SQLite is loaded; a chat database answers in far less. */
export const CHAT_DB_BUDGET_MS = 3000;
/** Loading SQLite itself (on a busy machine too). */
const STARTUP_MS = 20_000;

export class ChatDatabaseError extends Error {
  override name = 'ChatDatabaseError';
}

/**
 * One database's reader. `start()` loads SQLite on a new worker at once (so that it is ready when
 * the database arrives); `open` hands it the database. After any failure the worker is gone and
 * every later request fails the same way.
 */
export class ChatReader {
  readonly #worker: Worker;
  readonly #budgetMs: number;
  #ready: Promise<void>;
  #queue: Promise<unknown> = Promise.resolve();
  #failed: ChatDatabaseError | null = null;
  #answer: ((a: ReaderAnswer) => void) | null = null;

  private constructor(o: { workerUrl?: string; budgetMs?: number }) {
    this.#budgetMs = o.budgetMs ?? CHAT_DB_BUDGET_MS;
    this.#worker = new Worker(o.workerUrl ?? '/chat-reader.js', { type: 'module', name: 'chat-reader' });
    this.#ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(this.#fail(`the database reader did not start in ${STARTUP_MS / 1000} s; reload the page`)), STARTUP_MS);
      this.#worker.onmessage = (e: MessageEvent<{ ready: true } | ReaderAnswer>) => {
        if ('ready' in e.data) {
          clearTimeout(timer);
          resolve();
        } else this.#answer?.(e.data);
      };
      this.#worker.onerror = (e) => {
        clearTimeout(timer);
        const err = this.#fail(`the database reader failed${e.message ? ` (${e.message})` : ''}`);
        reject(err);
        this.#answer?.({ ok: false, message: err.message });
      };
    });
    this.#ready.catch(() => {});
  }

  static start(o: { workerUrl?: string; budgetMs?: number } = {}): ChatReader {
    return new ChatReader(o);
  }

  /** Checks the database (spec/web-app.md §7), keeps it open, and returns its overview. */
  open(file: Blob): Promise<ChatOverview> {
    return this.#request({ op: 'open', file, budgetMs: this.#budgetMs }) as Promise<ChatOverview>;
  }

  /** The newest 200 messages of a conversation, oldest first. */
  messages(conversationId: number): Promise<Message[]> {
    return this.#request({ op: 'messages', conversationId, budgetMs: this.#budgetMs }) as Promise<Message[]>;
  }

  close(): void {
    this.#fail('this database was closed');
  }

  #fail(message: string): ChatDatabaseError {
    this.#failed ??= new ChatDatabaseError(message);
    this.#worker.terminate();
    return this.#failed;
  }

  /** One request at a time: its budget starts when it is sent to a ready worker. */
  #request(req: ReaderRequest): Promise<unknown> {
    const run = async (): Promise<unknown> => {
      await this.#ready;
      if (this.#failed) throw this.#failed;
      const answer = await new Promise<ReaderAnswer>((resolve) => {
        const timer = setTimeout(() => resolve({ ok: false, slow: true }), req.budgetMs);
        this.#answer = (a) => {
          clearTimeout(timer);
          resolve(a);
        };
        this.#worker.postMessage(req);
      });
      this.#answer = null;
      if (answer.ok) return answer.value;
      throw 'slow' in answer
        ? this.#fail(`reading it took longer than ${req.budgetMs / 1000} s; a chat database reads in far less`)
        : this.#fail(req.op === 'open' ? `not a chat database: ${answer.message}` : answer.message);
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }
}
