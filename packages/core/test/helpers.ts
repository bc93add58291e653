/** Test helpers (Node): providers to run each suite against; the in-memory trees come from tree.ts. */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

export { MemorySource, MemoryTarget, sameTree, type MemFile } from '@coffer/core/testing';

/** The Juicebox vectors of spec/juicebox-vectors/ (spec/juicebox.md §11), read from the repository. */
export function juiceboxVectors(): { oprf: JuiceboxOprfVectors; pin: JuiceboxPinVectors } {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'spec', 'juicebox-vectors'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('spec/juicebox-vectors not found above the test');
    dir = up;
  }
  const read = (name: string) => JSON.parse(readFileSync(join(dir, 'spec', 'juicebox-vectors', name), 'utf8'));
  return { oprf: read('oprf.json'), pin: read('pin.json') };
}

export interface JuiceboxOprfVectors {
  vectors: {
    name: string;
    inputs: { input: string; private_key_seed: string; blinding_factor_seed: string; beta_t_seed: string };
    outputs: { private_key: string; public_key: string; blinding_factor: string; blinded_input: string; blinded_output: string; proof_c: string; proof_beta_z: string; output: string };
  }[];
}

export interface JuiceboxPinVectors {
  pinHashing: { mode: string; pin: string; version: string; info: string; accessKey: string; encryptionKeySeed: string }[];
  secretEncryption: { encryptionKey: string; secret: string; encryptedSecret: string }[];
}
