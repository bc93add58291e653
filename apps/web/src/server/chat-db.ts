/**
 * Reading an uploaded (untrusted) chat database off the main thread (spec/web-app.md §6): a child
 * process per database, at a lower scheduling priority than the server, killed when its second is
 * up (a thread could not be stopped inside a long SQLite call), at most two at once.
 */
import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ChatJson } from './chat-json.js';
import { HttpError } from './http.js';

export const MAX_CHAT_DB_BYTES = 32 * 2 ** 20;
export const CHAT_DB_BUDGET_MS = 1000;
const STARTUP_MS = 10_000;
const MAX_AT_ONCE = 2;
const WORKER = fileURLToPath(new URL('./chat-worker.js', import.meta.url));
let running = 0;

const notChat = (why: string) => new HttpError(400, 'not-a-chat-database', `not a chat database: ${why}`);

export async function readUploadedChat(bytes: Buffer): Promise<ChatJson> {
  if (bytes.length < 512 || bytes.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0') throw notChat('it is not an SQLite database');
  if (running >= MAX_AT_ONCE) throw new HttpError(503, 'busy', 'other databases are being read; try again in a second', { 'retry-after': '1' });
  running++;
  const child = spawn(process.execPath, ['--max-old-space-size=256', WORKER], { stdio: ['pipe', 'pipe', 'ignore'] });
  // Below the server in the scheduler's eyes: a hostile database never slows the other requests.
  try {
    setPriority(child.pid!, 5);
  } catch {}
  try {
    return await new Promise<ChatJson>((resolve, reject) => {
      const busy = () => new HttpError(503, 'busy', 'could not start reading the database; try again', { 'retry-after': '1' });
      let failure: HttpError | null = null;
      const kill = (e: HttpError) => {
        failure = e;
        child.kill('SIGKILL');
      };
      // Node itself may take a while to start on a busy machine; the budget is for the database.
      let timer = setTimeout(() => kill(busy()), STARTUP_MS);
      let out = Buffer.alloc(0);
      child.stdout.on('data', (d: Buffer) => {
        if (out.length === 0 && d[0] === 0x52 /* R */) {
          clearTimeout(timer);
          timer = setTimeout(() => kill(new HttpError(422, 'too-slow', `reading this database took longer than ${CHAT_DB_BUDGET_MS / 1000} s; a chat database reads in far less`)), CHAT_DB_BUDGET_MS);
          child.stdin.end(bytes);
        }
        out = Buffer.concat([out, d]);
      });
      child.stdin.on('error', () => {}); // the child may exit before reading everything
      child.once('error', () => {
        clearTimeout(timer);
        reject(busy());
      });
      child.once('close', () => {
        clearTimeout(timer);
        if (failure) return reject(failure);
        let m: { ok: true; chat: ChatJson } | { ok: false; message: string };
        try {
          m = JSON.parse(out.subarray(1).toString('utf8'));
        } catch {
          return reject(notChat('it could not be read'));
        }
        if (m.ok) resolve(m.chat);
        else reject(notChat(m.message));
      });
    });
  } finally {
    running--;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
