/** `addActivity`: a day of use on top of an existing sample, for incremental backups. */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { DAY_MS, makeMessages, makeTimestamps, materialize, type Conversation, type PlannedMedia } from './chat.js';
import { insertAttachments, insertMessages, openSample } from './database.js';
import { SampleError } from './errors.js';
import { checkSeed, checkTime } from './generate.js';
import { forEachLimit, MEDIA_KINDS, setTime, WRITE_CONCURRENCY, writeMediaFile } from './media.js';
import { Rng } from './random.js';
import { settleTree } from './tree.js';

/** What {@link addActivity} adds to a sample: new messages and photos, from a seed. */
export interface ActivityOptions {
  /** Same seed on the same sample => same changes. */
  readonly seed: string | number;
  /** Messages to append (0 or more). */
  readonly messages: number;
  /** New photos, each attached to one of the new messages; defaults to 2 (0 without messages). */
  readonly photos?: number;
  /** End of the simulated day, ms since the epoch; defaults to one day after the last message. */
  readonly now?: number;
}

/** What {@link addActivity} added. */
export interface ActivityResult {
  /** New files, relative to the sample root with `/` separators, sorted. */
  readonly newFiles: string[];
  readonly messagesAdded: number;
}

function checkCount(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new SampleError(`${name} must be a whole number, 0 or more, got ${String(value)}`);
  }
  return value as number;
}

/**
 * Simulates a day of use: appends messages to `dir/messages.db` (in one transaction, so only the
 * pages holding the newest rows and index entries change) and writes new photos. The changes
 * depend only on the seed, the options and the sample's last message, so repeating the call on
 * two identical samples gives identical results, and successive calls add different files.
 */
export async function addActivity(dir: string, opts: ActivityOptions): Promise<ActivityResult> {
  const seed = checkSeed(opts.seed);
  const messageCount = checkCount('messages', opts.messages);
  const photoCount = checkCount('photos', opts.photos ?? Math.min(2, messageCount));
  if (photoCount > 0 && messageCount === 0) {
    throw new SampleError('photos need messages to be attached to: pass messages of at least 1');
  }
  const path = join(dir, 'messages.db');
  try {
    await access(path);
  } catch (error) {
    throw new SampleError(`${path} not found: generate a sample in ${dir} first`, { cause: error });
  }

  const db = openSample(path);
  let result: { now: number; files: ReturnType<typeof materialize>['files'] };
  try {
    const last = db.prepare('SELECT max(id) AS id, max(timestamp) AS time FROM messages').get() as { id: number; time: number };
    const now = checkTime('now', opts.now ?? last.time + DAY_MS);
    if (now <= last.time) {
      const iso = (ms: number): string => new Date(ms).toISOString();
      throw new SampleError(`now (${iso(now)}) must be after the last message (${iso(last.time)})`);
    }
    const all = <T>(sql: string): T[] => db.prepare(sql).all() as T[];
    const members = new Map<number, number[]>();
    for (const { c, m } of all<{ c: number; m: number }>('SELECT conversation_id c, contact_id m FROM conversation_members ORDER BY 1, 2')) {
      members.set(c, [...(members.get(c) ?? []), m]);
    }
    const conversations: Conversation[] = all<Omit<Conversation, 'members'>>(
      'SELECT id, kind, title, created_at AS createdAt FROM conversations ORDER BY id',
    ).map((c) => ({ ...c, members: members.get(c.id) ?? [] }));
    // Busy chats stay busy: weight each conversation by its message count so far.
    const counts = new Map(all<{ c: number; n: number }>('SELECT conversation_id c, count(*) n FROM messages GROUP BY 1').map((r) => [r.c, r.n]));
    const weights = conversations.map((c) => counts.get(c.id) ?? 0.5);
    const recentIds = db.prepare('SELECT id FROM messages WHERE conversation_id = ? ORDER BY timestamp DESC, id DESC LIMIT 30').pluck();
    const recent = new Map(conversations.map((c) => [c.id, (recentIds.all(c.id) as number[]).reverse()]));
    const lastAttachment = db.prepare('SELECT coalesce(max(id), 0) FROM attachments').pluck().get() as number;

    const rng = new Rng(seed, 'activity', String(last.id));
    const timestamps = makeTimestamps(rng, messageCount, Math.max(last.time + 1, now - DAY_MS), now);
    const messages = makeMessages(rng, timestamps, {
      conversations, weights, start: rng.weighted(weights), firstId: last.id + 1, recent,
    });
    const { minBytes, maxBytes } = MEDIA_KINDS.photo;
    const planned: PlannedMedia[] = [];
    for (let i = 0; i < photoCount; i++) {
      planned.push({ message: rng.pick(messages), kind: 'photo', size: rng.logUniform(minBytes, maxBytes) });
    }
    const media = materialize(planned, conversations, lastAttachment + 1);
    db.transaction(() => {
      insertMessages(db, messages);
      insertAttachments(db, media.rows);
    })();
    result = { now, files: media.files };
  } finally {
    db.close();
  }

  await forEachLimit(result.files, WRITE_CONCURRENCY, (file) => writeMediaFile(dir, seed, file));
  await setTime(path, result.now);
  await settleTree(dir);
  return { newFiles: result.files.map((f) => f.path).sort(), messagesAdded: messageCount };
}
