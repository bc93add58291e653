// Server-side twins of protocol.sealResponse / protocol.sealRelease (spec/vault-protocol.md §6.3,
// §7.4) on node:crypto's synchronous HKDF and AES-GCM: the same construction with fewer async
// WebCrypto hops. Both are checked against the same test vectors as the client's WebCrypto code.
// The request side (HPKE open) is hpke.ts.

import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { protocol } from '@coffer/core/vault';
import type { HpkeExporter } from './hpke.js';

const { PAD_BLOCK, PROTOCOL_LABEL, RESPONSE_NONCE_BYTES, pad, utf8 } = protocol;

/**
 * Seals one response. `minPadded` pads the plaintext to at least that many bytes (whole
 * PAD_BLOCKs; the client's unpad accepts any number of zero blocks), so that every answer to one
 * operation has one size whatever its status (spec §10).
 */
export async function sealResponse(
  ctx: protocol.Exporter | HpkeExporter,
  enc: Uint8Array,
  response: protocol.InnerResponse,
  fixed: protocol.FixedRandomness = {},
  minPadded = 0,
): Promise<Uint8Array> {
  const label = utf8(`${PROTOCOL_LABEL} response`);
  const secret = Buffer.from('exportSync' in ctx ? ctx.exportSync(label, 32) : new Uint8Array(await ctx.export(label, 32)));
  const nonceR = fixed.nonce ? Buffer.from(fixed.nonce) : randomBytes(RESPONSE_NONCE_BYTES);
  if (nonceR.length !== RESPONSE_NONCE_BYTES) throw new RangeError('response nonce must be 32 bytes');
  const salt = Buffer.concat([enc, nonceR]);
  const key = Buffer.from(hkdfSync('sha256', secret, salt, 'key', 32));
  const nonce = Buffer.from(hkdfSync('sha256', secret, salt, 'nonce', 12));
  secret.fill(0);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  let padded = pad(utf8(JSON.stringify(response)));
  if (padded.length < minPadded) {
    const longer = new Uint8Array(Math.ceil(minPadded / PAD_BLOCK) * PAD_BLOCK);
    longer.set(padded);
    padded = longer;
  }
  const out = Buffer.concat([nonceR, c.update(padded), c.final(), c.getAuthTag()]);
  key.fill(0);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

export function sealRelease(sessionKey: Uint8Array, requestId: string, wrapped: Uint8Array, fixed: protocol.FixedRandomness = {}): Uint8Array {
  const key = Buffer.from(hkdfSync('sha256', sessionKey, Buffer.alloc(0), `${PROTOCOL_LABEL} release`, 32));
  const nonce = fixed.nonce ? Buffer.from(fixed.nonce) : randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(requestId, 'utf8'));
  const out = Buffer.concat([nonce, c.update(wrapped), c.final(), c.getAuthTag()]);
  key.fill(0);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}
