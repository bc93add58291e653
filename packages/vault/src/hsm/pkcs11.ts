// PKCS#11 HSM through pkcs11js (SoftHSM2 in tests and the quick start, real HSMs in production).
// Keys: CKK_AES, 256 bits, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE=true, CKA_EXTRACTABLE=false.
// Seal: CKM_AES_GCM, 96-bit random nonce from the token's RNG, 128-bit tag.

import { createRequire } from 'node:module';
import type * as Pkcs11Types from 'pkcs11js';
import { HsmKeyExistsError, HsmKeyLockedError, HsmKeyNotFoundError, HsmUnavailableError, UnsealFailedError } from '../errors.js';
import { checkLabel, checkPlaintext, GCM_NONCE_BYTES, GCM_TAG_BYTES, type Hsm, type KeyTransport } from './types.js';

const require = createRequire(import.meta.url);

export const DEFAULT_PKCS11_MODULES = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so', '/usr/local/lib/softhsm/libsofthsm2.so'];

/** Where the PKCS#11 token is: module path, token label, user PIN. */
export interface Pkcs11Options {
  /** Path of the PKCS#11 module (.so). */
  module: string;
  /** Label of the token to use. */
  tokenLabel: string;
  /** User PIN. Held only to log in; never logged. */
  pin: string;
}

type P11 = typeof Pkcs11Types;

function loadPkcs11js(): P11 {
  try {
    return require('pkcs11js') as P11;
  } catch (cause) {
    throw new HsmUnavailableError('the pkcs11js native module could not be loaded (npm install-scripts approve pkcs11js, then npm rebuild pkcs11js)', { cause });
  }
}

function isCkr(e: unknown, code: number): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

/** An Hsm on a PKCS#11 token (SoftHSM2 in development, a real HSM in production): keys never leave it unwrapped. */
export class Pkcs11Hsm implements Hsm, KeyTransport {
  readonly kind = 'pkcs11' as const;
  readonly description: string;
  readonly #p: P11;
  readonly #lib: Pkcs11Types.PKCS11;
  readonly #slot: Pkcs11Types.Handle;
  #session: Pkcs11Types.Handle;
  readonly #handles = new Map<string, Pkcs11Types.Handle>();
  #closed = false;

  private constructor(p: P11, lib: Pkcs11Types.PKCS11, slot: Pkcs11Types.Handle, session: Pkcs11Types.Handle, description: string) {
    this.#p = p;
    this.#slot = slot;
    this.#lib = lib;
    this.#session = session;
    this.description = description;
  }

  /** Loads the module, finds the token by label, opens a session and logs in as user. */
  static open(opts: Pkcs11Options): Pkcs11Hsm {
    const p = loadPkcs11js();
    const lib = new p.PKCS11();
    try {
      lib.load(opts.module);
    } catch (cause) {
      throw new HsmUnavailableError(`cannot load PKCS#11 module ${opts.module}`, { cause });
    }
    try {
      lib.C_Initialize();
    } catch (e) {
      if (!isCkr(e, p.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw new HsmUnavailableError('C_Initialize failed', { cause: e });
    }
    let slot: Pkcs11Types.Handle | undefined;
    for (const s of lib.C_GetSlotList(true)) {
      const info = lib.C_GetTokenInfo(s);
      if (info.label.trim() === opts.tokenLabel) {
        slot = s;
        break;
      }
    }
    if (slot === undefined) {
      lib.C_Finalize();
      throw new HsmUnavailableError(`no initialised PKCS#11 token labelled "${opts.tokenLabel}" in ${opts.module}`, {
        hint: 'check --pkcs11-token (list tokens with `softhsm2-util --show-slots` or your vendor tool); for SoftHSM2, SOFTHSM2_CONF must name the softhsm2.conf whose token directory holds the token',
      });
    }
    const session = lib.C_OpenSession(slot, p.CKF_RW_SESSION | p.CKF_SERIAL_SESSION);
    try {
      lib.C_Login(session, p.CKU_USER, opts.pin);
    } catch (e) {
      if (!isCkr(e, p.CKR_USER_ALREADY_LOGGED_IN)) {
        lib.C_CloseSession(session);
        lib.C_Finalize();
        // The PIN itself is never part of the message.
        if (isCkr(e, p.CKR_PIN_LOCKED)) {
          throw new HsmUnavailableError(`login to token "${opts.tokenLabel}" failed: the token's user PIN is locked (too many wrong PINs)`, {
            cause: e,
            hint: "the token's security officer must reset the user PIN (softhsm2-util cannot; with SoftHSM2 use pkcs11-tool --init-pin as SO, or your HSM vendor's tool)",
          });
        }
        if (isCkr(e, p.CKR_PIN_INCORRECT) || isCkr(e, p.CKR_PIN_LEN_RANGE)) {
          throw new HsmUnavailableError(`login to token "${opts.tokenLabel}" failed: wrong user PIN`, {
            cause: e,
            hint: 'check the PIN in $COFFER_VAULT_HSM_PIN (the user PIN, not the SO PIN); each wrong try counts towards the token locking the PIN',
          });
        }
        throw new HsmUnavailableError(`login to token "${opts.tokenLabel}" failed (wrong PIN or locked token)`, { cause: e });
      }
    }
    return new Pkcs11Hsm(p, lib, slot, session, `PKCS#11 token "${opts.tokenLabel}" via ${opts.module}`);
  }

  #find(label: string): Pkcs11Types.Handle | null {
    const cached = this.#handles.get(label);
    if (cached) return cached;
    const p = this.#p;
    this.#lib.C_FindObjectsInit(this.#session, [
      { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
      { type: p.CKA_LABEL, value: label },
    ]);
    const found = this.#lib.C_FindObjects(this.#session, 2);
    this.#lib.C_FindObjectsFinal(this.#session);
    if (found.length > 1) throw new HsmUnavailableError(`more than one key labelled "${label}" on the token; remove the duplicate`);
    const h = found[0] ?? null;
    if (h) this.#handles.set(label, h);
    return h;
  }

  #key(label: string): Pkcs11Types.Handle {
    this.#open();
    const h = this.#find(checkLabel(label));
    if (!h) throw new HsmKeyNotFoundError(label);
    return h;
  }

  #open(): void {
    if (this.#closed) throw new HsmUnavailableError('the PKCS#11 session is closed');
  }

  readonly keyTransport: KeyTransport = this;

  /** Generates a non-extractable AES-256 key. */
  async generateKey(label: string): Promise<void> {
    this.#generate(label, false);
  }

  /**
   * For the realm keys of a multi-node realm (`coffer vault init --multi-node`): still
   * CKA_SENSITIVE (its value is never readable) but CKA_EXTRACTABLE, so it can leave the token
   * only wrapped (`wrapForTransport`) until `lockExport` turns that off for good.
   */
  async generateExportableKey(label: string): Promise<void> {
    this.#generate(label, true);
  }

  #generate(label: string, exportableWrapped: boolean): void {
    this.#open();
    if (this.#find(checkLabel(label))) throw new HsmKeyExistsError(label);
    const p = this.#p;
    const h = this.#lib.C_GenerateKey(this.#session, { mechanism: p.CKM_AES_KEY_GEN }, [
      { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
      { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
      { type: p.CKA_VALUE_LEN, value: 32 },
      { type: p.CKA_LABEL, value: label },
      { type: p.CKA_TOKEN, value: true },
      { type: p.CKA_PRIVATE, value: true },
      { type: p.CKA_SENSITIVE, value: true },
      { type: p.CKA_EXTRACTABLE, value: exportableWrapped },
      { type: p.CKA_ENCRYPT, value: true },
      { type: p.CKA_DECRYPT, value: true },
      { type: p.CKA_WRAP, value: false },
      { type: p.CKA_UNWRAP, value: false },
    ]);
    this.#handles.set(label, h);
  }

  // ------------------------------------------------------------ key ceremony (docs/operating.md)
  //
  // Transport: the receiving token makes an EC P-256 key pair (private half non-extractable,
  // CKA_DERIVE only). The sending token makes an ephemeral P-256 pair as session objects, derives
  // an AES-256 wrapping key with CKM_ECDH1_DERIVE (CKD_NULL: SoftHSM2 2.6 offers no KDF here; the
  // 32-byte x-coordinate is the key) and wraps each realm key with CKM_AES_KEY_WRAP_PAD (RFC 5649).
  // The receiver derives the same key inside its token and unwraps into CKA_EXTRACTABLE=false keys.
  // No key value is ever outside a token in the clear.

  #ecParamsP256(): Buffer {
    return Buffer.from('06082a8648ce3d030107', 'hex'); // OID 1.2.840.10045.3.1.7 (prime256v1)
  }

  /** CKA_EC_POINT is a DER OCTET STRING around the uncompressed point; returns the 65 raw bytes. */
  #rawPoint(der: Buffer): Buffer {
    if (der.length === 65 && der[0] === 0x04) return der;
    if (der.length === 67 && der[0] === 0x04 && der[1] === 65 && der[2] === 0x04) return der.subarray(2);
    throw new HsmUnavailableError('the token returned an EC point in an unexpected encoding');
  }

  #findByClass(cls: number, label: string): Pkcs11Types.Handle | null {
    const p = this.#p;
    this.#lib.C_FindObjectsInit(this.#session, [
      { type: p.CKA_CLASS, value: cls },
      { type: p.CKA_LABEL, value: label },
    ]);
    const found = this.#lib.C_FindObjects(this.#session, 2);
    this.#lib.C_FindObjectsFinal(this.#session);
    return found[0] ?? null;
  }

  /** Makes the receiving token's transport key pair; returns the public point (65 bytes). */
  async createTransportKey(label: string): Promise<Uint8Array> {
    this.#open();
    const p = this.#p;
    checkLabel(label);
    if (this.#findByClass(p.CKO_PRIVATE_KEY, label)) throw new HsmKeyExistsError(label);
    const kp = this.#lib.C_GenerateKeyPair(
      this.#session,
      { mechanism: p.CKM_EC_KEY_PAIR_GEN },
      [
        { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_EC },
        { type: p.CKA_TOKEN, value: true },
        { type: p.CKA_LABEL, value: label },
        { type: p.CKA_EC_PARAMS, value: this.#ecParamsP256() },
      ],
      [
        { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_EC },
        { type: p.CKA_TOKEN, value: true },
        { type: p.CKA_PRIVATE, value: true },
        { type: p.CKA_LABEL, value: label },
        { type: p.CKA_SENSITIVE, value: true },
        { type: p.CKA_EXTRACTABLE, value: false },
        { type: p.CKA_DERIVE, value: true },
      ],
    );
    const pt = this.#lib.C_GetAttributeValue(this.#session, kp.publicKey, [{ type: p.CKA_EC_POINT }])[0]?.value;
    if (!Buffer.isBuffer(pt)) throw new HsmUnavailableError('the token did not return the transport public key');
    return new Uint8Array(this.#rawPoint(pt));
  }

  /** Derives the AES-256 transport wrapping key (a session object) from our EC private key and their point. */
  #deriveTransportKey(privateKey: Pkcs11Types.Handle, peerPoint: Uint8Array, use: 'wrap' | 'unwrap'): Pkcs11Types.Handle {
    const p = this.#p;
    if (peerPoint.length !== 65 || peerPoint[0] !== 0x04) throw new TypeError('transport public key must be an uncompressed P-256 point (65 bytes)');
    return this.#lib.C_DeriveKey(
      this.#session,
      { mechanism: p.CKM_ECDH1_DERIVE, parameter: { type: p.CK_PARAMS_EC_DH, kdf: p.CKD_NULL, publicData: Buffer.from(peerPoint) } as Pkcs11Types.ECDH1 },
      privateKey,
      [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
        { type: p.CKA_VALUE_LEN, value: 32 },
        { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_SENSITIVE, value: true },
        { type: p.CKA_EXTRACTABLE, value: false },
        { type: p.CKA_ENCRYPT, value: false },
        { type: p.CKA_DECRYPT, value: false },
        { type: p.CKA_WRAP, value: use === 'wrap' },
        { type: p.CKA_UNWRAP, value: use === 'unwrap' },
      ],
    );
  }

  #destroy(h: Pkcs11Types.Handle): void {
    try {
      this.#lib.C_DestroyObject(this.#session, h);
    } catch {
      /* session objects go away with the session anyway */
    }
  }

  /** Wraps the labelled keys for the token that owns `recipientPoint`. */
  async wrapForTransport(labels: string[], recipientPoint: Uint8Array): Promise<{ ephemeralPoint: Uint8Array; wrapped: { label: string; wrapped: Uint8Array }[] }> {
    this.#open();
    const p = this.#p;
    const keys = labels.map((l) => ({ label: l, h: this.#key(l) }));
    const eph = this.#lib.C_GenerateKeyPair(
      this.#session,
      { mechanism: p.CKM_EC_KEY_PAIR_GEN },
      [
        { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_EC },
        { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_EC_PARAMS, value: this.#ecParamsP256() },
      ],
      [
        { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_EC },
        { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_SENSITIVE, value: true },
        { type: p.CKA_EXTRACTABLE, value: false },
        { type: p.CKA_DERIVE, value: true },
      ],
    );
    let kek: Pkcs11Types.Handle | null = null;
    try {
      const ephemeralPoint = this.#rawPoint(this.#lib.C_GetAttributeValue(this.#session, eph.publicKey, [{ type: p.CKA_EC_POINT }])[0]!.value as Buffer);
      kek = this.#deriveTransportKey(eph.privateKey, recipientPoint, 'wrap');
      const wrapped = keys.map(({ label, h }) => {
        try {
          return { label, wrapped: new Uint8Array(this.#lib.C_WrapKey(this.#session, { mechanism: p.CKM_AES_KEY_WRAP_PAD }, kek!, h, Buffer.alloc(64))) };
        } catch (cause) {
          throw this.#notExportable(label, h, cause);
        }
      });
      return { ephemeralPoint: new Uint8Array(ephemeralPoint), wrapped };
    } finally {
      if (kek) this.#destroy(kek);
      this.#destroy(eph.privateKey);
      this.#destroy(eph.publicKey);
    }
  }

  /** Why a realm key would not wrap: locked by `hsm lock-export`, made without --multi-node, or something else. */
  #notExportable(label: string, h: Pkcs11Types.Handle, cause: unknown): Error {
    const p = this.#p;
    let a: { extractable: boolean; neverExtractable: boolean } | null = null;
    try {
      const attrs = this.#lib.C_GetAttributeValue(this.#session, h, [{ type: p.CKA_EXTRACTABLE }, { type: p.CKA_NEVER_EXTRACTABLE }]);
      const bool = (v: unknown) => (Buffer.isBuffer(v) ? v[0] === 1 : v === true);
      a = { extractable: bool(attrs[0]?.value), neverExtractable: bool(attrs[1]?.value) };
    } catch {
      /* fall through to the general message */
    }
    if (a && !a.extractable && !a.neverExtractable) {
      return new HsmKeyLockedError(`the realm keys on this token are locked: \`coffer vault hsm lock-export\` was run, so key "${label}" can no longer be exported`, {
        cause,
        hint: 'locking is one-way: add the node from a spare token that received the realm keys before the lock, or create a new realm (users re-register)',
      });
    }
    if (a && !a.extractable) {
      return new HsmKeyLockedError(`key "${label}" was made without --multi-node: it can never leave this token`, {
        cause,
        hint: 'a realm for several nodes is made with `coffer vault init --multi-node`; this realm stays on one node',
      });
    }
    return new HsmUnavailableError(`the token refused to wrap key "${label}"`, { cause });
  }

  /** Unwraps keys made by wrapForTransport into non-extractable token keys; then destroys the transport key pair. */
  async unwrapFromTransport(transportLabel: string, ephemeralPoint: Uint8Array, wrapped: { label: string; wrapped: Uint8Array }[]): Promise<void> {
    this.#open();
    const p = this.#p;
    const priv = this.#findByClass(p.CKO_PRIVATE_KEY, checkLabel(transportLabel));
    if (!priv) throw new HsmKeyNotFoundError(transportLabel);
    for (const w of wrapped) if (this.#find(checkLabel(w.label))) throw new HsmKeyExistsError(w.label);
    const kek = this.#deriveTransportKey(priv, ephemeralPoint, 'unwrap');
    try {
      for (const w of wrapped) {
        let h: Pkcs11Types.Handle;
        try {
          h = this.#lib.C_UnwrapKey(this.#session, { mechanism: p.CKM_AES_KEY_WRAP_PAD }, kek, Buffer.from(w.wrapped), [
            { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
            { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
            { type: p.CKA_LABEL, value: w.label },
            { type: p.CKA_TOKEN, value: true },
            { type: p.CKA_PRIVATE, value: true },
            { type: p.CKA_SENSITIVE, value: true },
            { type: p.CKA_EXTRACTABLE, value: false },
            { type: p.CKA_ENCRYPT, value: true },
            { type: p.CKA_DECRYPT, value: true },
            { type: p.CKA_WRAP, value: false },
            { type: p.CKA_UNWRAP, value: false },
          ]);
        } catch (cause) {
          throw new UnsealFailedError(`wrapped key "${w.label}" (not made for this token's transport key)`, { cause });
        }
        this.#handles.set(w.label, h);
      }
    } finally {
      this.#destroy(kek);
    }
  }

  /** Destroys the transport key pair (after a successful import, or to abandon a ceremony). */
  async destroyTransportKey(label: string): Promise<void> {
    const p = this.#p;
    for (const cls of [p.CKO_PRIVATE_KEY, p.CKO_PUBLIC_KEY]) {
      const h = this.#findByClass(cls, checkLabel(label));
      if (h) this.#lib.C_DestroyObject(this.#session, h);
    }
  }

  /** Makes a key non-extractable for good (CKA_EXTRACTABLE true -> false is one-way in PKCS#11). */
  async lockExport(label: string): Promise<void> {
    this.#lib.C_SetAttributeValue(this.#session, this.#key(label), [{ type: this.#p.CKA_EXTRACTABLE, value: false }]);
  }

  async hasKey(label: string): Promise<boolean> {
    this.#open();
    return this.#find(checkLabel(label)) !== null;
  }

  /** Attributes that prove the key cannot leave the token (used by tests and `vault init`). */
  async keyAttributes(label: string): Promise<{ extractable: boolean; sensitive: boolean; neverExtractable: boolean }> {
    const p = this.#p;
    const attrs = this.#lib.C_GetAttributeValue(this.#session, this.#key(label), [
      { type: p.CKA_EXTRACTABLE },
      { type: p.CKA_SENSITIVE },
      { type: p.CKA_NEVER_EXTRACTABLE },
    ]);
    const bool = (i: number): boolean => {
      const v = attrs[i]?.value;
      return Buffer.isBuffer(v) ? v[0] === 1 : v === true;
    };
    return { extractable: bool(0), sensitive: bool(1), neverExtractable: bool(2) };
  }

  /** Tries to read CKA_VALUE; returns true only if the token hands it out (it must not). */
  async tryReadKeyValue(label: string): Promise<boolean> {
    try {
      const a = this.#lib.C_GetAttributeValue(this.#session, this.#key(label), [{ type: this.#p.CKA_VALUE }]);
      const v = a[0]?.value;
      return Buffer.isBuffer(v) && v.length > 0;
    } catch {
      return false;
    }
  }

  #gcm(nonce: Buffer, aad: Uint8Array): Pkcs11Types.Mechanism {
    const p = this.#p;
    return {
      mechanism: p.CKM_AES_GCM,
      parameter: { type: p.CK_PARAMS_AES_GCM_v240, iv: nonce, ivBits: GCM_NONCE_BYTES * 8, aad: Buffer.from(aad), tagBits: GCM_TAG_BYTES * 8 } as Pkcs11Types.AesGCM,
    };
  }

  /**
   * After a failed C_Encrypt/C_Decrypt some modules leave the operation active (there is no
   * C_SessionCancel before PKCS#11 3.0): replace the session. The login survives because it
   * belongs to the application, and another session stays open while we swap.
   */
  #resetSession(): void {
    const fresh = this.#lib.C_OpenSession(this.#slot, this.#p.CKF_RW_SESSION | this.#p.CKF_SERIAL_SESSION);
    try {
      this.#lib.C_CloseSession(this.#session);
    } catch {
      /* already gone */
    }
    this.#session = fresh;
  }

  async probe(): Promise<void> {
    this.#open();
    try {
      this.#lib.C_GenerateRandom(this.#session, Buffer.alloc(1));
    } catch (cause) {
      this.#resetSession();
      throw new HsmUnavailableError('the HSM did not answer the readiness probe', { cause });
    }
  }

  async seal(label: string, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const key = this.#key(label);
    checkPlaintext(plaintext);
    try {
      const nonce = this.#lib.C_GenerateRandom(this.#session, Buffer.alloc(GCM_NONCE_BYTES));
      this.#lib.C_EncryptInit(this.#session, this.#gcm(nonce, aad), key);
      const out = this.#lib.C_Encrypt(this.#session, Buffer.from(plaintext), Buffer.alloc(plaintext.length + GCM_TAG_BYTES + 16));
      return new Uint8Array(Buffer.concat([nonce, out]));
    } catch (cause) {
      this.#resetSession();
      throw new HsmUnavailableError('the HSM failed to seal', { cause });
    }
  }

  async unseal(label: string, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const key = this.#key(label);
    if (sealed.length < GCM_NONCE_BYTES + GCM_TAG_BYTES) throw new UnsealFailedError('sealed data (too short)');
    const nonce = Buffer.from(sealed.subarray(0, GCM_NONCE_BYTES));
    const ct = Buffer.from(sealed.subarray(GCM_NONCE_BYTES));
    try {
      this.#lib.C_DecryptInit(this.#session, this.#gcm(nonce, aad), key);
      const out = this.#lib.C_Decrypt(this.#session, ct, Buffer.alloc(ct.length));
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    } catch (e) {
      this.#resetSession();
      // SoftHSM2 reports a failed GCM tag check as CKR_GENERAL_ERROR; real HSMs use
      // CKR_ENCRYPTED_DATA_INVALID or CKR_AEAD_DECRYPT_FAILED. All mean the same to us.
      throw new UnsealFailedError('sealed data', { cause: e });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#lib.C_Logout(this.#session);
    } catch {
      /* already logged out */
    }
    this.#lib.C_CloseSession(this.#session);
    this.#lib.C_Finalize();
  }
}
