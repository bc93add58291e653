// Noise_NK_25519_ChaChaPoly_BLAKE2s (Noise Protocol Framework, revision 34), the channel to
// hardware realms (spec/juicebox.md §9). No well-kept JavaScript Noise library offers this
// suite (the maintained ones are BLAKE2b or XX-only), so this composes @noble's X25519,
// ChaCha20-Poly1305, BLAKE2s and HKDF exactly as the Noise specification defines
// InitializeSymmetric, MixHash, MixKey, EncryptAndHash, DecryptAndHash and Split, for the one
// pattern NK (`<- s`, `-> e, es`, `<- e, ee`) with an empty prologue.

import { CofferError } from '../errors.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { concat, utf8 } from '../bytes.js';
import type { RandomSource } from './crypto.js';
import { systemRandom } from './crypto.js';

const PROTOCOL_NAME = utf8('Noise_NK_25519_ChaChaPoly_BLAKE2s');

export class NoiseError extends CofferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('noise', message, options);
    this.name = 'NoiseError';
  }
}

/** A Noise CipherState: a key and a 64-bit counter nonce (`0^32 || LE64(n)`). */
class CipherState {
  #key: Uint8Array;
  #n = 0n;
  constructor(key: Uint8Array) {
    this.#key = key;
  }
  #nonce(): Uint8Array {
    if (this.#n >= 0xffffffffffffffffn) throw new NoiseError('nonce exhausted');
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setBigUint64(4, this.#n, true);
    this.#n += 1n;
    return nonce;
  }
  encrypt(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    return chacha20poly1305(this.#key, this.#nonce(), ad).encrypt(plaintext);
  }
  decrypt(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const nonce = this.#nonce();
    try {
      return chacha20poly1305(this.#key, nonce, ad).decrypt(ciphertext);
    } catch (cause) {
      throw new NoiseError('a Noise message failed to authenticate', { cause });
    }
  }
  wipe(): void {
    this.#key.fill(0);
  }
}

/** Noise SymmetricState for this suite: h, ck and the handshake cipher. */
class SymmetricState {
  h: Uint8Array;
  ck: Uint8Array;
  cipher: CipherState | null = null;
  constructor() {
    // The protocol name is longer than HASHLEN (32), so h = HASH(name).
    this.h = blake2s(PROTOCOL_NAME);
    this.ck = this.h.slice();
  }
  mixHash(data: Uint8Array): void {
    this.h = blake2s(concat(this.h, data));
  }
  mixKey(ikm: Uint8Array): void {
    const out = hkdf(blake2s, ikm, this.ck, new Uint8Array(0), 64);
    this.ck = out.slice(0, 32);
    this.cipher = new CipherState(out.slice(32, 64));
    out.fill(0);
  }
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ct = this.cipher!.encrypt(this.h, plaintext);
    this.mixHash(ct);
    return ct;
  }
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const pt = this.cipher!.decrypt(this.h, ciphertext);
    this.mixHash(ciphertext);
    return pt;
  }
  split(): [CipherState, CipherState] {
    const out = hkdf(blake2s, new Uint8Array(0), this.ck, new Uint8Array(0), 64);
    const pair: [CipherState, CipherState] = [new CipherState(out.slice(0, 32)), new CipherState(out.slice(32, 64))];
    out.fill(0);
    this.ck.fill(0);
    return pair;
  }
}

function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  try {
    return x25519.getSharedSecret(privateKey, publicKey);
  } catch (cause) {
    throw new NoiseError('invalid X25519 public key', { cause });
  }
}

/** Transport after the handshake: each side's sending and receiving CipherState. */
export class NoiseTransport {
  readonly #send: CipherState;
  readonly #receive: CipherState;
  constructor(send: CipherState, receive: CipherState) {
    this.#send = send;
    this.#receive = receive;
  }
  encrypt(plaintext: Uint8Array): Uint8Array {
    return this.#send.encrypt(new Uint8Array(0), plaintext);
  }
  decrypt(ciphertext: Uint8Array): Uint8Array {
    return this.#receive.decrypt(new Uint8Array(0), ciphertext);
  }
  wipe(): void {
    this.#send.wipe();
    this.#receive.wipe();
  }
  toJSON(): string {
    return '[NoiseTransport]';
  }
}

export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(privateKey);
}

// ---------------------------------------------------------------- initiator (client)

export interface ClientHandshake {
  /** `e` and the payload ciphertext, to send. */
  clientEphemeralPublic: Uint8Array;
  payloadCiphertext: Uint8Array;
  /** Completes the handshake with the server's `e` and payload; returns the transport and the payload. */
  finish(serverEphemeralPublic: Uint8Array, payloadCiphertext: Uint8Array): { transport: NoiseTransport; payload: Uint8Array };
}

/** `-> e, es` with `payload` (no forward secrecy for it: only the realm's static key protects it). */
export function clientHandshake(serverStaticPublic: Uint8Array, payload: Uint8Array, random: RandomSource = systemRandom): ClientHandshake {
  if (serverStaticPublic.length !== 32) throw new NoiseError('a realm public key is 32 bytes');
  const ss = new SymmetricState();
  ss.mixHash(new Uint8Array(0)); // prologue
  ss.mixHash(serverStaticPublic); // <- s
  const e = random(32);
  const ePub = x25519.getPublicKey(e);
  ss.mixHash(ePub); // -> e
  ss.mixKey(dh(e, serverStaticPublic)); // es
  const payloadCiphertext = ss.encryptAndHash(payload);
  let done = false;
  return {
    clientEphemeralPublic: ePub,
    payloadCiphertext,
    finish(serverEphemeralPublic, responseCiphertext) {
      if (done) throw new NoiseError('handshake already finished');
      done = true;
      if (serverEphemeralPublic.length !== 32) throw new NoiseError('a server ephemeral key is 32 bytes');
      ss.mixHash(serverEphemeralPublic); // <- e
      ss.mixKey(dh(e, serverEphemeralPublic)); // ee
      e.fill(0);
      const payload = ss.decryptAndHash(responseCiphertext);
      const [c1, c2] = ss.split();
      return { transport: new NoiseTransport(c1, c2), payload };
    },
  };
}

// ---------------------------------------------------------------- responder (realm)

export interface ServerHandshake {
  /** The client's handshake payload (may be empty). */
  payload: Uint8Array;
  /** `<- e, ee` with the response payload; returns what to send and the transport. */
  respond(payload: Uint8Array): { serverEphemeralPublic: Uint8Array; payloadCiphertext: Uint8Array; transport: NoiseTransport };
}

export function serverHandshake(staticPrivate: Uint8Array, staticPublic: Uint8Array, clientEphemeralPublic: Uint8Array, payloadCiphertext: Uint8Array, random: RandomSource = systemRandom): ServerHandshake {
  if (clientEphemeralPublic.length !== 32) throw new NoiseError('a client ephemeral key is 32 bytes');
  const ss = new SymmetricState();
  ss.mixHash(new Uint8Array(0));
  ss.mixHash(staticPublic);
  ss.mixHash(clientEphemeralPublic);
  ss.mixKey(dh(staticPrivate, clientEphemeralPublic));
  const payload = ss.decryptAndHash(payloadCiphertext);
  let done = false;
  return {
    payload,
    respond(response) {
      if (done) throw new NoiseError('handshake already answered');
      done = true;
      const e = random(32);
      const ePub = x25519.getPublicKey(e);
      ss.mixHash(ePub);
      ss.mixKey(dh(e, clientEphemeralPublic));
      e.fill(0);
      const ct = ss.encryptAndHash(response);
      const [c1, c2] = ss.split();
      return { serverEphemeralPublic: ePub, payloadCiphertext: ct, transport: new NoiseTransport(c2, c1) };
    },
  };
}
