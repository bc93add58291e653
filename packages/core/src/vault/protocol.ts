// Coffer vault wire protocol v1, shared by client and server.
// Normative text: spec/vault-protocol.md. Section numbers below refer to it.
// Isomorphic: WebCrypto, @hpke/core and @serenity-kit/opaque only.

import {
  Aes256Gcm,
  CipherSuite,
  DhkemX25519HkdfSha256,
  HkdfSha256,
} from '@hpke/core';

/** The vault protocol version this code speaks (spec/vault-protocol.md). */
export const PROTOCOL_VERSION = 1;
export const PROTOCOL_LABEL = 'coffer-vault-v1';
export const REALM_KEY_PREFIX = 'coffer-realm-v1:';
/** Request body limit enforced by the front end (§5). */
export const MAX_REQUEST_BYTES = 16 * 1024;
/** Plaintext padding block (§6.1). */
export const PAD_BLOCK = 1024;
/** Allowed clock difference for request timestamps (§6.2). */
export const REQUEST_MAX_SKEW_MS = 120_000;
export const WIRE_VERSION_BYTE = 0x01;
export const ENC_BYTES = 32;
export const RESPONSE_NONCE_BYTES = 32;
/** Wrong passwords a vault allows by default before it destroys the key (§7.2). */
export const DEFAULT_MAX_ATTEMPTS = 10;
export const VAULT_PATH = '/v1/vault';
export const RECORD_FORMAT = 1;

export type VaultOp =
  | 'register-start'
  | 'register-finish'
  | 'login-start'
  | 'login-finish'
  | 'delete'
  | 'status';

export const VAULT_OPS: readonly VaultOp[] = [
  'register-start',
  'register-finish',
  'login-start',
  'login-finish',
  'delete',
  'status',
];

export interface InnerRequest {
  v: 1;
  op: VaultOp;
  id: string;
  ts: number;
  realm: string;
  account: string;
  body: Record<string, unknown>;
}

/** The `status` values of inner responses (§6.3, §7). */
export const RESPONSE_STATUSES = ['ok', 'wrong-password', 'destroyed', 'not-registered', 'ticket-expired', 'conflict', 'invalid'] as const;

/** One of {@link RESPONSE_STATUSES}. */
export type ResponseStatus = (typeof RESPONSE_STATUSES)[number];

export interface InnerResponse {
  v: 1;
  id: string;
  status: ResponseStatus;
  [field: string]: unknown;
}

/**
 * The error codes of unencrypted (non-200) answers, §5: the one list the server sends from and the
 * client reads (a test checks it against the spec's list). Bodies are `{"error", "message", "hint"?}`.
 */
export const VAULT_ERROR_CODES = [
  'malformed-request',
  'undecryptable-request',
  'stale-request',
  'replayed-request',
  'account-mismatch',
  'unauthorized',
  'too-large',
  'rate-limited',
  'unavailable',
  'record-unreadable',
  'internal',
] as const;

/** One of {@link VAULT_ERROR_CODES}. */
export type VaultErrorCode = (typeof VAULT_ERROR_CODES)[number];

/** The body of a non-200 answer (§5). */
export interface VaultErrorBody {
  error: VaultErrorCode;
  message: string;
  hint?: string;
}

// ---------------------------------------------------------------- bytes

export { concat, fromUtf8, utf8 } from '../bytes.js';
import { concat, fromUtf8, utf8 } from '../bytes.js';

/** 2-byte big-endian length prefix, §2. */
export function lp(x: Uint8Array | string): Uint8Array<ArrayBuffer> {
  const b = typeof x === 'string' ? utf8(x) : x;
  if (b.length > 0xffff) throw new RangeError('lp: value longer than 65535 bytes');
  return concat(new Uint8Array([b.length >> 8, b.length & 0xff]), b);
}

export { u64be } from '../bytes.js';

/** A copy backed by a plain ArrayBuffer (what WebCrypto's types want). */
export function own(b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

export function b64u(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromB64u(s: string): Uint8Array<ArrayBuffer> {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) {
    throw new TypeError('not base64url');
  }
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** Constant-time equality for equal-length secrets (length itself is not secret). */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

// ---------------------------------------------------------------- padding, §6.1

export function pad(p: Uint8Array): Uint8Array<ArrayBuffer> {
  const total = Math.ceil((p.length + 4) / PAD_BLOCK) * PAD_BLOCK;
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, p.length);
  out.set(p, 4);
  return out;
}

export function unpad(p: Uint8Array): Uint8Array {
  if (p.length < 4 || p.length % PAD_BLOCK !== 0) throw new RangeError('bad padding');
  const n = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
  if (n > p.length - 4) throw new RangeError('bad padding');
  for (let i = 4 + n; i < p.length; i++) if (p[i] !== 0) throw new RangeError('bad padding');
  return p.subarray(4, 4 + n);
}

// ---------------------------------------------------------------- realm key, §3

/** A parsed realm public key (§3): the realm id and its HPKE public key. */
export interface RealmPublicKey {
  realmId: Uint8Array;
  realmIdText: string;
  publicKey: Uint8Array;
  /** The printable form, `coffer-realm-v1:...`. */
  text: string;
}

/** The printable form of a realm public key, `coffer-realm-v1:...` (§3). */
export function formatRealmPublicKey(realmId: Uint8Array, publicKey: Uint8Array): string {
  if (realmId.length !== 16 || publicKey.length !== 32) throw new RangeError('realm id must be 16 bytes and public key 32 bytes');
  return REALM_KEY_PREFIX + b64u(concat(realmId, publicKey));
}

/** Parses a realm public key string; throws TypeError naming what is wrong. */
export function parseRealmPublicKey(text: string): RealmPublicKey {
  const t = typeof text === 'string' ? text.trim() : '';
  if (!t.startsWith(REALM_KEY_PREFIX)) {
    throw new TypeError(`realm public key must start with "${REALM_KEY_PREFIX}"`);
  }
  let raw: Uint8Array;
  try {
    raw = fromB64u(t.slice(REALM_KEY_PREFIX.length));
  } catch {
    throw new TypeError('realm public key is not valid base64url after the prefix');
  }
  if (raw.length !== 48) throw new TypeError('realm public key must encode 48 bytes (realm id and X25519 key)');
  const realmId = raw.slice(0, 16);
  return { realmId, realmIdText: b64u(realmId), publicKey: raw.slice(16), text: t };
}

// ---------------------------------------------------------------- HPKE channel, §6

export function hpkeSuite(): CipherSuite {
  return new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Aes256Gcm(),
  });
}

export function requestInfo(realmId: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(utf8(`${PROTOCOL_LABEL} request`), new Uint8Array([0]), realmId);
}

export function requestAad(realmId: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(new Uint8Array([WIRE_VERSION_BYTE]), realmId);
}

/** Anything that can export a secret: an HPKE sender or recipient context. */
export interface Exporter {
  export(exporterContext: ArrayBufferLike | ArrayBufferView, length: number): Promise<ArrayBuffer>;
}

async function responseKey(
  ctx: Exporter,
  enc: Uint8Array,
  nonceR: Uint8Array,
): Promise<{ key: CryptoKey; nonce: Uint8Array<ArrayBuffer> }> {
  const secret = new Uint8Array(await ctx.export(utf8(`${PROTOCOL_LABEL} response`), 32));
  const ikm = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  secret.fill(0);
  const salt = concat(enc, nonceR);
  const keyBits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: utf8('key') }, ikm, 256);
  const nonceBits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: utf8('nonce') }, ikm, 96);
  const key = await crypto.subtle.importKey('raw', keyBits, 'AES-GCM', false, ['encrypt', 'decrypt']);
  new Uint8Array(keyBits).fill(0);
  return { key, nonce: new Uint8Array(nonceBits) };
}

/** Injected randomness, for test vectors only (STYLE.md 4); omit it everywhere else. */
export interface FixedRandomness {
  nonce?: Uint8Array;
}

/** Server side: encrypts a response to the holder of the request's HPKE context (§6.3). */
export async function sealResponse(ctx: Exporter, enc: Uint8Array, response: InnerResponse, fixed: FixedRandomness = {}): Promise<Uint8Array<ArrayBuffer>> {
  const nonceR = fixed.nonce ? own(fixed.nonce) : randomBytes(RESPONSE_NONCE_BYTES);
  if (nonceR.length !== RESPONSE_NONCE_BYTES) throw new RangeError('response nonce must be 32 bytes');
  const { key, nonce } = await responseKey(ctx, enc, nonceR);
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce }, key, pad(utf8(JSON.stringify(response))));
  return concat(nonceR, new Uint8Array(ct));
}

/** Client side: opens a response; throws if it was not made for this request. */
export async function openResponse(ctx: Exporter, enc: Uint8Array, body: Uint8Array): Promise<InnerResponse> {
  if (body.length < RESPONSE_NONCE_BYTES + 16 + PAD_BLOCK) throw new RangeError('response too short');
  const { key, nonce } = await responseKey(ctx, enc, body.subarray(0, RESPONSE_NONCE_BYTES));
  const pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce }, key, own(body.subarray(RESPONSE_NONCE_BYTES)));
  const parsed: unknown = JSON.parse(fromUtf8(unpad(new Uint8Array(pt))));
  if (!isRecord(parsed) || parsed['v'] !== 1 || typeof parsed['id'] !== 'string' || typeof parsed['status'] !== 'string') {
    throw new TypeError('response does not follow protocol v1');
  }
  return parsed as InnerResponse;
}

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Client side: seals one request (§6.1). Returns the body and the context to open the answer. */
export async function sealRequest(
  realm: RealmPublicKey,
  inner: InnerRequest,
): Promise<{ body: Uint8Array<ArrayBuffer>; context: Exporter; enc: Uint8Array<ArrayBuffer> }> {
  return sealRequestPlaintext(realm, utf8(JSON.stringify(inner)));
}

/**
 * Seals exact plaintext bytes (before padding). `ekm`, the ephemeral key material of RFC 9180
 * DeriveKeyPair, is for test vectors only.
 */
export async function sealRequestPlaintext(
  realm: RealmPublicKey,
  plaintext: Uint8Array,
  fixed: { ekm?: Uint8Array } = {},
): Promise<{ body: Uint8Array<ArrayBuffer>; context: Exporter; enc: Uint8Array<ArrayBuffer> }> {
  const suite = hpkeSuite();
  const recipientPublicKey = await suite.kem.deserializePublicKey(own(realm.publicKey));
  const sender = await suite.createSenderContext({ recipientPublicKey, info: requestInfo(realm.realmId), ...(fixed.ekm ? { ekm: own(fixed.ekm) } : {}) });
  const ct = await sender.seal(pad(plaintext), requestAad(realm.realmId));
  const enc = new Uint8Array(sender.enc);
  return { body: concat(new Uint8Array([WIRE_VERSION_BYTE]), enc, new Uint8Array(ct)), context: sender, enc };
}

// ---------------------------------------------------------------- key wrapping, §7.2 and §7.4

async function hkdfAesKey(ikm: Uint8Array, info: string, usages: KeyUsage[]): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey('raw', own(ikm), 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: utf8(`${PROTOCOL_LABEL} ${info}`) },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    usages,
  );
}

export function wrappedKeyAad(realmIdText: string, account: string): Uint8Array<ArrayBuffer> {
  return concat(utf8(`${PROTOCOL_LABEL} wrapped-key`), lp(realmIdText), lp(account), new Uint8Array([RECORD_FORMAT]));
}

export const WRAPPED_KEY_BYTES = 12 + 32 + 16;

/** Wraps K under a key derived from the OPAQUE export key. */
export async function wrapBackupKey(exportKey: Uint8Array, realmIdText: string, account: string, backupKey: Uint8Array, fixed: FixedRandomness = {}): Promise<Uint8Array<ArrayBuffer>> {
  if (backupKey.length !== 32) throw new RangeError('backup key must be 32 bytes');
  const key = await hkdfAesKey(exportKey, 'wrap-key', ['encrypt']);
  const nonce = fixed.nonce ? own(fixed.nonce) : randomBytes(12);
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: wrappedKeyAad(realmIdText, account) }, key, own(backupKey));
  return concat(nonce, new Uint8Array(ct));
}

export async function unwrapBackupKey(exportKey: Uint8Array, realmIdText: string, account: string, wrapped: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  if (wrapped.length !== WRAPPED_KEY_BYTES) throw new RangeError('wrapped key has the wrong length');
  const key = await hkdfAesKey(exportKey, 'wrap-key', ['decrypt']);
  const pt = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: own(wrapped.subarray(0, 12)), additionalData: wrappedKeyAad(realmIdText, account) },
    key,
    own(wrapped.subarray(12)),
  );
  return new Uint8Array(pt);
}

/** Server side: encrypts the wrapped key under the OPAQUE session key (§7.4). */
export async function sealRelease(sessionKey: Uint8Array, requestId: string, wrapped: Uint8Array, fixed: FixedRandomness = {}): Promise<Uint8Array<ArrayBuffer>> {
  const key = await hkdfAesKey(sessionKey, 'release', ['encrypt']);
  const nonce = fixed.nonce ? own(fixed.nonce) : randomBytes(12);
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: utf8(requestId) }, key, own(wrapped));
  return concat(nonce, new Uint8Array(ct));
}

export async function openRelease(sessionKey: Uint8Array, requestId: string, released: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  if (released.length < 12 + 16) throw new RangeError('released key too short');
  const key = await hkdfAesKey(sessionKey, 'release', ['decrypt']);
  const pt = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: own(released.subarray(0, 12)), additionalData: utf8(requestId) },
    key,
    own(released.subarray(12)),
  );
  return new Uint8Array(pt);
}

/** OPAQUE identifiers used in every call (§7.2). */
export function opaqueIdentifiers(realmIdText: string, account: string): { client: string; server: string } {
  return { client: account, server: realmIdText };
}

const ACCOUNT_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
export function isValidAccountId(a: unknown): a is string {
  return typeof a === 'string' && ACCOUNT_RE.test(a);
}
