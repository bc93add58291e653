/**
 * Media files: a realistic container header followed by incompressible keystream bytes,
 * written in 1 MiB pieces so memory stays bounded whatever the file size.
 */
import { mkdir, open, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { deriveKey, keystream } from './random.js';

export type MediaKind = 'photo' | 'voice' | 'video';

/** One media file to write: `path` is relative to the sample root and uses `/`. */
export interface MediaFile {
  readonly path: string;
  readonly kind: MediaKind;
  readonly size: number;
  /** Modification time in milliseconds since the epoch (stored rounded down to seconds). */
  readonly mtimeMs: number;
}

const ascii = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));
const uint32be = (n: number): number[] => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

interface KindInfo {
  readonly folder: string;
  readonly prefix: string;
  readonly extension: string;
  readonly mime: string;
  readonly minBytes: number;
  readonly maxBytes: number;
  /** Encoded bytes per second of playback, for the `duration_ms` column; 0 for photos. */
  readonly bytesPerSecond: number;
  readonly header: (size: number) => number[];
  readonly trailer: number[];
}

export const MEDIA_KINDS: Readonly<Record<MediaKind, KindInfo>> = {
  photo: {
    folder: 'Photos', prefix: 'IMG', extension: 'jpg', mime: 'image/jpeg',
    minBytes: 80_000, maxBytes: 4_000_000, bytesPerSecond: 0,
    // SOI, then a JFIF APP0 segment (version 1.1, 72 dpi); the file ends with EOI.
    header: () => [0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, ...ascii('JFIF\0'), 1, 1, 1, 0, 72, 0, 72, 0, 0],
    trailer: [0xff, 0xd9],
  },
  voice: {
    folder: 'Voice Notes', prefix: 'PTT', extension: 'opus', mime: 'audio/ogg; codecs=opus',
    minBytes: 8_000, maxBytes: 400_000, bytesPerSecond: 2_000,
    // First Ogg page (beginning of stream, one 19-byte segment) holding an OpusHead packet.
    header: () => [
      ...ascii('OggS'), 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 19,
      ...ascii('OpusHead'), 1, 1, 0x38, 1, 0x80, 0xbb, 0, 0, 0, 0, 0,
    ],
    trailer: [],
  },
  video: {
    folder: 'Video', prefix: 'VID', extension: 'mp4', mime: 'video/mp4',
    minBytes: 2_000_000, maxBytes: 60_000_000, bytesPerSecond: 250_000,
    // An `ftyp` box (brand mp42) and the header of one `mdat` box spanning the rest.
    header: (size) => [
      ...uint32be(24), ...ascii('ftypmp42'), 0, 0, 0, 0, ...ascii('isommp42'),
      ...uint32be(Math.min(size - 24, 0xffffffff)), ...ascii('mdat'),
    ],
    trailer: [],
  },
};

const CHUNK = 1 << 20;
const ZEROS = Buffer.alloc(CHUNK);

/** Copies the part of `bytes` (placed at file offset `at`) that falls inside `chunk` (at `chunkAt`). */
function overlay(chunk: Buffer, chunkAt: number, bytes: readonly number[], at: number): void {
  for (let i = 0; i < bytes.length; i++) {
    const position = at + i - chunkAt;
    if (position >= 0 && position < chunk.length) chunk[position] = bytes[i]!;
  }
}

/** Absolute path of a sample-relative `/`-separated path. */
export function absolutePath(root: string, relative: string): string {
  return join(root, ...relative.split('/'));
}

/** Sets access and modification time, rounded down to whole seconds. */
export async function setTime(path: string, ms: number): Promise<void> {
  const seconds = Math.floor(ms / 1000);
  await utimes(path, seconds, seconds);
}

/**
 * Writes one media file. Its bytes are the keystream under SHA-256(seed NUL path), with the
 * kind's header at the start and trailer at the end; the file must not exist yet.
 */
export async function writeMediaFile(root: string, seed: string, file: MediaFile): Promise<void> {
  const target = absolutePath(root, file.path);
  const info = MEDIA_KINDS[file.kind];
  const header = info.header(file.size);
  const stream = keystream(deriveKey(seed, file.path));
  await mkdir(dirname(target), { recursive: true });
  const handle = await open(target, 'wx');
  try {
    for (let offset = 0; offset < file.size; offset += CHUNK) {
      const chunk = stream.update(ZEROS.subarray(0, Math.min(CHUNK, file.size - offset)));
      overlay(chunk, offset, header, 0);
      overlay(chunk, offset, info.trailer, file.size - info.trailer.length);
      for (let written = 0; written < chunk.length; ) {
        written += (await handle.write(chunk, written, chunk.length - written)).bytesWritten;
      }
    }
  } finally {
    await handle.close();
  }
  await setTime(target, file.mtimeMs);
}

/** Media writes in flight at once, so that the cipher and the disk overlap (~20% faster than 1). */
export const WRITE_CONCURRENCY = 4;

/** Runs `task` over `items` with at most `limit` in flight, so disk and cipher overlap. */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
