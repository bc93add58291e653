import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import jpeg from 'jpeg-js';
import { addActivity, DEFAULT_NOW, generateChatData, SampleError, type SampleSummary } from '../src/index.js';

const MiB = 2 ** 20;
const DAY = 86_400_000;
let root: string;
const folder = (name: string): string => join(root, name);

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'coffer-sample-test-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Entry {
  type: 'file' | 'folder';
  size: number;
  sha256: string;
  mtimeMs: number;
}

/** Every file and folder below `dir` by relative path, with content hash and mtime. */
async function snapshot(dir: string): Promise<Map<string, Entry>> {
  const entries = new Map<string, Entry>();
  const visit = async (relative: string): Promise<void> => {
    for (const name of (await readdir(join(dir, relative))).sort()) {
      const path = relative ? `${relative}/${name}` : name;
      const info = await stat(join(dir, path));
      const type = info.isDirectory() ? 'folder' : 'file';
      const sha256 = type === 'file' ? createHash('sha256').update(await readFile(join(dir, path))).digest('hex') : '';
      entries.set(path, { type, size: type === 'file' ? info.size : 0, sha256, mtimeMs: info.mtimeMs });
      if (type === 'folder') await visit(path);
    }
  };
  await visit('');
  return entries;
}

function openReadOnly(dir: string): Database.Database {
  return new Database(join(dir, 'messages.db'), { readonly: true, fileMustExist: true });
}

describe('generateChatData', () => {
  let first: SampleSummary;
  let second: SampleSummary;
  let large: SampleSummary;
  before(async () => {
    first = await generateChatData(folder('a'), { seed: 'alpha', targetBytes: 8 * MiB });
    second = await generateChatData(folder('b'), { seed: 'alpha', targetBytes: 8 * MiB });
    large = await generateChatData(folder('large'), { seed: 7, targetBytes: 40 * MiB });
  });

  test('is deterministic: same seed, same bytes, same mtimes', async () => {
    assert.deepEqual(second, first);
    assert.deepEqual(await snapshot(folder('b')), await snapshot(folder('a')));
  });

  test('different seeds give different content', async () => {
    await generateChatData(folder('beta'), { seed: 'beta', targetBytes: 8 * MiB });
    const hashes = (entries: Map<string, Entry>): Set<string> =>
      new Set([...entries.values()].filter((e) => e.size > 0).map((e) => e.sha256));
    const alpha = hashes(await snapshot(folder('a')));
    const shared = [...hashes(await snapshot(folder('beta')))].filter((hash) => alpha.has(hash));
    assert.deepEqual(shared, [], 'no non-empty file is the same');
  });

  test('total and media sizes are within 10% of the target', () => {
    for (const [summary, target] of [[first, 8 * MiB], [large, 40 * MiB]] as const) {
      assert.ok(Math.abs(summary.bytes - target) <= target * 0.1, `${summary.bytes} vs ${target}`);
      const media = summary.bytes - summary.databaseBytes;
      const wanted = target - summary.databaseBytes;
      assert.ok(Math.abs(media - wanted) <= wanted * 0.1, `media ${media} vs ${wanted}`);
    }
    assert.ok(large.messages > first.messages && first.messages >= 300);
    assert.ok(large.photos > 0 && large.voiceNotes > 0 && large.videos > 0);
  });

  test('the summary matches the tree', async () => {
    const entries = [...(await snapshot(folder('large'))).values()];
    const files = entries.filter((e) => e.type === 'file');
    assert.equal(large.files, files.length);
    assert.equal(large.folders, entries.length - files.length);
    assert.equal(large.bytes, files.reduce((sum, e) => sum + e.size, 0));
    assert.equal(large.databaseBytes, (await stat(join(folder('large'), 'messages.db'))).size);
  });

  test('the database is complete and every attachment is a real file', async () => {
    const dir = folder('large');
    const db = openReadOnly(dir);
    try {
      const count = (sql: string): number => db.prepare(sql).pluck().get() as number;
      assert.equal(db.pragma('page_size', { simple: true }), 4096);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'delete');
      assert.equal(count('SELECT count(*) FROM messages'), large.messages);
      assert.equal(count('SELECT count(*) FROM conversations'), large.conversations);
      assert.equal(count("SELECT count(*) FROM conversations WHERE kind = 'group'") >= 2, true);
      assert.equal(count("SELECT count(*) FROM attachments WHERE kind = 'photo'"), large.photos);
      assert.equal(count("SELECT count(*) FROM attachments WHERE kind = 'voice'"), large.voiceNotes);
      assert.equal(count("SELECT count(*) FROM attachments WHERE kind = 'video'"), large.videos);
      assert.equal(count("SELECT count(*) FROM sqlite_master WHERE name = 'messages_by_conversation_time'"), 1);
      assert.equal(count('SELECT count(*) FROM attachments a LEFT JOIN messages m ON m.id = a.message_id WHERE m.id IS NULL'), 0);
      assert.equal(count('SELECT count(*) FROM messages r JOIN messages m ON m.id = r.reply_to WHERE m.conversation_id != r.conversation_id OR m.id >= r.id'), 0);
      assert.ok(count('SELECT count(*) FROM messages WHERE reply_to IS NOT NULL') > 0);
      assert.ok(count("SELECT count(*) FROM messages WHERE body LIKE '%' || char(10) || '%'") > 0, 'multi-line messages');
      assert.ok(count('SELECT min(timestamp) FROM messages') >= DEFAULT_NOW - 731 * DAY);
      assert.ok(count('SELECT max(timestamp) FROM messages') <= DEFAULT_NOW);

      const rows = db.prepare('SELECT a.path, a.size, m.timestamp FROM attachments a JOIN messages m ON m.id = a.message_id').all() as
        { path: string; size: number; timestamp: number }[];
      for (const row of rows) {
        const info = await stat(join(dir, ...row.path.split('/')));
        assert.equal(info.size, row.size, row.path);
        assert.equal(info.mtimeMs, Math.floor(row.timestamp / 1000) * 1000, row.path);
      }
      const bodies = db.prepare('SELECT body FROM messages').pluck().all() as string[];
      assert.ok(bodies.some((b) => /\p{Extended_Pictographic}/u.test(b)), 'emoji');
    } finally {
      db.close();
    }
    const names = await readdir(dir);
    assert.deepEqual(names.sort(), ['media', 'messages.db'], 'no journal or WAL left behind');
  });

  test('has an empty file, an empty folder and non-ASCII names', async () => {
    const entries = await snapshot(folder('a'));
    assert.equal(entries.get('media/.nomedia')?.size, 0);
    assert.equal(entries.get('media/Stickers')?.type, 'folder');
    assert.deepEqual(await readdir(join(folder('a'), 'media', 'Stickers')), []);
    assert.equal(entries.get('media/Photos/Família 👨‍👩‍👧')?.type, 'folder');
    assert.equal(entries.get('media/Photos/Família 👨‍👩‍👧/Natal em família 🎄.jpg')?.type, 'file');
  });

  test('media are real: photos decode as JPEG pictures, voice notes are WAV audio, videos MP4; photos and videos are incompressible', async () => {
    const dir = folder('large');
    const db = openReadOnly(dir);
    const paths = (kind: string): string[] =>
      db.prepare('SELECT path FROM attachments WHERE kind = ? ORDER BY size DESC').pluck().all(kind) as string[];
    const read = (path: string): Promise<Buffer> => readFile(join(dir, ...path.split('/')));
    try {
      const photos = paths('photo');
      const pictures = new Set<string>();
      for (const path of [photos[0]!, photos[photos.length - 1]!, ...photos.slice(1, 12)]) {
        const photo = await read(path);
        assert.deepEqual([...photo.subarray(0, 4)], [0xff, 0xd8, 0xff, 0xe0]);
        assert.equal(photo.subarray(6, 10).toString('latin1'), 'JFIF');
        assert.deepEqual([...photo.subarray(-2)], [0xff, 0xd9]);
        const image = jpeg.decode(photo, { useTArray: true, maxMemoryUsageInMB: 64 });
        assert.ok(image.width >= 240 && image.height >= 240, `${path}: ${image.width}x${image.height}`);
        // A picture, not noise: neighbouring pixels are alike, and it is not one flat colour.
        let step = 0;
        let spread = 0;
        const first = image.data[0]!;
        for (let i = 4; i < image.data.length; i += 4) {
          step += Math.abs(image.data[i]! - image.data[i - 4]!);
          spread = Math.max(spread, Math.abs(image.data[i]! - first));
        }
        assert.ok(step / (image.data.length / 4) < 8 && spread > 40, `${path} looks like a picture`);
        pictures.add(createHash('sha256').update(image.data).digest('hex'));
      }
      assert.ok(pictures.size > 3, 'photos show different pictures');
      const largest = await read(photos[0]!);
      assert.ok(gzipSync(largest).length >= largest.length * 0.99, 'gzip must not shrink a photo');

      for (const path of paths('voice').slice(0, 5)) {
        const wav = await read(path);
        assert.equal(wav.subarray(0, 4).toString('latin1'), 'RIFF');
        assert.equal(wav.readUInt32LE(4), wav.length - 8);
        assert.equal(wav.subarray(8, 16).toString('latin1'), 'WAVEfmt ');
        assert.deepEqual([wav.readUInt16LE(20), wav.readUInt16LE(22), wav.readUInt32LE(24), wav.readUInt16LE(34)], [1, 1, 8000, 8]);
        assert.equal(wav.subarray(36, 40).toString('latin1'), 'data');
        const samples = wav.readUInt32LE(40);
        assert.ok(samples % 2 === 0 && samples >= wav.length - 45 && samples <= wav.length - 44);
        // Sound and silence: some samples far from the midpoint 128, and pauses at it.
        const pcm = wav.subarray(44, 44 + samples);
        assert.ok(pcm.some((v) => Math.abs(v - 128) > 40), `${path} is not silent`);
        assert.ok(pcm.filter((v) => v === 128).length > samples / 20, `${path} has pauses`);
      }
      const video = await read(paths('video')[0]!);
      assert.equal(video.subarray(4, 8).toString('latin1'), 'ftyp');
      assert.ok(gzipSync(video.subarray(0, 4 * MiB)).length >= Math.min(video.length, 4 * MiB) * 0.99, 'gzip must not shrink a video');
    } finally {
      db.close();
    }
  });

  test('refuses a non-empty folder and bad options', async () => {
    const dir = folder('occupied');
    await generateChatData(dir, { seed: 1, targetBytes: 256 * 1024 }); // the smallest sample works
    await assert.rejects(generateChatData(dir, { seed: 1, targetBytes: MiB }), (e) => e instanceof SampleError && /not empty/.test(e.message));
    await writeFile(folder('a-file'), 'x');
    await assert.rejects(generateChatData(folder('a-file'), { seed: 1, targetBytes: MiB }), SampleError);
    await assert.rejects(generateChatData(folder('tiny'), { seed: 1, targetBytes: 1000 }), /targetBytes/);
    await assert.rejects(generateChatData(folder('nan'), { seed: 1, targetBytes: Number.NaN }), /targetBytes/);
    await assert.rejects(generateChatData(folder('seedless'), { seed: '', targetBytes: MiB }), /seed/);
  });
});

describe('addActivity', () => {
  const pages = (bytes: Buffer): string[] => {
    const hashes: string[] = [];
    for (let at = 0; at < bytes.length; at += 4096) hashes.push(createHash('sha256').update(bytes.subarray(at, at + 4096)).digest('hex'));
    return hashes;
  };

  test('appends messages and photos deterministically, changing only some pages', async () => {
    for (const name of ['day-a', 'day-b']) await generateChatData(folder(name), { seed: 'day', targetBytes: 4 * MiB });
    const dir = folder('day-a');
    const db = openReadOnly(dir);
    const countBefore = db.prepare('SELECT count(*) FROM messages').pluck().get() as number;
    const lastBefore = db.prepare('SELECT max(timestamp) FROM messages').pluck().get() as number;
    db.close();
    const before = await readFile(join(dir, 'messages.db'));

    const options = { seed: 'monday', messages: 200, photos: 3 };
    const result = await addActivity(dir, options);
    assert.deepEqual(await addActivity(folder('day-b'), options), result);
    assert.deepEqual(await snapshot(folder('day-b')), await snapshot(dir));

    assert.equal(result.messagesAdded, 200);
    assert.equal(result.newFiles.length, 3);
    const after = await readFile(join(dir, 'messages.db'));
    const [old, now] = [pages(before), pages(after)];
    const changed = now.filter((hash, i) => hash !== old[i]).length;
    assert.ok(changed > 0 && changed < old.length / 2, `${changed} of ${old.length} pages changed`);

    const reopened = openReadOnly(dir);
    try {
      assert.equal(reopened.prepare('SELECT count(*) FROM messages').pluck().get(), countBefore + 200);
      assert.ok((reopened.prepare('SELECT min(timestamp) FROM messages WHERE id > ?').pluck().get(countBefore) as number) > lastBefore);
      for (const path of result.newFiles) {
        const size = reopened.prepare('SELECT size FROM attachments WHERE path = ?').pluck().get(path);
        assert.equal((await stat(join(dir, ...path.split('/')))).size, size, path);
      }
    } finally {
      reopened.close();
    }

    // Another day adds other files, even with the same seed.
    const next = await addActivity(dir, options);
    assert.equal(next.newFiles.filter((path) => result.newFiles.includes(path)).length, 0);
  });

  test('reports what the caller must fix', async () => {
    await assert.rejects(addActivity(folder('missing'), { seed: 1, messages: 5 }), (e) => e instanceof SampleError && /not found/.test(e.message));
    const dir = folder('day-b');
    await assert.rejects(addActivity(dir, { seed: 1, messages: 0, photos: 1 }), /messages of at least 1/);
    await assert.rejects(addActivity(dir, { seed: 1, messages: 5, now: DEFAULT_NOW - DAY }), /after the last message/);
    await assert.rejects(addActivity(dir, { seed: 1, messages: -1 }), /messages must be/);
    await mkdir(folder('garbage'));
    await writeFile(join(folder('garbage'), 'messages.db'), 'not a database, just text');
    await assert.rejects(addActivity(folder('garbage'), { seed: 1, messages: 5 }), /not a coffer sample database/);
  });
});
