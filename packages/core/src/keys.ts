/** The key hierarchy: spec/keys.md. */
import { equalBytes, fromHex, toHex, utf8, wipe } from './bytes.js';
import type { CryptoProvider } from './crypto.js';
import { UsageError, WrongKeyError } from './errors.js';

/** The length of a backup key K in bytes (spec/keys.md §1). */
export const KEY_BYTES = 32;

const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

/** A secret that never prints: toString, JSON and util.inspect all show `[redacted]` (keys.md §5). */
export class SecretKey {
  readonly #bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_BYTES) throw new TypeError(`a key is ${KEY_BYTES} bytes`);
    this.#bytes = Uint8Array.from(bytes);
  }
  /** The raw bytes. Callers must not log or persist them outside sealed form. */
  expose(): Uint8Array {
    return this.#bytes;
  }
  wipe(): void {
    wipe(this.#bytes);
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspectSymbol](): string {
    return 'SecretKey [redacted]';
  }
}

/** §1: a fresh backup key K from the provider's CSPRNG. */
export function generateBackupKey(crypto: CryptoProvider): SecretKey {
  const raw = crypto.randomBytes(KEY_BYTES);
  const k = new SecretKey(raw);
  wipe(raw);
  return k;
}

/** §4: K as 64 upper-case hexadecimal digits in 16 groups of 4. */
export function formatRecoveryKey(key: SecretKey): string {
  return toHex(key.expose()).toUpperCase().match(/.{4}/g)!.join(' ');
}

/** §4: accepts any case, spaces, dashes and line breaks; names the problem without echoing digits. */
export function parseRecoveryKey(text: string): SecretKey {
  const cleaned = text.replace(/[\s-]/g, '');
  const bad = /[^0-9a-fA-F]/.exec(cleaned);
  if (bad) {
    throw new UsageError(
      `the recovery key may only contain the digits 0-9 and letters A-F; character ${bad.index + 1} is not one of them`,
      'type the 64-digit recovery key exactly as it was shown; spaces and dashes are ignored',
    );
  }
  if (cleaned.length !== 64) {
    throw new UsageError(
      `a recovery key has 64 digits; ${cleaned.length} were given`,
      'type the 64-digit recovery key exactly as it was shown; spaces and dashes are ignored',
    );
  }
  const raw = fromHex(cleaned);
  const k = new SecretKey(raw);
  wipe(raw);
  return k;
}

/** The keys derived from K (§2). */
export interface DerivedKeys {
  readonly objectId: Uint8Array;
  readonly objectEncryption: Uint8Array;
  readonly manifestEncryption: Uint8Array;
  readonly bindingTag: Uint8Array;
  readonly keyCheck: Uint8Array;
  /** format.md §2 (version 2): the config's MAC. */
  readonly configMac: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const label = (l: string): Uint8Array => utf8(`coffer v1 ${l}`);

/** §2: HKDF-SHA256 with an empty salt and a distinct label per key. */
export async function deriveKeys(crypto: CryptoProvider, key: SecretKey): Promise<DerivedKeys> {
  const k = key.expose();
  const d = (l: string) => crypto.hkdfSha256(k, EMPTY, label(l), 32);
  const [objectId, objectEncryption, manifestEncryption, bindingTag, keyCheck, configMac] = await Promise.all([
    d('object-id'),
    d('object-encryption'),
    d('manifest-encryption'),
    d('binding-tag'),
    d('key-check'),
    d('config-mac'),
  ]);
  return { objectId, objectEncryption, manifestEncryption, bindingTag, keyCheck, configMac } as DerivedKeys;
}

/** §3: the key-check value for a repository. */
export async function keyCheckValue(crypto: CryptoProvider, keys: DerivedKeys, backupId: Uint8Array): Promise<Uint8Array> {
  const msg = new Uint8Array(19 + backupId.length);
  msg.set(utf8('coffer v1 key-check'));
  msg.set(backupId, 19);
  return crypto.hmacSha256(keys.keyCheck, msg);
}

/** §3: throws WrongKeyError unless `keys` match the stored key-check value (constant time). */
export async function checkKey(crypto: CryptoProvider, keys: DerivedKeys, backupId: Uint8Array, stored: Uint8Array): Promise<void> {
  const mine = await keyCheckValue(crypto, keys, backupId);
  if (!equalBytes(mine, stored)) throw new WrongKeyError();
}
