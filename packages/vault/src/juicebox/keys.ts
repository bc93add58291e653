// The Juicebox realm's X25519 static key (spec/juicebox.md §9): derived inside the boundary from
// the sealed ticket key, so every node of a realm holds the same one. node:crypto only, so that
// `vault init` can print the public key without loading the Juicebox protocol code.

import { hkdfSync } from 'node:crypto';
import { protocol } from '@coffer/core/vault';
import { x25519PublicKey } from '../hpke.js';

const NOISE_KEY_INFO = 'coffer-juicebox-v1 noise static key';

/** HKDF-SHA256(ikm = ticketKey, salt = "", info = NOISE_KEY_INFO, 32): the X25519 key pair. */
export function noiseStaticKey(ticketKey: Uint8Array): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const privateKey = new Uint8Array(hkdfSync('sha256', ticketKey, new Uint8Array(0), NOISE_KEY_INFO, 32));
  return { privateKey, publicKey: x25519PublicKey(privateKey) };
}

/** The hardware-realm public key (hex) of a realm whose secrets are at hand (vault init). */
export function noisePublicKeyFor(secrets: { ticketKey: string }): string {
  const ticketKey = protocol.fromB64u(secrets.ticketKey);
  const { privateKey, publicKey } = noiseStaticKey(ticketKey);
  ticketKey.fill(0);
  privateKey.fill(0);
  return Buffer.from(publicKey).toString('hex');
}
