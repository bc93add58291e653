// The Juicebox protocol's cryptography (spec/juicebox.md §3, §5), composed from @noble: the OPRF
// and DLEQ proof over ristretto255 with Juicebox's own hash-to-group and domain strings, Shamir
// sharing of scalars and points, the BLAKE2s MACs, the OPRF key signatures and the secret
// encryption. Pure functions over bytes and bigints; randomness is injectable for the vectors.

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, utf8, wipe } from '../bytes.js';

const Point = ristretto255.Point;
/** A ristretto255 group element. */
export type Point = ReturnType<typeof ristretto255.Point.fromBytes>;
const ORDER = Point.Fn.ORDER;

/** A source of random bytes (tests pass a fixed one). */
export type RandomSource = (n: number) => Uint8Array;
export const systemRandom: RandomSource = (n) => crypto.getRandomValues(new Uint8Array(n));

const OPRF_LABEL = utf8('Juicebox_OPRF_2023_1;');
const DLEQ_LABEL = utf8('Juicebox_DLEQ_2023_1;');

// ---------------------------------------------------------------- scalars and points, §3

const mod = (a: bigint): bigint => ((a % ORDER) + ORDER) % ORDER;

/** 64 bytes read little-endian, reduced mod ℓ (curve25519-dalek `from_bytes_mod_order_wide`). */
export function scalarFromWide(bytes: Uint8Array): bigint {
  if (bytes.length !== 64) throw new RangeError('a wide scalar needs 64 bytes');
  return mod(bytesToNumberLE(bytes));
}

/** A random scalar from 64 random bytes (dalek `Scalar::random`). */
export function randomScalar(random: RandomSource = systemRandom): bigint {
  const seed = random(64);
  const s = scalarFromWide(seed);
  wipe(seed);
  return s;
}

export function scalarToBytes(s: bigint): Uint8Array {
  return numberToBytesLE(s, 32);
}

/** A canonical 32-byte scalar (`< ℓ`), else a TypeError. */
export function scalarFromBytes(b: Uint8Array): bigint {
  if (b.length !== 32) throw new TypeError('a scalar is 32 bytes');
  const s = bytesToNumberLE(b);
  if (s >= ORDER) throw new TypeError('not a canonical scalar');
  return s;
}

/** A canonical ristretto255 encoding, else a TypeError. */
export function pointFromBytes(b: Uint8Array): Point {
  if (b.length !== 32) throw new TypeError('a point is 32 bytes');
  try {
    return Point.fromBytes(b);
  } catch (cause) {
    throw new TypeError('not a canonical ristretto255 point', { cause });
  }
}

/** `s·P`, also for s = 0 (noble refuses 0). Constant-time in s for s ≠ 0. */
export function mul(p: Point, s: bigint): Point {
  return s === 0n ? Point.ZERO : p.multiply(s);
}

export function mulBase(s: bigint): Point {
  return mul(Point.BASE, s);
}

/** `H(x) = FromUniformBytes(SHA-512(x))` (dalek `hash_from_bytes::<Sha512>`), not RFC 9380. */
export function hashToGroup(input: Uint8Array): Point {
  return ristretto255_hasher.deriveToCurve!(sha512(input));
}

export function invertScalar(s: bigint): bigint {
  if (s === 0n) throw new RangeError('zero has no inverse');
  return Point.Fn.inv(s);
}

// ---------------------------------------------------------------- OPRF, §3.1

export function oprfBlind(input: Uint8Array, random: RandomSource = systemRandom): { blindingFactor: bigint; blindedInput: Point } {
  const blindingFactor = randomScalar(random);
  return { blindingFactor, blindedInput: mul(hashToGroup(input), blindingFactor) };
}

export function oprfEvaluate(key: bigint, blindedInput: Point): Point {
  return mul(blindedInput, key);
}

function hashToOutput(input: Uint8Array, result: Point): Uint8Array {
  return sha512(concat(OPRF_LABEL, input, result.toBytes()));
}

export function oprfFinalize(input: Uint8Array, blindingFactor: bigint, blindedOutput: Point): Uint8Array {
  return hashToOutput(input, mul(blindedOutput, invertScalar(blindingFactor)));
}

export function oprfUnoblivious(key: bigint, input: Uint8Array): Uint8Array {
  return hashToOutput(input, mul(hashToGroup(input), key));
}

// ---------------------------------------------------------------- DLEQ proof, §3.2

export interface Proof {
  c: bigint;
  z: bigint;
}

function challenge(u: Uint8Array, v: Uint8Array, w: Uint8Array, vt: Point, wt: Point): bigint {
  return scalarFromWide(sha512(concat(DLEQ_LABEL, u, v, w, vt.toBytes(), wt.toBytes())));
}

/** Proves `log_G(V) = log_U(W)` for the server's key `k` (V = k·G, W = k·U). */
export function dleqProve(k: bigint, u: Point, v: Uint8Array, w: Point, random: RandomSource = systemRandom): Proof {
  const t = randomScalar(random);
  const c = challenge(u.toBytes(), v, w.toBytes(), mulBase(t), mul(u, t));
  return { c, z: mod(t + k * c) };
}

export function dleqVerify(u: Point, v: Point, w: Point, proof: Proof): boolean {
  const vt = mulBase(proof.z).subtract(mul(v, proof.c));
  const wt = mul(u, proof.z).subtract(mul(w, proof.c));
  const c = challenge(u.toBytes(), v.toBytes(), w.toBytes(), vt, wt);
  return equalBytes(scalarToBytes(c), scalarToBytes(proof.c));
}

// ---------------------------------------------------------------- Shamir sharing, §3.3

/** Shares of `secret` for indices 1..count, any `threshold` of which recover it. */
export function createShares(secret: bigint, threshold: number, count: number, random: RandomSource = systemRandom): bigint[] {
  if (!(Number.isInteger(threshold) && Number.isInteger(count) && threshold >= 1 && threshold <= count && count <= 255)) {
    throw new RangeError('shares need 1 <= threshold <= count <= 255');
  }
  const coefficients = Array.from({ length: threshold - 1 }, () => randomScalar(random));
  const shares: bigint[] = [];
  for (let x = 1n; x <= BigInt(count); x++) {
    let y = 0n;
    for (let i = coefficients.length - 1; i >= 0; i--) y = mod((y + coefficients[i]!) * x);
    shares.push(mod(y + secret));
  }
  return shares;
}

function lagrangeAtZero(indices: number[]): bigint[] {
  if (new Set(indices).size !== indices.length) throw new RangeError('duplicate share indices');
  return indices.map((xi, i) => {
    let num = 1n;
    let den = 1n;
    indices.forEach((xj, j) => {
      if (j === i) return;
      num = mod(num * BigInt(xj));
      den = mod(den * BigInt(xj - xi));
    });
    return mod(num * invertScalar(den));
  });
}

export function recoverScalar(shares: { index: number; value: bigint }[]): bigint {
  const l = lagrangeAtZero(shares.map((s) => s.index));
  return shares.reduce((acc, s, i) => mod(acc + s.value * l[i]!), 0n);
}

export function recoverPoint(shares: { index: number; value: Point }[]): Point {
  const l = lagrangeAtZero(shares.map((s) => s.index));
  return shares.reduce((acc, s, i) => acc.add(mul(s.value, l[i]!)), Point.ZERO);
}

// ---------------------------------------------------------------- MACs and keys, §3, §5

function be4(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** `MAC_L(key, x1..xm)`: keyed BLAKE2s with output length L over length-prefixed inputs. */
export function mac(key: Uint8Array, outLen: 16 | 32, ...parts: (Uint8Array | string)[]): Uint8Array {
  const fields = parts.map((p) => (typeof p === 'string' ? utf8(p) : p));
  return blake2s(concat(...fields.flatMap((f) => [be4(f.length), f])), { key, dkLen: outLen });
}

/** `SHA-512(output)`: the first half is the unlock key commitment, the second the unlock key (SDK order). */
export function unlockKeyAndCommitment(oprfOutput: Uint8Array): { unlockKey: Uint8Array; commitment: Uint8Array } {
  const d = sha512(oprfOutput);
  return { commitment: d.slice(0, 32), unlockKey: d.slice(32, 64) };
}

export function unlockKeyTag(unlockKey: Uint8Array, realmId: Uint8Array): Uint8Array {
  return mac(unlockKey, 16, 'Unlock Key Tag', realmId);
}

export function encryptedSecretCommitment(unlockKey: Uint8Array, realmId: Uint8Array, share: Uint8Array, encryptedSecret: Uint8Array): Uint8Array {
  return mac(unlockKey, 16, 'Encrypted User Secret Commitment', realmId, share, encryptedSecret);
}

export function secretEncryptionKey(seed: Uint8Array, scalar: bigint): Uint8Array {
  return mac(seed, 32, 'User Secret Encryption Key', scalarToBytes(scalar));
}

// ---------------------------------------------------------------- secret encryption, §5 step 7

export const MAX_SECRET_BYTES = 128;
export const ENCRYPTED_SECRET_BYTES = MAX_SECRET_BYTES + 1 + 16;
const ZERO_NONCE = new Uint8Array(12);

export function encryptSecret(key: Uint8Array, secret: Uint8Array): Uint8Array {
  if (secret.length > MAX_SECRET_BYTES) throw new RangeError(`a secret is at most ${MAX_SECRET_BYTES} bytes`);
  const padded = new Uint8Array(MAX_SECRET_BYTES + 1);
  padded[0] = secret.length;
  padded.set(secret, 1);
  const out = chacha20poly1305(key, ZERO_NONCE).encrypt(padded);
  wipe(padded);
  return out;
}

/** Opens an encrypted secret; throws if it does not authenticate or is badly padded. */
export function decryptSecret(key: Uint8Array, encrypted: Uint8Array): Uint8Array {
  const padded = chacha20poly1305(key, ZERO_NONCE).decrypt(encrypted);
  const n = padded[0]!;
  if (padded.length !== MAX_SECRET_BYTES + 1 || n > MAX_SECRET_BYTES) throw new TypeError('badly padded secret');
  const secret = padded.slice(1, 1 + n);
  wipe(padded);
  return secret;
}

// ---------------------------------------------------------------- OPRF key signatures, §5 step 5

export interface SignedPublicKey {
  publicKey: Uint8Array;
  verifyingKey: Uint8Array;
  signature: Uint8Array;
}

function be2(n: number): Uint8Array {
  return new Uint8Array([n >> 8, n & 255]);
}

function signatureMessage(realmId: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return concat(be2(realmId.length), realmId, be2(publicKey.length), publicKey);
}

/** Signs each realm's OPRF public key with one fresh Ed25519 key, then forgets the key. */
export function signPublicKeys(items: { realmId: Uint8Array; publicKey: Uint8Array }[], random: RandomSource = systemRandom): SignedPublicKey[] {
  const sk = random(32);
  const verifyingKey = ed25519.getPublicKey(sk);
  const out = items.map((it) => ({ publicKey: it.publicKey, verifyingKey, signature: ed25519.sign(signatureMessage(it.realmId, it.publicKey), sk) }));
  wipe(sk);
  return out;
}

/** Strict Ed25519 verification (canonical encodings, no small-order key), as dalek `verify_strict`. */
export function verifySignedPublicKey(spk: SignedPublicKey, realmId: Uint8Array): boolean {
  try {
    if (ed25519.Point.fromBytes(spk.verifyingKey).isSmallOrder()) return false;
    return ed25519.verify(spk.signature, signatureMessage(realmId, spk.publicKey), spk.verifyingKey, { zip215: false });
  } catch {
    return false;
  }
}
