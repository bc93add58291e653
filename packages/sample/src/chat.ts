/**
 * The chat model: people, conversations, message streams and media plans. Pure functions of a
 * seeded `Rng`; nothing here touches the disk.
 */
import type { AttachmentRow, MessageRow } from './database.js';
import { MEDIA_KINDS, type MediaFile, type MediaKind } from './media.js';
import type { Rng } from './random.js';
import { FIRST_NAMES, GROUP_NAMES, LAST_NAMES, messageBody } from './text.js';

export const DAY_MS = 86_400_000;
/** The owner of the phone: contact 1 in every sample. */
export const SELF_ID = 1;

export interface Contact {
  readonly id: number;
  readonly name: string;
  readonly phone: string;
}

export interface Conversation {
  readonly id: number;
  readonly kind: 'direct' | 'group';
  /** Also the name of the conversation's media folders. */
  readonly title: string;
  readonly createdAt: number;
  /** Contact ids, the owner included, ascending. */
  readonly members: readonly number[];
}

/** Contacts (the owner first) and conversations (groups first, the family group being id 1). */
export function makePeople(
  rng: Rng,
  contactCount: number,
  historyStart: number,
): { contacts: Contact[]; conversations: Conversation[] } {
  const phone = (id: number): string => `+44 7700 900${String(id).padStart(3, '0')}`; // Ofcom's drama range
  const contacts: Contact[] = [{ id: SELF_ID, name: 'Me', phone: phone(SELF_ID) }];
  for (const first of rng.shuffle(FIRST_NAMES).slice(0, contactCount)) { // at most one per first name
    const id = contacts.length + 1;
    contacts.push({ id, name: `${first} ${rng.pick(LAST_NAMES)}`, phone: phone(id) });
  }
  const others = contacts.slice(1).map((c) => c.id);
  const createdAt = (): number => historyStart - rng.int(1, 365) * DAY_MS;
  const conversations: Conversation[] = [];
  const groupCount = Math.min(GROUP_NAMES.length, Math.max(2, Math.round(contactCount / 6)));
  for (const title of GROUP_NAMES.slice(0, groupCount)) {
    const members = rng.shuffle(others).slice(0, rng.int(2, Math.min(11, others.length)));
    conversations.push({
      id: conversations.length + 1, kind: 'group', title, createdAt: createdAt(),
      members: [SELF_ID, ...members].sort((a, b) => a - b),
    });
  }
  for (const contact of contacts.slice(1)) {
    if (!rng.chance(0.85)) continue; // not everyone in the address book is chatted with
    conversations.push({
      id: conversations.length + 1, kind: 'direct', title: contact.name, createdAt: createdAt(),
      members: [SELF_ID, contact.id],
    });
  }
  return { contacts, conversations };
}

/** Relative chat activity by UTC hour: quiet at night, busiest in the evening. */
const HOUR_WEIGHTS = [2, 1, 1, 1, 1, 1, 2, 4, 6, 6, 6, 6, 7, 7, 6, 6, 6, 7, 8, 9, 10, 10, 8, 4];

/** `count` ascending timestamps in [from, to], following the daily rhythm. */
export function makeTimestamps(rng: Rng, count: number, from: number, to: number): number[] {
  const times: number[] = [];
  while (times.length < count) {
    const t = from + Math.floor(rng.float() * (to - from + 1));
    if (rng.float() * 10 < HOUR_WEIGHTS[new Date(t).getUTCHours()]!) times.push(t);
  }
  return times.sort((a, b) => a - b);
}

export interface MessageStream {
  readonly conversations: readonly Conversation[];
  /** Relative activity of each conversation (same order). */
  readonly weights: readonly number[];
  /** Index of the conversation the first message goes to. */
  readonly start: number;
  readonly firstId: number;
  /** Recent message ids by conversation id, oldest first, for replies; updated in place. */
  readonly recent: Map<number, number[]>;
}

/** One message per timestamp. Chats come in bursts: 70% stay in the previous conversation. */
export function makeMessages(rng: Rng, timestamps: readonly number[], stream: MessageStream): MessageRow[] {
  const rows: MessageRow[] = [];
  let current = stream.start;
  for (const timestamp of timestamps) {
    if (rows.length > 0 && !rng.chance(0.7)) current = rng.weighted(stream.weights);
    const conversation = stream.conversations[current]!;
    const others = conversation.members.filter((id) => id !== SELF_ID);
    const fromSelf = rng.chance(conversation.kind === 'direct' ? 0.45 : 0.25);
    const recent = stream.recent.get(conversation.id) ?? [];
    const id = stream.firstId + rows.length;
    rows.push({
      id,
      conversationId: conversation.id,
      senderId: fromSelf ? SELF_ID : rng.pick(others),
      timestamp,
      body: messageBody(rng, conversation.title === GROUP_NAMES[0]),
      replyTo: recent.length > 0 && rng.chance(0.08) ? rng.pick(recent) : null,
      status: fromSelf ? (['read', 'delivered', 'sent', 'failed'] as const)[rng.weighted([80, 14, 4, 2])]! : 'received',
    });
    recent.push(id);
    if (recent.length > 30) recent.shift();
    stream.recent.set(conversation.id, recent);
  }
  return rows;
}

/** A media file chosen for a message; `name` overrides the usual `IMG-20240131-WA0042.jpg`. */
export interface PlannedMedia {
  readonly message: MessageRow;
  readonly kind: MediaKind;
  readonly size: number;
  readonly name?: string;
}

const KINDS: readonly MediaKind[] = ['photo', 'voice', 'video'];
/** By count: mostly photos, some voice notes, few (but big) videos. */
const KIND_WEIGHTS = [70, 22, 8];

/**
 * Media totalling `budget` bytes (to within the 8 kB smallest voice note), attached to random
 * messages. No single file takes more than a sixteenth of the budget unless its kind's minimum
 * does, so small samples still get several files; the last ones shrink to fit exactly.
 * `first`, if given, is placed first (a named photo in the family group).
 */
export function planMedia(
  rng: Rng,
  budget: number,
  messages: readonly MessageRow[],
  first?: { message: MessageRow; name: string },
): PlannedMedia[] {
  const planned: PlannedMedia[] = [];
  let remaining = budget;
  while (remaining >= MEDIA_KINDS.voice.minBytes) {
    let kind = first && planned.length === 0 ? 'photo' : KINDS[rng.weighted(KIND_WEIGHTS)]!;
    const { minBytes, maxBytes } = MEDIA_KINDS[kind];
    let size = Math.min(rng.logUniform(minBytes, maxBytes), Math.max(minBytes, Math.floor(budget / 16)), remaining);
    if (size < minBytes) {
      kind = remaining >= MEDIA_KINDS.photo.minBytes ? 'photo' : 'voice';
      size = remaining; // below the video minimum, so within the photo or voice range
    }
    const named = first && planned.length === 0 && kind === 'photo';
    planned.push(named ? { message: first.message, kind, size, name: first.name } : { message: rng.pick(messages), kind, size });
    remaining -= size;
  }
  return planned;
}

const ymd = (ms: number): string => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');

/**
 * Attachment rows and files for planned media, in message order with ids from `firstId`.
 * Paths look like `media/Photos/<conversation title>/IMG-20240131-WA0042.jpg`.
 */
export function materialize(
  planned: readonly PlannedMedia[],
  conversations: readonly Conversation[],
  firstId: number,
): { rows: AttachmentRow[]; files: MediaFile[] } {
  const titles = new Map(conversations.map((c) => [c.id, c.title]));
  const rows: AttachmentRow[] = [];
  const files: MediaFile[] = [];
  const ordered = [...planned].sort((a, b) => a.message.id - b.message.id);
  ordered.forEach(({ message, kind, size, name }, index) => {
    const id = firstId + index;
    const info = MEDIA_KINDS[kind];
    const fileName = name ?? `${info.prefix}-${ymd(message.timestamp)}-WA${String(id).padStart(4, '0')}.${info.extension}`;
    const path = `media/${info.folder}/${titles.get(message.conversationId)}/${fileName}`;
    const durationMs = info.bytesPerSecond > 0 ? Math.round((size / info.bytesPerSecond) * 1000) : null;
    rows.push({ id, messageId: message.id, kind, path, size, mime: info.mime, durationMs });
    files.push({ path, kind, size, mtimeMs: message.timestamp });
  });
  return { rows, files };
}
