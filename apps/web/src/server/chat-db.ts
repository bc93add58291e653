/**
 * Reading an uploaded (untrusted) chat database off the main thread (spec/web-app.md §6): a child
 * process per database, killed when its time is up (a thread could not be stopped inside a long
 * SQLite call), at most two at once.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ChatJson } from './chat-json.js';
import { HttpError } from './http.js';

export const MAX_CHAT_DB_BYTES = 32 * 2 ** 20;
export const CHAT_DB_BUDGET_MS = 1000;
const MAX_AT_ONCE = 2;
const WORKER = fileURLToPath(new URL('./chat-worker.js', import.meta.url));
let running = 0;

const notChat = (why: string) => new HttpError(400, 'not-a-chat-database', `not a chat database: ${why}`);

export async function readUploadedChat(bytes: Buffer): Promise<ChatJson> {
  if (running >= MAX_AT_ONCE) throw new HttpError(503, 'busy', 'other databases are being read; try again in a second', { 'retry-after': '1' });
  running++;
  const child = spawn(process.execPath, ['--max-old-space-size=256', WORKER], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    return await new Promise<ChatJson>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new HttpError(422, 'too-slow', `reading this database took longer than ${CHAT_DB_BUDGET_MS / 1000} s; a chat database reads in far less`));
      }, CHAT_DB_BUDGET_MS);
      const out: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stdin.on('error', () => {}); // the child may exit before reading everything
      child.once('error', () => {
        clearTimeout(timer);
        reject(new HttpError(503, 'busy', 'could not start reading the database; try again', { 'retry-after': '1' }));
      });
      child.once('close', () => {
        clearTimeout(timer);
        let m: { ok: true; chat: ChatJson } | { ok: false; message: string };
        try {
          m = JSON.parse(Buffer.concat(out).toString('utf8'));
        } catch {
          return reject(notChat('it could not be read'));
        }
        if (m.ok) resolve(m.chat);
        else reject(notChat(m.message));
      });
      child.stdin.end(bytes);
    });
  } finally {
    running--;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
