/**
 * The cryptographic primitives Coffer composes, behind a small provider interface so that Node can
 * use its (much faster, synchronous) OpenSSL bindings while browsers use Web Crypto. Nothing here is
 * hand-written cryptography: every function is a thin call into one of those audited libraries.
 */

/** An AES-256-GCM key as the provider holds it (a raw buffer in Node, a CryptoKey in browsers). */
export interface AeadKey {
  readonly provider: string;
}

/** The primitives the engine runs on (AES-256-GCM, HMAC-SHA256, HKDF-SHA256, random bytes): {@link webCryptoProvider} in every runtime, `nodeCryptoProvider` (@coffer/node) faster in Node. Providers must agree byte for byte. */
export interface CryptoProvider {
  readonly name: string;
  randomBytes(n: number): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  sha256(data: Uint8Array): Promise<Uint8Array>;
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  aeadKey(raw: Uint8Array): Promise<AeadKey>;
  /** AES-256-GCM; returns ciphertext || 16-byte tag, written into `into` when given (it must fit). */
  aeadSeal(key: AeadKey, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, into?: Uint8Array): Promise<Uint8Array>;
  /** Returns the plaintext (written into `into` when given), or `null` when authentication fails. */
  aeadOpen(key: AeadKey, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array, into?: Uint8Array): Promise<Uint8Array | null>;
}

interface WebAeadKey extends AeadKey {
  readonly key: CryptoKey;
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('Web Crypto is not available in this environment');
  return s;
}

// Web Crypto's typings want ArrayBuffer-backed views; ours always are.
const bs = (b: Uint8Array): BufferSource => b as unknown as BufferSource;

/** Copies `data` to the start of `into` when given, returning the view that holds it. */
export function place(data: Uint8Array, into: Uint8Array | undefined): Uint8Array {
  if (!into) return data;
  if (into.length < data.length) throw new RangeError('output buffer too small');
  into.set(data);
  return into.subarray(0, data.length);
}

/** The provider for browsers (and any runtime with Web Crypto). */
export const webCryptoProvider: CryptoProvider = {
  name: 'webcrypto',
  randomBytes(n) {
    const out = new Uint8Array(n);
    // getRandomValues fills at most 65536 bytes per call.
    for (let o = 0; o < n; o += 65536) globalThis.crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
    return out;
  },
  async hmacSha256(key, data) {
    const k = await subtle().importKey('raw', bs(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return new Uint8Array(await subtle().sign('HMAC', k, bs(data)));
  },
  async sha256(data) {
    return new Uint8Array(await subtle().digest('SHA-256', bs(data)));
  },
  async hkdfSha256(ikm, salt, info, length) {
    const k = await subtle().importKey('raw', bs(ikm), 'HKDF', false, ['deriveBits']);
    const bits = await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: bs(salt), info: bs(info) }, k, length * 8);
    return new Uint8Array(bits);
  },
  async aeadKey(raw) {
    const key = await subtle().importKey('raw', bs(raw), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    return { provider: 'webcrypto', key } as WebAeadKey;
  },
  async aeadSeal(key, nonce, plaintext, aad, into) {
    const k = (key as WebAeadKey).key;
    return place(new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad) }, k, bs(plaintext))), into);
  },
  async aeadOpen(key, nonce, sealed, aad, into) {
    const k = (key as WebAeadKey).key;
    let plain: Uint8Array;
    try {
      plain = new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(aad) }, k, bs(sealed)));
    } catch {
      return null;
    }
    return place(plain, into);
  },
};
