/** `generateChatData`: a fresh sample (messages.db plus media/) in an empty folder. */
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DAY_MS, SELF_ID, makeMessages, makePeople, makeTimestamps, materialize, planMedia } from './chat.js';
import { insertAttachments, insertMessages, openDatabase } from './database.js';
import { SampleError } from './errors.js';
import { forEachLimit, setTime, WRITE_CONCURRENCY, writeMediaFile } from './media.js';
import { Rng } from './random.js';
import { formatSize } from './size.js';
import { settleTree } from './tree.js';

/** What {@link generateChatData} makes: size, seed and time. */
export interface GenerateOptions {
  /** Same seed (and options) => byte-identical tree. Numbers are used as strings: 42 ≡ "42". */
  readonly seed: string | number;
  /** Total bytes of the tree, database included; at least `MIN_TARGET_BYTES`. */
  readonly targetBytes: number;
  /** End of the message history, ms since the epoch; defaults to `DEFAULT_NOW`. */
  readonly now?: number;
}

/** What {@link generateChatData} made: counts of messages, media, files and bytes. */
export interface SampleSummary {
  /** Regular files, messages.db and the empty `.nomedia` included. */
  readonly files: number;
  /** Folders below the sample root. */
  readonly folders: number;
  /** Bytes in all files. */
  readonly bytes: number;
  readonly messages: number;
  readonly conversations: number;
  readonly photos: number;
  readonly voiceNotes: number;
  readonly videos: number;
  readonly databaseBytes: number;
}

/** The default end of history, so that output never depends on the clock: 2025-06-01 18:00 UTC. */
export const DEFAULT_NOW = Date.UTC(2025, 5, 1, 18, 0, 0);
/** Smallest accepted `targetBytes`: a few hundred messages and a photo. */
export const MIN_TARGET_BYTES = 256 * 1024;
/** Length of the generated history. */
export const HISTORY_MS = 730 * DAY_MS;

const FULL_SIZE_BYTES = 64 * 2 ** 20;
const MAX_MESSAGES = 30_000;
const MIN_MESSAGES = 300;

export function checkSeed(seed: unknown): string {
  if ((typeof seed !== 'string' || seed === '') && !(typeof seed === 'number' && Number.isFinite(seed))) {
    throw new SampleError(`seed must be a non-empty string or a finite number, got ${String(seed)}`);
  }
  return String(seed);
}

const EARLIEST_NOW = Date.UTC(2000, 0, 1);

export function checkTime(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < EARLIEST_NOW) {
    throw new SampleError(`${name} must be whole milliseconds since the epoch, after 2000-01-01, got ${String(value)}`);
  }
  return value as number;
}

/** Creates `dir` if needed and refuses to write into a non-empty one. */
async function prepareEmptyFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    const entries = await readdir(dir);
    if (entries.length > 0) {
      throw new SampleError(
        `${dir} is not empty (${entries.length} entries, e.g. ${JSON.stringify(entries.sort()[0])}): ` +
          'choose a new or empty folder, or delete this one first',
      );
    }
  } catch (error) {
    if (error instanceof SampleError) throw error;
    throw new SampleError(`cannot use ${dir} as the output folder: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Writes a deterministic chat store into `dir`:
 *
 *     messages.db                       SQLite: contacts, conversations, members, messages, attachments
 *     media/.nomedia                    empty file
 *     media/Stickers/                   empty folder
 *     media/Photos/<conversation>/IMG-20240131-WA0042.jpg
 *     media/Voice Notes/<conversation>/PTT-20240131-WA0043.wav
 *     media/Video/<conversation>/VID-20240131-WA0044.mp4
 *     media/Photos/Família 👨‍👩‍👧/Natal em família 🎄.jpg
 *
 * The message count scales with `targetBytes` (300 up to 30,000 at 64 MiB and above); media fill
 * the rest of the target to within a few kilobytes. Every file's mtime comes from its message.
 */
export async function generateChatData(dir: string, opts: GenerateOptions): Promise<SampleSummary> {
  const seed = checkSeed(opts.seed);
  const now = checkTime('now', opts.now ?? DEFAULT_NOW);
  const targetBytes = opts.targetBytes;
  if (!Number.isSafeInteger(targetBytes) || targetBytes < MIN_TARGET_BYTES) {
    throw new SampleError(`targetBytes must be a whole number of at least ${formatSize(MIN_TARGET_BYTES)}, got ${targetBytes}`);
  }
  await prepareEmptyFolder(dir);

  const rng = new Rng(seed, 'chat');
  const messageCount = Math.min(MAX_MESSAGES, Math.max(MIN_MESSAGES, Math.round((MAX_MESSAGES * targetBytes) / FULL_SIZE_BYTES)));
  const historyStart = now - HISTORY_MS;
  const { contacts, conversations } = makePeople(rng, Math.min(48, Math.max(8, Math.round(messageCount / 600))), historyStart);
  const weights = rng.shuffle(conversations.map((_, rank) => 1 / (rank + 1))); // Zipf: a few busy chats
  const messages = makeMessages(rng, makeTimestamps(rng, messageCount, historyStart, now), {
    conversations, weights, start: 0, firstId: 1, recent: new Map(),
  });

  const db = openDatabase(join(dir, 'messages.db'), true);
  let attachments: ReturnType<typeof materialize>;
  try {
    attachments = db.transaction(() => {
      const contact = db.prepare('INSERT INTO contacts (id, name, phone, is_self) VALUES (?, ?, ?, ?)');
      for (const c of contacts) contact.run(c.id, c.name, c.phone, c.id === SELF_ID ? 1 : 0);
      const conversation = db.prepare('INSERT INTO conversations (id, kind, title, created_at) VALUES (?, ?, ?, ?)');
      const member = db.prepare('INSERT INTO conversation_members (conversation_id, contact_id) VALUES (?, ?)');
      for (const c of conversations) {
        conversation.run(c.id, c.kind, c.title, c.createdAt);
        for (const m of c.members) member.run(c.id, m);
      }
      insertMessages(db, messages);
      // Media fill what the database leaves of the target (attachment rows add a page or two).
      const databaseBytes = (db.pragma('page_count', { simple: true }) as number) * 4096;
      const familyMessages = messages.filter((m) => m.conversationId === 1); // never empty: message 1 is there
      const planned = materialize(
        planMedia(rng, targetBytes - databaseBytes, messages, {
          message: rng.pick(familyMessages),
          name: 'Natal em família 🎄.jpg',
        }),
        conversations,
        1,
      );
      insertAttachments(db, planned.rows);
      return planned;
    })();
  } finally {
    db.close();
  }
  const files = attachments.files;

  // What every backup must cope with: an empty file and an empty folder.
  await mkdir(join(dir, 'media', 'Stickers'), { recursive: true });
  await setTime(join(dir, 'media', 'Stickers'), historyStart);
  await writeFile(join(dir, 'media', '.nomedia'), '');
  await setTime(join(dir, 'media', '.nomedia'), historyStart);
  await forEachLimit(files, WRITE_CONCURRENCY, (file) => writeMediaFile(dir, seed, file));
  await setTime(join(dir, 'messages.db'), now);
  const totals = await settleTree(dir);

  const count = (kind: string): number => files.filter((f) => f.kind === kind).length;
  return {
    ...totals,
    messages: messages.length,
    conversations: conversations.length,
    photos: count('photo'),
    voiceNotes: count('voice'),
    videos: count('video'),
    databaseBytes: (await stat(join(dir, 'messages.db'))).size,
  };
}
