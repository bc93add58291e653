// The HSM boundary's key interface (ARCHITECTURE.md: small interface, one conformance suite).

export type HsmKind = 'pkcs11' | 'software-development-only';

/**
 * A holder of non-extractable AES-256 keys, addressed by label.
 * seal/unseal are AES-256-GCM with a random 96-bit nonce: output is nonce(12) || ciphertext || tag(16).
 * Plaintexts are 1 byte to 1 MiB (some PKCS#11 modules reject empty input).
 * unseal throws UnsealFailedError on any authentication failure; it never returns unauthenticated data.
 */
export interface Hsm {
  readonly kind: HsmKind;
  /** Human-readable description, e.g. the module and token label. No secrets. */
  readonly description: string;
  /** Generates a new non-extractable AES-256 key. Throws HsmKeyExistsError if the label is taken. */
  generateKey(label: string): Promise<void>;
  hasKey(label: string): Promise<boolean>;
  /**
   * Readiness: resolves if the HSM answers (PKCS#11: C_GenerateRandom on the session), rejects
   * otherwise. Uses no key, so it spends no key's nonce budget however often it is called.
   */
  probe(): Promise<void>;
  seal(label: string, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  unseal(label: string, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;

const LABEL_RE = /^[A-Za-z0-9._-]{1,64}$/;
export function checkLabel(label: string): string {
  if (typeof label !== 'string' || !LABEL_RE.test(label)) throw new TypeError('HSM key label must be 1-64 characters of [A-Za-z0-9._-]');
  return label;
}

export const MAX_SEAL_BYTES = 1 << 20;
export function checkPlaintext(p: Uint8Array): void {
  if (!(p instanceof Uint8Array) || p.length === 0 || p.length > MAX_SEAL_BYTES) throw new RangeError('HSM plaintext must be 1 byte to 1 MiB');
}
