/** Small byte helpers. Bytes are `Uint8Array` everywhere in public APIs. */

const HEX = '0123456789abcdef';
/** The two hex digits of each byte value. */
const HEX_PAIRS = Array.from({ length: 256 }, (_, b) => HEX[b >> 4]! + HEX[b & 15]!);
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/**
 * Lower-case hex of `bytes` (to keep a key or an id as text). Built with one join, so the result is
 * one flat string: `s +=` would leave a rope of concatenations behind every id a manifest or an
 * index keeps (about 1 KiB each).
 */
export function toHex(bytes: Uint8Array): string {
  const pairs = new Array<string>(bytes.length);
  for (let i = 0; i < bytes.length; i++) pairs[i] = HEX_PAIRS[bytes[i]!]!;
  return pairs.join('');
}

/** The bytes of a hex string; throws TypeError on anything that is not an even number of hex digits. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new TypeError('not a hexadecimal string');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The UTF-8 bytes of `s`. */
export const utf8 = (s: string): Uint8Array<ArrayBuffer> => enc.encode(s);
/** Decodes UTF-8, throwing on invalid sequences. */
export const fromUtf8 = (b: Uint8Array): string => dec.decode(b);

export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time comparison (time depends only on the lengths). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function u64be(n: number | bigint): Uint8Array<ArrayBuffer> {
  if (typeof n === 'number' && (!Number.isSafeInteger(n) || n < 0)) throw new RangeError('u64be: not a non-negative safe integer');
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/** Overwrites a buffer with zeros (best effort: JavaScript may hold other copies). */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}
