// The SDK's Configuration, checked once at the edge (spec/juicebox.md §10), and the guess bound
// of several realms (§6.3).

import { fromHex, toHex } from '../bytes.js';
import { InvalidVaultConfigError } from '../vault/errors.js';
import { INSECURE_TEST_ONLY_FAST_PIN_HASHING, STANDARD_2019, type PinHashingMode } from './pin.js';

/** One realm of a Juicebox configuration: id, address and public key. */
export interface RealmConfig {
  /** 16 bytes. */
  id: Uint8Array;
  /** Base URL; requests go to `new URL('req', address)`, as the SDK's `Url::join` (so it should end in `/`). */
  address: string;
  /** The realm's X25519 key (hardware-realm wire), or null (software-realm wire). */
  publicKey: Uint8Array | null;
}

/** A checked configuration: realms sorted by id (their share index is position + 1). */
export interface JuiceboxConfiguration {
  realms: readonly RealmConfig[];
  registerThreshold: number;
  recoverThreshold: number;
  pinHashingMode: PinHashingMode;
}

function bad(message: string): never {
  throw new InvalidVaultConfigError(`realm configuration: ${message}`);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Checks the SDK's Configuration JSON shape (snake_case) and returns it sorted by realm id. */
export function parseConfiguration(input: unknown): JuiceboxConfiguration {
  const c = (typeof input === 'string' ? (() => {
    try {
      return JSON.parse(input) as unknown;
    } catch {
      return bad('not JSON');
    }
  })() : input) as Record<string, unknown> | null;
  if (typeof c !== 'object' || c === null) bad('expected an object with realms, register_threshold, recover_threshold, pin_hashing_mode');
  const realmsIn = c['realms'];
  if (!Array.isArray(realmsIn) || realmsIn.length < 1 || realmsIn.length > 255) bad('realms must be a list of 1 to 255 realms');
  const realms = realmsIn.map((r: unknown, i): RealmConfig => {
    const o = r as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null) bad(`realm ${i + 1} is not an object`);
    const id = typeof o['id'] === 'string' ? o['id'].replace(/-/g, '') : '';
    if (!/^[0-9a-fA-F]{32}$/.test(id)) bad(`realm ${i + 1}: id must be 16 bytes in hex`);
    const address = o['address'];
    let url: URL;
    try {
      url = new URL(String(address));
    } catch {
      return bad(`realm ${i + 1}: address is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') bad(`realm ${i + 1}: address must be http:// or https://`);
    const pk = o['public_key'] ?? null;
    if (pk !== null && (typeof pk !== 'string' || !/^[0-9a-fA-F]{64}$/.test(pk))) bad(`realm ${i + 1}: public_key must be 32 bytes in hex, or null`);
    return { id: fromHex(id), address: url.href, publicKey: pk === null ? null : fromHex(pk as string) };
  });
  const ids = new Set(realms.map((r) => toHex(r.id)));
  if (ids.size !== realms.length) bad('realm ids must be distinct');
  const n = realms.length;
  const reg = c['register_threshold'];
  const rec = c['recover_threshold'];
  if (typeof rec !== 'number' || !Number.isInteger(rec) || rec < 1 || rec > n || rec <= n / 2) bad(`recover_threshold must be a majority of the ${n} realms (more than ${n / 2}, at most ${n})`);
  if (typeof reg !== 'number' || !Number.isInteger(reg) || reg < rec || reg > n) bad(`register_threshold must be from recover_threshold (${rec}) to the number of realms (${n})`);
  const mode = c['pin_hashing_mode'];
  if (mode !== STANDARD_2019 && mode !== INSECURE_TEST_ONLY_FAST_PIN_HASHING) bad('pin_hashing_mode must be "Standard2019" (or "FastInsecure" in tests)');
  realms.sort((a, b) => compareBytes(a.id, b.id));
  return { realms, registerThreshold: reg, recoverThreshold: rec, pinHashingMode: mode };
}

/** Back to the SDK's JSON shape (for profiles and the official SDK). */
export function configurationToJson(c: JuiceboxConfiguration): { realms: { id: string; address: string; public_key: string | null }[]; register_threshold: number; recover_threshold: number; pin_hashing_mode: PinHashingMode } {
  return {
    realms: c.realms.map((r) => ({ id: toHex(r.id), address: r.address, public_key: r.publicKey ? toHex(r.publicKey) : null })),
    register_threshold: c.registerThreshold,
    recover_threshold: c.recoverThreshold,
    pin_hashing_mode: c.pinHashingMode,
  };
}

/**
 * The most password tests an attacker gets who controls (or rolls back at will) `compromised`
 * realms, when each of `n` realms allows `perRealm` guesses and `threshold` must answer:
 * ⌊(n − k)·G / (t − k)⌋ (spec/juicebox.md §6.3). `Infinity` once k ≥ t (offline attack).
 */
export function guessBound(n: number, threshold: number, perRealm: number, compromised = threshold - 1): number {
  if (compromised >= threshold) return Infinity;
  return Math.floor(((n - compromised) * perRealm) / (threshold - compromised));
}

/** The largest per-realm limit G that keeps the bound at or below the account's limit (0 if none does). */
export function perRealmLimitFor(n: number, threshold: number, accountLimit: number): number {
  return Math.floor(accountLimit / (n - threshold + 1));
}
