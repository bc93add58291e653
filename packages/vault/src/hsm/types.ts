// The HSM boundary's key interface (ARCHITECTURE.md: small interface, one conformance suite).

/** What kind of HSM a realm runs on: PKCS#11 (SoftHSM2 or a real HSM) or the development-only software HSM. */
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
  /** Present when the HSM can copy keys to another token, only ever wrapped (PKCS#11). */
  readonly keyTransport?: KeyTransport;
}

/**
 * Key transport between tokens for the multi-node key ceremony (docs/operating.md §1.4; the
 * sequence is in ceremony.ts). No key value is ever outside a token in the clear.
 */
export interface KeyTransport {
  /** Like Hsm.generateKey, but the key may leave the token wrapped (until lockExport). Still never readable. */
  generateExportableKey(label: string): Promise<void>;
  /** Receiving token: makes a transport key pair; returns its public point. */
  createTransportKey(label: string): Promise<Uint8Array>;
  /** Sending token: wraps the labelled keys for the token that owns `recipientPoint`. */
  wrapForTransport(labels: string[], recipientPoint: Uint8Array): Promise<{ ephemeralPoint: Uint8Array; wrapped: { label: string; wrapped: Uint8Array }[] }>;
  /** Receiving token: unwraps into keys that can never leave it. */
  unwrapFromTransport(transportLabel: string, ephemeralPoint: Uint8Array, wrapped: { label: string; wrapped: Uint8Array }[]): Promise<void>;
  destroyTransportKey(label: string): Promise<void>;
  /** Makes a key non-exportable for good (one-way). */
  lockExport(label: string): Promise<void>;
  keyAttributes(label: string): Promise<{ extractable: boolean; sensitive: boolean; neverExtractable: boolean }>;
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
