/**
 * Deterministic randomness. Everything random in a sample — names, texts, timestamps, sizes,
 * media bytes — comes from an AES-256-CTR keystream (Node's crypto; zero IV, so each key must
 * be used for one stream only) under a key derived from the seed and a label. The same seed
 * therefore always yields the same sample, and media bytes are produced at cipher speed.
 *
 * This is test data, not key material: nothing here is meant to be secret.
 */
import { createCipheriv, createHash, type Cipher } from 'node:crypto';

const ZERO_IV = Buffer.alloc(16);

/** SHA-256 of the UTF-8 parts joined by NUL bytes: `deriveKey(seed, 'media/Photos/x.jpg')`. */
export function deriveKey(...parts: string[]): Buffer {
  return createHash('sha256').update(parts.join('\0'), 'utf8').digest();
}

/** An AES-256-CTR keystream: pass zero bytes to `update` to read the next keystream bytes. */
export function keystream(key: Uint8Array): Cipher {
  return createCipheriv('aes-256-ctr', key, ZERO_IV);
}

const BLOCK = Buffer.alloc(4096);

/** A seeded pseudo-random number generator with the few helpers the generator needs. */
export class Rng {
  readonly #stream: Cipher;
  #buffer: Buffer = Buffer.alloc(0);
  #position = 0;

  /** `new Rng(seed, 'messages')`: one independent stream per seed and label. */
  constructor(...labels: string[]) {
    this.#stream = keystream(deriveKey('coffer-sample rng', ...labels));
  }

  /** A uniform integer in [0, 2^32). */
  uint32(): number {
    if (this.#position + 4 > this.#buffer.length) {
      this.#buffer = this.#stream.update(BLOCK);
      this.#position = 0;
    }
    const value = this.#buffer.readUInt32LE(this.#position);
    this.#position += 4;
    return value;
  }

  /** A uniform float in [0, 1) with 53 random bits. */
  float(): number {
    return ((this.uint32() >>> 5) * 67108864 + (this.uint32() >>> 6)) / 9007199254740992;
  }

  /** A uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]!;
  }

  /** An index into `weights`, chosen with probability proportional to its weight. */
  weighted(weights: readonly number[]): number {
    let remaining = this.float() * weights.reduce((sum, w) => sum + w, 0);
    for (let i = 0; i < weights.length; i++) {
      remaining -= weights[i]!;
      if (remaining < 0) return i;
    }
    return weights.length - 1;
  }

  /** An integer in [min, max] whose logarithm is uniform: small values are common, big ones rare. */
  logUniform(min: number, max: number): number {
    return Math.min(max, Math.round(min * (max / min) ** this.float()));
  }

  /** A Fisher–Yates shuffled copy of `items`. */
  shuffle<T>(items: readonly T[]): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy;
  }
}
