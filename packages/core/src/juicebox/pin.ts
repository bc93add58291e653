// PIN hashing (spec/juicebox.md §4): Argon2id through hash-wasm, the fastest well-kept
// implementation that runs in browsers and Node alike (measured in packages/core/bench/argon2.mjs).

import { argon2id } from 'hash-wasm';
import { concat } from '../bytes.js';

/** `Standard2019`: 16 MiB, 32 iterations, parallelism 1 (the SDK's default). */
export const STANDARD_2019 = 'Standard2019';

/**
 * The SDK's `FastInsecure` mode (8 KiB, one pass): for tests only. Registration and recovery
 * must use the same mode; a secret registered with it is protected by nothing but the realms.
 */
export const INSECURE_TEST_ONLY_FAST_PIN_HASHING = 'FastInsecure';

/** How the PIN is stretched before the OPRF: the SDK's `Standard2019`, or the test-only fast mode. */
export type PinHashingMode = typeof STANDARD_2019 | typeof INSECURE_TEST_ONLY_FAST_PIN_HASHING;

const PARAMS: Record<PinHashingMode, { memorySize: number; iterations: number }> = {
  Standard2019: { memorySize: 16 * 1024, iterations: 32 },
  FastInsecure: { memorySize: 8, iterations: 1 },
};

function be4(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** `Argon2id(pin, be4(16) || version || be4(|info|) || info)` split into the access key and the encryption key seed. */
export async function hashPin(mode: PinHashingMode, pin: Uint8Array, version: Uint8Array, info: Uint8Array): Promise<{ accessKey: Uint8Array; encryptionKeySeed: Uint8Array }> {
  const p = PARAMS[mode];
  if (!p) throw new TypeError(`unknown PIN hashing mode ${String(mode)}`);
  const out = await argon2id({
    password: pin,
    salt: concat(be4(version.length), version, be4(info.length), info),
    parallelism: 1,
    iterations: p.iterations,
    memorySize: p.memorySize,
    hashLength: 64,
    outputType: 'binary',
  });
  const keys = { accessKey: out.slice(0, 32), encryptionKeySeed: out.slice(32, 64) };
  out.fill(0);
  return keys;
}
