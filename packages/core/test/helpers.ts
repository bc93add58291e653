/** Test helpers (Node): providers to run each suite against; the in-memory trees come from tree.ts. */
import { createHash } from 'node:crypto';
import type { CryptoProvider } from '@coffer/core';
import { webCryptoProvider } from '@coffer/core';
import { nodeCryptoProvider } from '@coffer/node';

/** Every suite that touches crypto runs once per provider (both must agree byte for byte). */
export const providers: CryptoProvider[] = [nodeCryptoProvider, webCryptoProvider];

/** A provider whose random bytes come from a seed: for reproducible vectors only. */
export function seededProvider(base: CryptoProvider, seed: string): CryptoProvider {
  let counter = 0;
  return {
    ...base,
    name: `${base.name}+seeded`,
    randomBytes(n) {
      const out = new Uint8Array(n);
      for (let o = 0; o < n; o += 32) {
        const block = createHash('sha256').update(`${seed}/${counter++}`).digest();
        out.set(block.subarray(0, Math.min(32, n - o)), o);
      }
      return out;
    },
  };
}

export * from './tree.js';
