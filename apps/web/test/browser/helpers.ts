/**
 * Browser replacement for packages/core/test/helpers.ts (same exports the suites use): only the
 * Web Crypto provider exists here (twice, see `providers`); the in-memory trees are core's own.
 */
import type { CryptoProvider } from '@coffer/core';
import { webCryptoProvider } from '@coffer/core';
import type { JuiceboxOprfVectors, JuiceboxPinVectors } from '../../../../packages/core/test/helpers.js';
import oprf from '../../../../spec/juicebox-vectors/oprf.json' with { type: 'json' };
import pin from '../../../../spec/juicebox-vectors/pin.json' with { type: 'json' };

/**
 * Node's suites pair each provider with the other ("across providers"); here both sides are Web
 * Crypto, through two provider objects so that pairing still finds a partner.
 */
export const providers: CryptoProvider[] = [webCryptoProvider, { ...webCryptoProvider, name: 'webcrypto (second instance)' }];

export { MemorySource, MemoryTarget, sameTree, type MemFile } from '@coffer/core/testing';

/** The Juicebox vectors, bundled from spec/juicebox-vectors/ by esbuild. */
export function juiceboxVectors(): { oprf: JuiceboxOprfVectors; pin: JuiceboxPinVectors } {
  return { oprf, pin };
}
