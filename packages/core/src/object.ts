/** Object encryption: spec/format.md §4 (header, per-object key, STREAM segments). */
import { concat, equalBytes, fromHex, u64be, utf8 } from './bytes.js';
import type { CryptoProvider } from './crypto.js';
import { DamagedBackupError } from './errors.js';
import type { DerivedKeys } from './keys.js';

export const HEADER_BYTES = 40;
export const TAG_BYTES = 16;
export const DEFAULT_SEGMENT_SIZE = 65536;
const MAGIC = [0x43, 0x4f, 0x46, 0x52]; // "COFR"
const VERSION = 1;

/** The type byte of each kind of sealed object (spec/format.md §4.2). */
export const ObjectType = { data: 1, manifest: 2, packHeader: 3, index: 4, journal: 5, lock: 6 } as const;
export type ObjectType = (typeof ObjectType)[keyof typeof ObjectType];

/**
 * What an object is bound to (§4.1): a blob's id; a manifest's backup id, sequence number and writer
 * (`null` in version 1); or the 32-byte id of a pack header, an index, a journal record or a lock.
 */
export type Binding =
  | { type: typeof ObjectType.data | typeof ObjectType.packHeader | typeof ObjectType.index | typeof ObjectType.journal | typeof ObjectType.lock; id: string }
  | { type: typeof ObjectType.manifest; backupId: Uint8Array; seq: number; writer?: string | null };

function bindingBytes(b: Binding): Uint8Array {
  if (b.type !== ObjectType.manifest) return fromHex(b.id);
  return b.writer ? concat(b.backupId, u64be(b.seq), fromHex(b.writer)) : concat(b.backupId, u64be(b.seq));
}

/** §4.1: the binding tag an object stored for `binding` carries in its header (bytes 24 to 40). */
export async function expectedBindingTag(crypto: CryptoProvider, keys: DerivedKeys, binding: Binding): Promise<Uint8Array> {
  return bindingTag(crypto, keys, binding);
}

/** Total size of the sealed object for `n` plaintext bytes (§4.3). */
export function sealedSize(n: number, segmentSize = DEFAULT_SEGMENT_SIZE): number {
  return HEADER_BYTES + n + TAG_BYTES * Math.max(1, Math.ceil(n / segmentSize));
}

function nonce(i: number, last: boolean): Uint8Array {
  const n = new Uint8Array(12);
  const v = new DataView(n.buffer);
  v.setUint32(3, Math.floor(i / 2 ** 32));
  v.setUint32(7, i >>> 0);
  n[11] = last ? 1 : 0;
  return n;
}

const OBJECT_INFO = utf8('coffer v1 object');

async function objectKey(crypto: CryptoProvider, keys: DerivedKeys, b: Binding, salt: Uint8Array) {
  const root = b.type === ObjectType.data ? keys.objectEncryption : keys.manifestEncryption;
  const info = concat(OBJECT_INFO, Uint8Array.of(b.type), bindingBytes(b));
  return crypto.aeadKey(await crypto.hkdfSha256(root, salt, info, 32));
}

async function bindingTag(crypto: CryptoProvider, keys: DerivedKeys, b: Binding): Promise<Uint8Array> {
  const mac = await crypto.hmacSha256(keys.bindingTag, concat(Uint8Array.of(b.type), bindingBytes(b)));
  return mac.subarray(0, 16);
}

/** Options of sealObject: the segment size, and a fixed salt for vectors only. */
export interface SealOptions {
  segmentSize?: number;
  /** 16 bytes; fresh random by default. Only vector generation passes a fixed one. */
  salt?: Uint8Array;
  /** Write the object here (it must hold `sealedSize` bytes) instead of a new buffer. */
  into?: Uint8Array;
}

/** Encrypts one object (§4). */
export async function sealObject(
  crypto: CryptoProvider,
  keys: DerivedKeys,
  binding: Binding,
  plaintext: Uint8Array,
  options: SealOptions = {},
): Promise<Uint8Array> {
  const seg = options.segmentSize ?? DEFAULT_SEGMENT_SIZE;
  const salt = options.salt ?? crypto.randomBytes(16);
  const size = sealedSize(plaintext.length, seg);
  if (options.into && options.into.length < size) throw new RangeError('output buffer too small');
  const out = options.into ? options.into.subarray(0, size) : new Uint8Array(size);
  const header = out.subarray(0, HEADER_BYTES);
  header.set(MAGIC, 0);
  header[4] = VERSION;
  header[5] = binding.type;
  header[6] = header[7] = 0;
  header.set(salt, 8);
  header.set(await bindingTag(crypto, keys, binding), 24);
  const aad = header.slice();
  const key = await objectKey(crypto, keys, binding, salt);
  const count = Math.max(1, Math.ceil(plaintext.length / seg));
  let o = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const piece = plaintext.subarray(i * seg, Math.min(plaintext.length, (i + 1) * seg));
    o += (await crypto.aeadSeal(key, nonce(i, i === count - 1), piece, aad, out.subarray(o))).length;
  }
  return out;
}

/**
 * Decrypts and authenticates one object stored under `name` (§4.4). Throws DamagedBackupError with
 * reason `corrupt`, `misplaced` or `truncated`.
 */
export async function openObject(
  crypto: CryptoProvider,
  keys: DerivedKeys,
  binding: Binding,
  sealed: Uint8Array,
  name: string,
  options: { segmentSize?: number; expectedLength?: number; into?: Uint8Array } = {},
): Promise<Uint8Array> {
  const seg = options.segmentSize ?? DEFAULT_SEGMENT_SIZE;
  if (sealed.length < HEADER_BYTES + TAG_BYTES) throw new DamagedBackupError('truncated', name, { detail: 'shorter than a header' });
  const header = sealed.subarray(0, HEADER_BYTES);
  if (!MAGIC.every((m, i) => header[i] === m) || header[4] !== VERSION || header[5] !== binding.type || header[6] !== 0 || header[7] !== 0) {
    throw new DamagedBackupError('corrupt', name, { detail: 'bad header' });
  }
  if (!equalBytes(header.subarray(24, 40), await bindingTag(crypto, keys, binding))) throw new DamagedBackupError('misplaced', name);
  if (options.expectedLength !== undefined) {
    const expected = sealedSize(options.expectedLength, seg);
    if (sealed.length < expected) throw new DamagedBackupError('truncated', name, { detail: `${sealed.length} of ${expected} bytes` });
    if (sealed.length > expected) throw new DamagedBackupError('corrupt', name, { detail: 'longer than expected' });
  }
  const aad = header.slice();
  const key = await objectKey(crypto, keys, binding, header.subarray(8, 24));
  const full = seg + TAG_BYTES;
  const body = sealed.length - HEADER_BYTES;
  const count = Math.max(1, Math.ceil(body / full));
  if (body - (count - 1) * full < TAG_BYTES) throw new DamagedBackupError('corrupt', name, { detail: `segment ${count - 1} is too short` });
  const plainSize = body - TAG_BYTES * count;
  if (options.into && options.into.length < plainSize) throw new RangeError('output buffer too small');
  const out = options.into ? options.into.subarray(0, plainSize) : new Uint8Array(plainSize);
  let o = HEADER_BYTES;
  let p = 0;
  for (let i = 0; ; i++) {
    const end = Math.min(sealed.length, o + full);
    const last = end === sealed.length;
    const piece = sealed.subarray(o, end);
    const plain = await crypto.aeadOpen(key, nonce(i, last), piece, aad, out.subarray(p));
    if (plain === null) {
      // A final piece that authenticates as a non-final segment means the object was cut here.
      if (last && piece.length === full && (await crypto.aeadOpen(key, nonce(i, false), piece, aad)) !== null) {
        throw new DamagedBackupError('truncated', name);
      }
      throw new DamagedBackupError('corrupt', name, { detail: `segment ${i} does not authenticate` });
    }
    if (plain.length === 0 && i > 0) throw new DamagedBackupError('corrupt', name, { detail: 'empty final segment' });
    p += plain.length;
    o = end;
    if (last) break;
  }
  return out;
}

/** §3: the name of a chunk. */
export async function chunkId(crypto: CryptoProvider, keys: DerivedKeys, plaintext: Uint8Array): Promise<string> {
  const mac = await crypto.hmacSha256(keys.objectId, plaintext);
  let s = '';
  for (const b of mac) s += b.toString(16).padStart(2, '0');
  return s;
}
