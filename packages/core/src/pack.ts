/** Packs and indexes: spec/format.md §3.2 and §3.3. */
import { fromHex, toHex } from './bytes.js';
import type { CryptoProvider } from './crypto.js';
import { DamagedBackupError } from './errors.js';
import type { DerivedKeys } from './keys.js';
import { ObjectType, openObject, sealedSize, sealObject } from './object.js';
import type { ObjectWriter } from './storage.js';

/** Where a blob is: in pack `pack` at `offset`, `sealedLength` bytes holding `plainLength`. */
export interface BlobLocation {
  pack: string;
  offset: number;
  sealedLength: number;
  plainLength: number;
}

export interface PackedBlob {
  id: string;
  offset: number;
  sealedLength: number;
  plainLength: number;
  /** Set on the blobs an index lists: their pack's id (so that one object is both entry and location). */
  pack?: string;
}

/** A pack as an index lists it. */
export interface PackEntry {
  /** The pack id (64 hex digits). */
  id: string;
  blobs: PackedBlob[];
}

const BLOB_RECORD = 32 + 4 + 4 + 4;
const PACK_MAGIC = [0x43, 0x50, 0x4b, 0x32]; // "CPK2"
const INDEX_MAGIC = [0x43, 0x49, 0x58, 0x32]; // "CIX2"
/** Packs, indexes and pack headers never need more (§4.4). */
export const MAX_PACK_HEADER_BYTES = 16 * 1024 * 1024;

/** §3.2: the Padmé length for `n` bytes (at most 12% more; low bits zero). */
export function padme(n: number): number {
  if (n <= 2) return n;
  const e = Math.floor(Math.log2(n));
  const s = Math.floor(Math.log2(e)) + 1;
  const lastBits = e - s;
  const mask = 2 ** lastBits - 1;
  // n + mask, with the low `lastBits` bits cleared (n < 2^53, so plain arithmetic is exact).
  return Math.floor((n + mask) / 2 ** lastBits) * 2 ** lastBits;
}

function writeBlobs(view: DataView, out: Uint8Array, o: number, blobs: PackedBlob[]): number {
  for (const b of blobs) {
    out.set(fromHex(b.id), o);
    view.setUint32(o + 32, b.offset);
    view.setUint32(o + 36, b.sealedLength);
    view.setUint32(o + 40, b.plainLength);
    o += BLOB_RECORD;
  }
  return o;
}

function readBlobs(view: DataView, bytes: Uint8Array, o: number, count: number, bad: (d: string) => Error, pack?: string): { blobs: PackedBlob[]; o: number } {
  if (o + count * BLOB_RECORD > bytes.length) throw bad('blob list runs past the end');
  const blobs: PackedBlob[] = [];
  for (let i = 0; i < count; i++, o += BLOB_RECORD) {
    const id = toHex(bytes.subarray(o, o + 32));
    const offset = view.getUint32(o + 32);
    const sealedLength = view.getUint32(o + 36);
    const plainLength = view.getUint32(o + 40);
    blobs.push(pack === undefined ? { id, offset, sealedLength, plainLength } : { id, offset, sealedLength, plainLength, pack });
  }
  return { blobs, o };
}

/** The plaintext of a pack header (§3.2). */
export function encodePackHeader(blobs: PackedBlob[]): Uint8Array {
  const out = new Uint8Array(8 + blobs.length * BLOB_RECORD);
  const view = new DataView(out.buffer);
  out.set(PACK_MAGIC, 0);
  view.setUint32(4, blobs.length);
  writeBlobs(view, out, 8, blobs);
  return out;
}

export function decodePackHeader(bytes: Uint8Array, name: string): PackedBlob[] {
  const bad = (detail: string) => new DamagedBackupError('corrupt', name, { detail: `pack header: ${detail}` });
  if (bytes.length < 8 || !PACK_MAGIC.every((m, i) => bytes[i] === m)) throw bad('bad magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { blobs, o } = readBlobs(view, bytes, 8, view.getUint32(4), bad);
  if (o !== bytes.length) throw bad('trailing bytes');
  return blobs;
}

/** The plaintext of an index object (§3.3). */
export function encodeIndex(packs: PackEntry[]): Uint8Array {
  const blobs = packs.reduce((n, p) => n + p.blobs.length, 0);
  const out = new Uint8Array(8 + packs.length * 36 + blobs * BLOB_RECORD);
  const view = new DataView(out.buffer);
  out.set(INDEX_MAGIC, 0);
  view.setUint32(4, packs.length);
  let o = 8;
  for (const p of packs) {
    out.set(fromHex(p.id), o);
    view.setUint32(o + 32, p.blobs.length);
    o = writeBlobs(view, out, o + 36, p.blobs);
  }
  return out;
}

export function decodeIndex(bytes: Uint8Array, name: string): PackEntry[] {
  const bad = (detail: string) => new DamagedBackupError('corrupt', name, { detail: `index: ${detail}` });
  if (bytes.length < 8 || !INDEX_MAGIC.every((m, i) => bytes[i] === m)) throw bad('bad magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(4);
  const packs: PackEntry[] = [];
  let o = 8;
  for (let i = 0; i < count; i++) {
    if (o + 36 > bytes.length) throw bad('pack list runs past the end');
    const id = toHex(bytes.subarray(o, o + 32));
    const r = readBlobs(view, bytes, o + 36, view.getUint32(o + 32), bad, id);
    packs.push({ id, blobs: r.blobs });
    o = r.o;
  }
  if (o !== bytes.length) throw bad('trailing bytes');
  return packs;
}

/**
 * Assembles one pack (§3.2): sealed blobs appended in order, then padding, the sealed header and
 * its length. The buffer is allocated once, at its largest possible size.
 */
export class PackBuilder {
  readonly blobs: PackedBlob[] = [];
  private buf: Uint8Array;
  private used = 0;
  constructor(
    readonly id: string,
    private readonly packSize: number,
    private readonly maxBlob: number,
    buffer?: Uint8Array,
  ) {
    this.buf = buffer && buffer.length >= PackBuilder.capacity(packSize, maxBlob) ? buffer : new Uint8Array(PackBuilder.capacity(packSize, maxBlob));
  }

  /**
   * The buffer a builder starts with: a full pack, one more blob, and room for the header, padding
   * and length of a pack of typical blobs. A pack of many tiny blobs (a larger header) grows it once.
   */
  static capacity(packSize: number, maxBlob: number): number {
    const full = packSize + maxBlob;
    return padme(full + sealedSize(8 + Math.ceil(full / 4096) * BLOB_RECORD) + 4);
  }

  /** The whole buffer, to hand to the next builder once the finished pack is written. */
  get buffer(): Uint8Array {
    return this.buf;
  }

  get size(): number {
    return this.used;
  }

  /** True when `sealedLength` more bytes would take the pack past its size (an empty pack takes anything). */
  wouldOverflow(sealedLength: number): boolean {
    return this.used > 0 && this.used + sealedLength > this.packSize;
  }

  add(id: string, sealed: Uint8Array, plainLength: number): void {
    if (sealed.length > this.maxBlob) throw new RangeError('blob larger than the pack allows');
    this.buf.set(sealed, this.used);
    this.blobs.push({ id, offset: this.used, sealedLength: sealed.length, plainLength });
    this.used += sealed.length;
  }

  /** The finished pack: blobs, padding, sealed header, length. */
  async finish(crypto: CryptoProvider, keys: DerivedKeys, segmentSize: number): Promise<Uint8Array> {
    const { header, total } = await packTail(crypto, keys, this.id, this.blobs, this.used, segmentSize);
    if (total > this.buf.length) {
      const bigger = new Uint8Array(total);
      bigger.set(this.buf.subarray(0, this.used));
      this.buf = bigger;
    }
    const out = this.buf.subarray(0, total);
    out.fill(0, this.used, total - header.length - 4);
    out.set(header, total - header.length - 4);
    new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(total - 4, header.length);
    return out;
  }
}

/**
 * The length of the pack that holds `blobs` (§3.2), computed from the index: the blobs, the sealed
 * header, its length and the Padmé padding. Prune measures a pack's unused share against this (§9.2).
 */
export function packLength(blobs: PackedBlob[], segmentSize: number): number {
  const used = blobs.reduce((n, b) => Math.max(n, b.offset + b.sealedLength), 0);
  return padme(used + sealedSize(8 + blobs.length * BLOB_RECORD, segmentSize) + 4);
}

/** The end of a pack (§3.2): zero padding to its Padmé length, the sealed header, the header's length. */
async function packTail(crypto: CryptoProvider, keys: DerivedKeys, id: string, blobs: PackedBlob[], used: number, segmentSize: number): Promise<{ padding: number; header: Uint8Array; total: number }> {
  const header = await sealObject(crypto, keys, { type: ObjectType.packHeader, id }, encodePackHeader(blobs), { segmentSize });
  const total = padme(used + header.length + 4);
  return { padding: total - used - header.length - 4, header, total };
}

const u32be = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};

/**
 * A pack written straight to the store as it fills (Storage.writer): small blobs gather in a staging
 * buffer, large ones are written as they come, so no pack is ever whole in memory.
 */
export class PackStream {
  readonly blobs: PackedBlob[] = [];
  private used = 0;
  private staged = 0;
  constructor(
    readonly id: string,
    private readonly writer: ObjectWriter,
    /** Where small blobs gather; handed to the next pack once this one is written. */
    readonly staging: Uint8Array,
  ) {}

  get size(): number {
    return this.used;
  }

  private async flushStaging(): Promise<void> {
    if (this.staged === 0) return;
    await this.writer.write(this.staging.subarray(0, this.staged));
    this.staged = 0;
  }

  async add(id: string, sealed: Uint8Array, plainLength: number): Promise<void> {
    this.blobs.push({ id, offset: this.used, sealedLength: sealed.length, plainLength });
    this.used += sealed.length;
    // Bytes go out in order: what is staged goes before a blob written as it is.
    const direct = sealed.length >= this.staging.length / 2;
    if (direct || this.staged + sealed.length > this.staging.length) await this.flushStaging();
    if (direct) {
      await this.writer.write(sealed);
    } else {
      this.staging.set(sealed, this.staged);
      this.staged += sealed.length;
    }
  }

  /** Writes the tail and commits: the pack appears under its name. Returns its length. */
  async finish(crypto: CryptoProvider, keys: DerivedKeys, segmentSize: number): Promise<number> {
    await this.flushStaging();
    const { padding, header, total } = await packTail(crypto, keys, this.id, this.blobs, this.used, segmentSize);
    for (let left = padding; left > 0; ) {
      const n = Math.min(left, this.staging.length);
      this.staging.fill(0, 0, n);
      await this.writer.write(this.staging.subarray(0, n));
      left -= n;
    }
    await this.writer.write(header);
    await this.writer.write(u32be(header.length));
    await this.writer.commit();
    return total;
  }

  abort(): Promise<void> {
    return this.writer.abort();
  }
}

/** Reads the sealed header of a whole pack's bytes (for `repair index` and the vectors). */
export async function readPackHeader(crypto: CryptoProvider, keys: DerivedKeys, pack: Uint8Array, id: string, segmentSize: number): Promise<PackedBlob[]> {
  const name = `packs/${id}`;
  if (pack.length < 4) throw new DamagedBackupError('truncated', name);
  const n = new DataView(pack.buffer, pack.byteOffset, pack.byteLength).getUint32(pack.length - 4);
  if (n > MAX_PACK_HEADER_BYTES || n + 4 > pack.length) throw new DamagedBackupError('corrupt', name, { detail: 'bad header length' });
  const plain = await openObject(crypto, keys, { type: ObjectType.packHeader, id }, pack.subarray(pack.length - 4 - n, pack.length - 4), name, { segmentSize });
  return decodePackHeader(plain, name);
}
