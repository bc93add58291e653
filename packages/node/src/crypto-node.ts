/** The CryptoProvider on Node's OpenSSL bindings: synchronous and several times faster than Web Crypto. */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { AeadKey, CryptoProvider } from '@coffer/core';
import { place } from '@coffer/core/adapters';

interface NodeAeadKey extends AeadKey {
  readonly raw: Buffer;
}

const asBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** The CryptoProvider on node:crypto (OpenSSL): the same bytes as webCryptoProvider, faster. */
export const nodeCryptoProvider: CryptoProvider = {
  name: 'node',
  randomBytes: (n) => new Uint8Array(randomBytes(n)),
  async hmacSha256(key, data) {
    return new Uint8Array(createHmac('sha256', key).update(data).digest());
  },
  async sha256(data) {
    return new Uint8Array(createHash('sha256').update(data).digest());
  },
  async hkdfSha256(ikm, salt, info, length) {
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  },
  async aeadKey(raw) {
    return { provider: 'node', raw: Buffer.from(raw) } as NodeAeadKey;
  },
  async aeadSeal(key, nonce, plaintext, aad, into) {
    const c = createCipheriv('aes-256-gcm', (key as NodeAeadKey).raw, nonce);
    c.setAAD(aad);
    const ct = c.update(asBuffer(plaintext));
    c.final();
    const out = into ? asBuffer(into) : Buffer.allocUnsafe(plaintext.length + 16);
    if (out.length < plaintext.length + 16) throw new RangeError('output buffer too small');
    ct.copy(out, 0);
    c.getAuthTag().copy(out, ct.length);
    return new Uint8Array(out.buffer, out.byteOffset, plaintext.length + 16);
  },
  async aeadOpen(key, nonce, sealed, aad, into) {
    if (sealed.length < 16) return null;
    const d = createDecipheriv('aes-256-gcm', (key as NodeAeadKey).raw, nonce);
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    const plain = d.update(asBuffer(sealed.subarray(0, sealed.length - 16)));
    try {
      d.final();
    } catch {
      return null;
    }
    return place(new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength), into);
  },
};
