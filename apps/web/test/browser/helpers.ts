/**
 * Browser replacement for packages/core/test/helpers.ts (same exports the suites use): only the
 * Web Crypto provider exists here (twice, see `providers`); the in-memory trees are core's own.
 */
import type { CryptoProvider } from '@coffer/core';
import { webCryptoProvider } from '@coffer/core';

/**
 * Node's suites pair each provider with the other ("across providers"); here both sides are Web
 * Crypto, through two provider objects so that pairing still finds a partner.
 */
export const providers: CryptoProvider[] = [webCryptoProvider, { ...webCryptoProvider, name: 'webcrypto (second instance)' }];

export * from '../../../../packages/core/test/tree.js';
