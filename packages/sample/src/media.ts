/**
 * Media files that open in a browser: photos are real JPEG pictures (a generated gradient and
 * pattern, encoded with jpeg-js), voice notes are playable WAV audio (a synthesized voice-like
 * tone), videos an MP4 header followed by incompressible keystream bytes. A photo's picture is
 * small; the rest of its planned size is incompressible filler in APP15 segments, which every
 * decoder skips (as it skips a camera's maker notes), so sizes and entropy stay those of real
 * photos while generation stays fast. Large files are written in 1 MiB pieces, so memory stays
 * bounded whatever the size.
 */
import { mkdir, open, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import jpeg from 'jpeg-js';
import { deriveKey, keystream, Rng } from './random.js';

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
}

/** Voice notes: 8 kHz, 8-bit unsigned PCM, mono (what telephone audio carries), in a WAV file. */
const VOICE_RATE = 8000;
const WAV_HEADER_BYTES = 44;

export const MEDIA_KINDS: Readonly<Record<MediaKind, KindInfo>> = {
  photo: {
    folder: 'Photos', prefix: 'IMG', extension: 'jpg', mime: 'image/jpeg',
    minBytes: 80_000, maxBytes: 4_000_000, bytesPerSecond: 0,
  },
  voice: {
    folder: 'Voice Notes', prefix: 'PTT', extension: 'wav', mime: 'audio/wav',
    minBytes: 8_000, maxBytes: 400_000, bytesPerSecond: VOICE_RATE,
  },
  video: {
    folder: 'Video', prefix: 'VID', extension: 'mp4', mime: 'video/mp4',
    minBytes: 2_000_000, maxBytes: 60_000_000, bytesPerSecond: 250_000,
  },
};

const CHUNK = 1 << 20;
const ZEROS = Buffer.alloc(CHUNK);

/** Absolute path of a sample-relative `/`-separated path. */
export function absolutePath(root: string, relative: string): string {
  return join(root, ...relative.split('/'));
}

/** Sets access and modification time, rounded down to whole seconds. */
export async function setTime(path: string, ms: number): Promise<void> {
  const seconds = Math.floor(ms / 1000);
  await utimes(path, seconds, seconds);
}

// ---- photos ---------------------------------------------------------------------------------

/**
 * Photos share a few generated pictures per seed (encoding is the slow part: ~12 ms each);
 * what makes each photo's bytes its own is its filler.
 */
const PICTURE_VARIANTS = 24;
const pictures = new Map<string, Buffer>();
/** SOI and the JFIF APP0 segment jpeg-js writes first; the filler goes right after them. */
const JFIF_PREFIX_BYTES = 20;
const FILLER_ID = Buffer.from('CofferFill\0', 'latin1');
const SEGMENT_MAX = 2 + 65535; // marker, then a length that counts itself and the payload
const SEGMENT_MIN = 4 + FILLER_ID.length;

type Rgb = [number, number, number];
function hsl(h: number, s: number, l: number): Rgb {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number): number => {
    const k = (n + h / 30) % 12;
    return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
  };
  return [f(0), f(8), f(4)];
}

/** A gradient with soft circles and a ripple, like an out-of-focus photo; JPEG, quality 85. */
function picture(seed: string, variant: number): Buffer {
  const key = `${seed}\0${variant}`;
  const cached = pictures.get(key);
  if (cached) return cached;
  const rng = new Rng(seed, 'picture', String(variant));
  const [width, height] = rng.pick([[320, 240], [240, 320], [288, 288]] as const);
  const from = hsl(rng.int(0, 359), 0.55, 0.35);
  const to = hsl(rng.int(0, 359), 0.65, 0.7);
  const angle = rng.float() * Math.PI;
  const [ax, ay] = [Math.cos(angle) / width, Math.sin(angle) / height];
  const circles = Array.from({ length: rng.int(3, 8) }, () => ({
    x: rng.float() * width, y: rng.float() * height, r: 20 + rng.float() * 70, c: hsl(rng.int(0, 359), 0.8, 0.75),
  }));
  const ripple = { fx: 0.02 + rng.float() * 0.08, fy: 0.02 + rng.float() * 0.08, amp: 6 + rng.float() * 10 };
  const data = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = Math.min(1, Math.max(0, x * ax + y * ay + 0.25));
      let r = from[0] + (to[0] - from[0]) * t;
      let g = from[1] + (to[1] - from[1]) * t;
      let b = from[2] + (to[2] - from[2]) * t;
      for (const c of circles) {
        const dx = x - c.x;
        const dy = y - c.y;
        const d2 = (dx * dx + dy * dy) / (c.r * c.r);
        if (d2 >= 1) continue;
        const alpha = 0.6 * (1 - d2);
        r += (c.c[0] - r) * alpha;
        g += (c.c[1] - g) * alpha;
        b += (c.c[2] - b) * alpha;
      }
      const wave = ripple.amp * Math.sin(x * ripple.fx + y * ripple.fy);
      const o = (y * width + x) * 4;
      data[o] = r + wave;
      data[o + 1] = g + wave;
      data[o + 2] = b + wave;
      data[o + 3] = 255;
    }
  }
  const encoded = jpeg.encode({ width, height, data }, 85).data;
  if (pictures.size >= PICTURE_VARIANTS * 2) pictures.clear(); // another seed: keep the cache small
  pictures.set(key, encoded);
  return encoded;
}

/** Bytes placed at an offset of a file whose other bytes are keystream. */
interface Patch {
  readonly at: number;
  readonly bytes: Uint8Array;
}

/**
 * A photo of exactly `size` bytes: a picture, with APP15 segments of keystream filler between
 * its JFIF header and its image data. Returned as patches over the file's keystream: the
 * picture's two parts and each segment's header.
 */
function photoPatches(seed: string, file: MediaFile): Patch[] {
  const rng = new Rng(seed, 'photo', file.path);
  const pic = picture(seed, rng.int(0, PICTURE_VARIANTS - 1));
  const filler = file.size - pic.length;
  if (filler !== 0 && filler < SEGMENT_MIN) {
    throw new RangeError(`a photo of ${file.size} bytes cannot hold a ${pic.length}-byte picture`); // MEDIA_KINDS.photo.minBytes rules this out
  }
  const patches: Patch[] = [{ at: 0, bytes: pic.subarray(0, JFIF_PREFIX_BYTES) }];
  const segments = Math.ceil(filler / SEGMENT_MAX);
  let at = JFIF_PREFIX_BYTES;
  for (let i = 0; i < segments; i++) {
    // Spread the filler evenly, so that no segment falls below the smallest one possible.
    const total = Math.floor(filler / segments) + (i < filler % segments ? 1 : 0);
    const header = Buffer.alloc(SEGMENT_MIN);
    header[0] = 0xff;
    header[1] = 0xef; // APP15
    header.writeUInt16BE(total - 2, 2);
    FILLER_ID.copy(header, 4);
    patches.push({ at, bytes: header });
    at += total;
  }
  patches.push({ at, bytes: pic.subarray(JFIF_PREFIX_BYTES) });
  return patches;
}

// ---- voice notes ----------------------------------------------------------------------------

/** One period (1024 steps) of a sine, and of a voice-like wave: a fundamental and four falling harmonics. */
const SINE = Float64Array.from({ length: 1024 }, (_, i) => Math.sin((2 * Math.PI * i) / 1024));
const WAVE = Float64Array.from({ length: 1024 }, (_, i) => {
  let v = 0;
  for (let k = 1; k <= 5; k++) v += SINE[(k * i) % 1024]! / (k * k);
  return v / 1.47;
});

/**
 * A voice note of exactly `size` bytes: a WAV file (RIFF, PCM) whose sound rises and falls in
 * syllables, with a wandering pitch, pauses and a little breath noise.
 */
function voiceBytes(seed: string, file: MediaFile): Buffer {
  const out = Buffer.alloc(file.size, 128); // 128 is silence in 8-bit PCM
  // RIFF chunks have even lengths: an odd data length is followed by one pad byte.
  const samples = (file.size - WAV_HEADER_BYTES) & ~1;
  out.write('RIFF', 0, 'latin1');
  out.writeUInt32LE(file.size - 8, 4);
  out.write('WAVEfmt ', 8, 'latin1');
  out.writeUInt32LE(16, 16); // fmt chunk length
  out.writeUInt16LE(1, 20); // PCM
  out.writeUInt16LE(1, 22); // mono
  out.writeUInt32LE(VOICE_RATE, 24);
  out.writeUInt32LE(VOICE_RATE, 28); // bytes per second
  out.writeUInt16LE(1, 32); // block align
  out.writeUInt16LE(8, 34); // bits per sample
  out.write('data', 36, 'latin1');
  out.writeUInt32LE(samples, 40);
  if (samples !== file.size - WAV_HEADER_BYTES) out[file.size - 1] = 0;

  const rng = new Rng(seed, 'voice', file.path);
  const base = 100 + rng.float() * 120; // Hz
  let noise = rng.uint32() | 1;
  let phase = 0;
  let i = 0;
  while (i < samples) {
    const syllable = Math.min(samples - i, Math.round(VOICE_RATE * (0.12 + rng.float() * 0.25)));
    const pitch = base * (0.85 + rng.float() * 0.35);
    const loud = 60 + rng.float() * 50;
    for (let s = 0; s < syllable; s++, i++) {
      const cycle = ((1024 * s) / syllable) | 0; // one syllable: the loudness rises and falls, the pitch wavers
      const envelope = SINE[cycle >> 1]!;
      phase = (phase + (pitch * (1 + 0.06 * SINE[cycle]!)) / VOICE_RATE) % 1;
      noise ^= noise << 13;
      noise ^= noise >>> 17;
      noise ^= noise << 5;
      const v = loud * envelope * WAVE[(phase * 1024) | 0]! + ((noise >>> 24) - 128) / 32;
      out[WAV_HEADER_BYTES + i] = Math.max(0, Math.min(255, Math.round(128 + v)));
    }
    // A pause between words, now and then a longer one between phrases.
    i += Math.round(VOICE_RATE * (rng.chance(0.2) ? 0.3 + rng.float() * 0.4 : 0.03 + rng.float() * 0.1));
  }
  return out;
}

// ---- videos ---------------------------------------------------------------------------------

/** An `ftyp` box (brand mp42) and the header of one `mdat` box spanning the rest. */
const videoHeader = (size: number): Buffer => Buffer.from([
  ...uint32be(24), ...ascii('ftypmp42'), 0, 0, 0, 0, ...ascii('isommp42'),
  ...uint32be(Math.min(size - 24, 0xffffffff)), ...ascii('mdat'),
]);

async function writeAll(handle: Awaited<ReturnType<typeof open>>, chunk: Uint8Array): Promise<void> {
  for (let written = 0; written < chunk.length; ) {
    written += (await handle.write(chunk, written, chunk.length - written)).bytesWritten;
  }
}

/**
 * Writes one media file; the file must not exist yet. Random bytes (photo filler, video data)
 * are the keystream under SHA-256(seed NUL path), written 1 MiB at a time with the kind's
 * structure patched over it; voice notes are generated whole (at most 400 kB).
 */
export async function writeMediaFile(root: string, seed: string, file: MediaFile): Promise<void> {
  const target = absolutePath(root, file.path);
  await mkdir(dirname(target), { recursive: true });
  const handle = await open(target, 'wx');
  try {
    if (file.kind === 'voice') {
      await writeAll(handle, voiceBytes(seed, file));
    } else {
      const patches = file.kind === 'photo' ? photoPatches(seed, file) : [{ at: 0, bytes: videoHeader(file.size) }];
      const stream = keystream(deriveKey(seed, file.path));
      for (let offset = 0; offset < file.size; offset += CHUNK) {
        const chunk = stream.update(ZEROS.subarray(0, Math.min(CHUNK, file.size - offset)));
        for (const p of patches) {
          const from = Math.max(p.at, offset);
          const to = Math.min(p.at + p.bytes.length, offset + chunk.length);
          if (from < to) chunk.set(p.bytes.subarray(from - p.at, to - p.at), from - offset);
        }
        await writeAll(handle, chunk);
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
