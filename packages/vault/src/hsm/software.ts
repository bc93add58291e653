// DEVELOPMENT ONLY: an "HSM" that keeps AES keys in a file. Anyone who can read the file can read
// every record. It exists so the vault runs where no PKCS#11 module is installed.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { HsmKeyExistsError, HsmKeyNotFoundError, HsmUnavailableError, UnsealFailedError } from '../errors.js';
import { checkLabel, checkPlaintext, GCM_NONCE_BYTES, GCM_TAG_BYTES, type Hsm } from './types.js';

/** The warning every use of the software HSM prints. */
export const SOFTWARE_HSM_WARNING =
  'WARNING: using the SOFTWARE HSM (development only): realm keys are in a plain file on disk and protect nothing against anyone who can read it. Install SoftHSM2 or configure a PKCS#11 HSM for anything real.';

interface KeyFile {
  format: 'coffer-software-hsm-development-only-v1';
  keys: Record<string, string>;
}

/** A software stand-in for an HSM whose key sits in a file: for development only, and loudly named so. */
export class SoftwareHsmDevelopmentOnly implements Hsm {
  readonly kind = 'software-development-only' as const;
  readonly description: string;
  readonly #path: string;
  readonly #keys = new Map<string, Buffer>();
  #closed = false;

  private constructor(path: string) {
    this.#path = path;
    this.description = `software HSM (DEVELOPMENT ONLY) key file ${path}`;
  }

  /** Opens (or creates) the key file. `warn` receives the loud development-only warning. */
  static open(path: string, warn: (message: string) => void = (m) => process.stderr.write(m + '\n')): SoftwareHsmDevelopmentOnly {
    warn(SOFTWARE_HSM_WARNING);
    const h = new SoftwareHsmDevelopmentOnly(path);
    if (existsSync(path)) {
      const j = JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
      if (j.format !== 'coffer-software-hsm-development-only-v1') throw new TypeError(`${path} is not a Coffer software HSM key file`);
      for (const [label, k] of Object.entries(j.keys)) h.#keys.set(label, Buffer.from(k, 'base64url'));
    }
    return h;
  }

  #persist(): void {
    mkdirSync(dirname(this.#path), { recursive: true, mode: 0o700 });
    const j: KeyFile = { format: 'coffer-software-hsm-development-only-v1', keys: {} };
    for (const [label, k] of this.#keys) j.keys[label] = k.toString('base64url');
    const tmp = `${this.#path}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(j, null, 2) + '\n', { mode: 0o600 });
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.#path);
  }

  #key(label: string): Buffer {
    const k = this.#keys.get(checkLabel(label));
    if (!k) throw new HsmKeyNotFoundError(label);
    return k;
  }

  async generateKey(label: string): Promise<void> {
    if (this.#keys.has(checkLabel(label))) throw new HsmKeyExistsError(label);
    this.#keys.set(label, randomBytes(32));
    this.#persist();
  }

  async hasKey(label: string): Promise<boolean> {
    return this.#keys.has(checkLabel(label));
  }

  async probe(): Promise<void> {
    if (this.#closed) throw new HsmUnavailableError('the software HSM is closed');
  }

  async seal(label: string, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const key = this.#key(label);
    checkPlaintext(plaintext);
    const nonce = randomBytes(GCM_NONCE_BYTES);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return new Uint8Array(Buffer.concat([nonce, ct, c.getAuthTag()]));
  }

  async unseal(label: string, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const key = this.#key(label);
    if (sealed.length < GCM_NONCE_BYTES + GCM_TAG_BYTES) throw new UnsealFailedError('sealed data (too short)');
    try {
      const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, GCM_NONCE_BYTES));
      d.setAAD(aad);
      d.setAuthTag(sealed.subarray(sealed.length - GCM_TAG_BYTES));
      const pt = Buffer.concat([d.update(sealed.subarray(GCM_NONCE_BYTES, sealed.length - GCM_TAG_BYTES)), d.final()]);
      return new Uint8Array(pt.buffer, pt.byteOffset, pt.length);
    } catch (cause) {
      throw new UnsealFailedError('sealed data', { cause });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const k of this.#keys.values()) k.fill(0);
    this.#keys.clear();
  }
}
