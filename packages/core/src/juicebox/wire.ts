// The Juicebox wire messages (spec/juicebox.md §2, §8, §9): CBOR as the SDK's serde + ciborium
// write it, one set of types for the client and the realm. Parsers check every shape and size
// and throw WireError; byte fields stay bytes (points and scalars are checked by their users).

import { CofferError } from '../errors.js';
import { decode, encode } from 'cborg';

export class WireError extends CofferError {
  constructor(message: string) {
    super('malformed-message', `not a Juicebox message: ${message}`);
    this.name = 'WireError';
  }
}

/** The SDK refuses request bodies above this (realm/api `BODY_SIZE_LIMIT`). */
export const MAX_REQUEST_BYTES = 2048;
/** Every hardware-realm response payload is padded to this many bytes of CBOR (realm/api). */
export const PADDED_RESPONSE_BYTES = 436;
/** The SDK version whose wire this is; sent as `X-Juicebox-Version`. */
export const JUICEBOX_WIRE_VERSION = '0.3.7';

export interface SignedPublicKeyWire {
  publicKey: Uint8Array;
  verifyingKey: Uint8Array;
  signature: Uint8Array;
}

export interface Register2Request {
  version: Uint8Array;
  oprfPrivateKey: Uint8Array;
  oprfSignedPublicKey: SignedPublicKeyWire;
  unlockKeyCommitment: Uint8Array;
  unlockKeyTag: Uint8Array;
  encryptionKeyScalarShare: Uint8Array;
  encryptedSecret: Uint8Array;
  encryptedSecretCommitment: Uint8Array;
  numGuesses: number;
}

export type SecretsRequest =
  | { kind: 'Register1' }
  | { kind: 'Register2'; request: Register2Request }
  | { kind: 'Recover1' }
  | { kind: 'Recover2'; version: Uint8Array; blindedInput: Uint8Array }
  | { kind: 'Recover3'; version: Uint8Array; unlockKeyTag: Uint8Array }
  | { kind: 'Delete' };

export type SecretsResponse =
  | { kind: 'Register1' }
  | { kind: 'Register2' }
  | { kind: 'Recover1'; status: 'Ok'; version: Uint8Array }
  | { kind: 'Recover1'; status: 'NotRegistered' | 'NoGuesses' }
  | {
      kind: 'Recover2';
      status: 'Ok';
      signedPublicKey: SignedPublicKeyWire;
      blindedResult: Uint8Array;
      proof: { c: Uint8Array; betaZ: Uint8Array };
      unlockKeyCommitment: Uint8Array;
      numGuesses: number;
      guessCount: number;
    }
  | { kind: 'Recover2'; status: 'VersionMismatch' | 'NotRegistered' | 'NoGuesses' }
  | { kind: 'Recover3'; status: 'Ok'; encryptionKeyScalarShare: Uint8Array; encryptedSecret: Uint8Array; encryptedSecretCommitment: Uint8Array }
  | { kind: 'Recover3'; status: 'BadUnlockKeyTag'; guessesRemaining: number }
  | { kind: 'Recover3'; status: 'VersionMismatch' | 'NotRegistered' | 'NoGuesses' }
  | { kind: 'Delete' };

/** Whether a request may only travel inside an established Noise session (realm/api `needs_forward_secrecy`). */
export function needsForwardSecrecy(r: SecretsRequest): boolean {
  return r.kind === 'Register2' || r.kind === 'Recover2' || r.kind === 'Recover3';
}

// ---------------------------------------------------------------- CBOR reading helpers

type Cbor = unknown;

export function decodeCbor(bytes: Uint8Array): Cbor {
  try {
    return decode(bytes, { strict: true, rejectDuplicateMapKeys: true, allowIndefinite: false, allowUndefined: false, allowBigInt: false });
  } catch (e) {
    throw new WireError(`CBOR: ${(e as Error).message}`);
  }
}

export function encodeCbor(value: unknown): Uint8Array {
  return encode(value);
}

function isMap(x: Cbor): x is Record<string, Cbor> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

/** A map with exactly these keys. */
function fields<K extends string>(x: Cbor, what: string, keys: readonly K[]): Record<K, Cbor> {
  if (!isMap(x)) throw new WireError(`${what} must be a map`);
  const got = Object.keys(x);
  if (got.length !== keys.length || !keys.every((k) => k in x)) throw new WireError(`${what} must have the fields ${keys.join(', ')}`);
  return x as Record<K, Cbor>;
}

function bytes(x: Cbor, what: string, length?: number): Uint8Array {
  if (!(x instanceof Uint8Array)) throw new WireError(`${what} must be a byte string`);
  if (length !== undefined && x.length !== length) throw new WireError(`${what} must be ${length} bytes`);
  return x;
}

function uint(x: Cbor, what: string, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0 || x > max) throw new WireError(`${what} must be an integer from 0 to ${max}`);
  return x;
}

/** An enum value: a unit variant (text) or a one-entry map `{variant: data}`. */
function variant(x: Cbor, what: string): [string, Cbor | undefined] {
  if (typeof x === 'string') return [x, undefined];
  if (isMap(x)) {
    const keys = Object.keys(x);
    if (keys.length === 1) return [keys[0]!, x[keys[0]!]];
  }
  throw new WireError(`${what} must be an enum variant`);
}

function unit(name: string, data: Cbor | undefined, what: string): void {
  if (data !== undefined) throw new WireError(`${what}::${name} carries no data`);
}

// ---------------------------------------------------------------- SecretsRequest

function spkToCbor(s: SignedPublicKeyWire): Cbor {
  return { public_key: s.publicKey, verifying_key: s.verifyingKey, signature: s.signature };
}

function spkFromCbor(x: Cbor, what: string): SignedPublicKeyWire {
  const f = fields(x, what, ['public_key', 'verifying_key', 'signature'] as const);
  return { publicKey: bytes(f.public_key, 'public_key', 32), verifyingKey: bytes(f.verifying_key, 'verifying_key', 32), signature: bytes(f.signature, 'signature', 64) };
}

function secretsRequestToCbor(r: SecretsRequest): Cbor {
  switch (r.kind) {
    case 'Register1':
    case 'Recover1':
    case 'Delete':
      return r.kind;
    case 'Register2': {
      const q = r.request;
      return {
        Register2: {
          version: q.version,
          oprf_private_key: q.oprfPrivateKey,
          oprf_signed_public_key: spkToCbor(q.oprfSignedPublicKey),
          unlock_key_commitment: q.unlockKeyCommitment,
          unlock_key_tag: q.unlockKeyTag,
          encryption_key_scalar_share: q.encryptionKeyScalarShare,
          encrypted_secret: q.encryptedSecret,
          encrypted_secret_commitment: q.encryptedSecretCommitment,
          policy: { num_guesses: q.numGuesses },
        },
      };
    }
    case 'Recover2':
      return { Recover2: { version: r.version, oprf_blinded_input: r.blindedInput } };
    case 'Recover3':
      return { Recover3: { version: r.version, unlock_key_tag: r.unlockKeyTag } };
  }
}

export function encodeSecretsRequest(r: SecretsRequest): Uint8Array {
  return encodeCbor(secretsRequestToCbor(r));
}

export function parseSecretsRequest(body: Uint8Array): SecretsRequest {
  if (body.length > MAX_REQUEST_BYTES) throw new WireError(`a request is at most ${MAX_REQUEST_BYTES} bytes`);
  const [name, data] = variant(decodeCbor(body), 'SecretsRequest');
  switch (name) {
    case 'Register1':
    case 'Recover1':
    case 'Delete':
      unit(name, data, 'SecretsRequest');
      return { kind: name };
    case 'Register2': {
      const f = fields(data, 'Register2Request', [
        'version',
        'oprf_private_key',
        'oprf_signed_public_key',
        'unlock_key_commitment',
        'unlock_key_tag',
        'encryption_key_scalar_share',
        'encrypted_secret',
        'encrypted_secret_commitment',
        'policy',
      ] as const);
      const policy = fields(f.policy, 'policy', ['num_guesses'] as const);
      return {
        kind: 'Register2',
        request: {
          version: bytes(f.version, 'version', 16),
          oprfPrivateKey: bytes(f.oprf_private_key, 'oprf_private_key', 32),
          oprfSignedPublicKey: spkFromCbor(f.oprf_signed_public_key, 'oprf_signed_public_key'),
          unlockKeyCommitment: bytes(f.unlock_key_commitment, 'unlock_key_commitment', 32),
          unlockKeyTag: bytes(f.unlock_key_tag, 'unlock_key_tag', 16),
          encryptionKeyScalarShare: bytes(f.encryption_key_scalar_share, 'encryption_key_scalar_share', 32),
          encryptedSecret: bytes(f.encrypted_secret, 'encrypted_secret', 145),
          encryptedSecretCommitment: bytes(f.encrypted_secret_commitment, 'encrypted_secret_commitment', 16),
          numGuesses: uint(policy.num_guesses, 'num_guesses', 0xffff),
        },
      };
    }
    case 'Recover2': {
      const f = fields(data, 'Recover2Request', ['version', 'oprf_blinded_input'] as const);
      return { kind: 'Recover2', version: bytes(f.version, 'version', 16), blindedInput: bytes(f.oprf_blinded_input, 'oprf_blinded_input', 32) };
    }
    case 'Recover3': {
      const f = fields(data, 'Recover3Request', ['version', 'unlock_key_tag'] as const);
      return { kind: 'Recover3', version: bytes(f.version, 'version', 16), unlockKeyTag: bytes(f.unlock_key_tag, 'unlock_key_tag', 16) };
    }
    default:
      throw new WireError(`unknown request ${name}`);
  }
}

// ---------------------------------------------------------------- SecretsResponse

function secretsResponseToCbor(r: SecretsResponse): Cbor {
  switch (r.kind) {
    case 'Register1':
    case 'Register2':
    case 'Delete':
      return { [r.kind]: 'Ok' };
    case 'Recover1':
      return { Recover1: r.status === 'Ok' ? { Ok: { version: r.version } } : r.status };
    case 'Recover2':
      return {
        Recover2:
          r.status === 'Ok'
            ? {
                Ok: {
                  oprf_signed_public_key: spkToCbor(r.signedPublicKey),
                  oprf_blinded_result: r.blindedResult,
                  oprf_proof: { c: r.proof.c, beta_z: r.proof.betaZ },
                  unlock_key_commitment: r.unlockKeyCommitment,
                  num_guesses: r.numGuesses,
                  guess_count: r.guessCount,
                },
              }
            : r.status,
      };
    case 'Recover3':
      if (r.status === 'Ok') {
        return { Recover3: { Ok: { encryption_key_scalar_share: r.encryptionKeyScalarShare, encrypted_secret: r.encryptedSecret, encrypted_secret_commitment: r.encryptedSecretCommitment } } };
      }
      if (r.status === 'BadUnlockKeyTag') return { Recover3: { BadUnlockKeyTag: { guesses_remaining: r.guessesRemaining } } };
      return { Recover3: r.status };
  }
}

export function encodeSecretsResponse(r: SecretsResponse): Uint8Array {
  return encodeCbor(secretsResponseToCbor(r));
}

export function parseSecretsResponse(body: Uint8Array): SecretsResponse {
  const [kind, data] = variant(decodeCbor(body), 'SecretsResponse');
  const [status, inner] = data === undefined ? ['', undefined] : variant(data, `${kind}Response`);
  const noData = () => unit(status, inner, `${kind}Response`);
  switch (kind) {
    case 'Register1':
    case 'Register2':
    case 'Delete':
      if (status !== 'Ok') throw new WireError(`${kind}Response must be Ok`);
      noData();
      return { kind };
    case 'Recover1':
      if (status === 'Ok') return { kind, status, version: bytes(fields(inner, 'Recover1Response::Ok', ['version'] as const).version, 'version', 16) };
      if (status === 'NotRegistered' || status === 'NoGuesses') {
        noData();
        return { kind, status };
      }
      break;
    case 'Recover2':
      if (status === 'Ok') {
        const f = fields(inner, 'Recover2Response::Ok', ['oprf_signed_public_key', 'oprf_blinded_result', 'oprf_proof', 'unlock_key_commitment', 'num_guesses', 'guess_count'] as const);
        const proof = fields(f.oprf_proof, 'oprf_proof', ['c', 'beta_z'] as const);
        return {
          kind,
          status,
          signedPublicKey: spkFromCbor(f.oprf_signed_public_key, 'oprf_signed_public_key'),
          blindedResult: bytes(f.oprf_blinded_result, 'oprf_blinded_result', 32),
          proof: { c: bytes(proof.c, 'c', 32), betaZ: bytes(proof.beta_z, 'beta_z', 32) },
          unlockKeyCommitment: bytes(f.unlock_key_commitment, 'unlock_key_commitment', 32),
          numGuesses: uint(f.num_guesses, 'num_guesses', 0xffff),
          guessCount: uint(f.guess_count, 'guess_count', 0xffff),
        };
      }
      if (status === 'VersionMismatch' || status === 'NotRegistered' || status === 'NoGuesses') {
        noData();
        return { kind, status };
      }
      break;
    case 'Recover3':
      if (status === 'Ok') {
        const f = fields(inner, 'Recover3Response::Ok', ['encryption_key_scalar_share', 'encrypted_secret', 'encrypted_secret_commitment'] as const);
        return {
          kind,
          status,
          encryptionKeyScalarShare: bytes(f.encryption_key_scalar_share, 'encryption_key_scalar_share', 32),
          encryptedSecret: bytes(f.encrypted_secret, 'encrypted_secret', 145),
          encryptedSecretCommitment: bytes(f.encrypted_secret_commitment, 'encrypted_secret_commitment', 16),
        };
      }
      if (status === 'BadUnlockKeyTag') return { kind, status, guessesRemaining: uint(fields(inner, 'BadUnlockKeyTag', ['guesses_remaining'] as const).guesses_remaining, 'guesses_remaining', 0xffff) };
      if (status === 'VersionMismatch' || status === 'NotRegistered' || status === 'NoGuesses') {
        noData();
        return { kind, status };
      }
      break;
  }
  throw new WireError(`unknown response ${kind}::${status}`);
}

// ---------------------------------------------------------------- padding (hardware realms), §9

/**
 * `{"unpadded_length": u16, "padded_bytes": b436}`, with the length always in the 2-byte integer
 * form (CBOR `0x19`), so that every padded response has the same size whatever its length (the
 * SDK writes the shortest form, which leaks whether a response is short; its reader accepts both).
 */
export function padResponse(r: SecretsResponse): Uint8Array {
  const raw = encodeSecretsResponse(r);
  if (raw.length > PADDED_RESPONSE_BYTES) throw new RangeError('response larger than the padded size');
  const padded = new Uint8Array(PADDED_RESPONSE_BYTES);
  padded.set(raw);
  const head = encodeCbor({ padded_bytes: padded, unpadded_length: 0xffff });
  // The map is sorted by key length: "padded_bytes" first, so the u16 ends the encoding.
  head.set([0x19, raw.length >> 8, raw.length & 0xff], head.length - 3);
  return head;
}

export function unpadResponse(body: Uint8Array): SecretsResponse {
  let cbor: Cbor;
  try {
    // Not strict: the length may come in the 2-byte form (see padResponse).
    cbor = decode(body, { strict: false, rejectDuplicateMapKeys: true, allowIndefinite: false, allowUndefined: false, allowBigInt: false });
  } catch (e) {
    throw new WireError(`CBOR: ${(e as Error).message}`);
  }
  const f = fields(cbor, 'PaddedSecretsResponse', ['unpadded_length', 'padded_bytes'] as const);
  const padded = bytes(f.padded_bytes, 'padded_bytes', PADDED_RESPONSE_BYTES);
  return parseSecretsResponse(padded.subarray(0, uint(f.unpadded_length, 'unpadded_length', PADDED_RESPONSE_BYTES)));
}

// ---------------------------------------------------------------- ClientRequest / ClientResponse (hardware realms), §9

export type NoiseRequest = { handshake: { clientEphemeralPublic: Uint8Array; payloadCiphertext: Uint8Array } } | { transport: Uint8Array };

export interface ClientRequest {
  realm: Uint8Array;
  authToken: string;
  sessionId: number;
  kind: 'HandshakeOnly' | 'SecretsRequest';
  encrypted: NoiseRequest;
}

export type NoiseResponse = { handshake: { serverEphemeralPublic: Uint8Array; payloadCiphertext: Uint8Array }; sessionLifetimeMs: number } | { transport: Uint8Array };

export type ClientResponseError = 'Unavailable' | 'InvalidAuth' | 'MissingSession' | 'SessionError' | 'DecodingError' | 'PayloadTooLarge' | 'RateLimitExceeded';
const CLIENT_RESPONSE_ERRORS: readonly string[] = ['Unavailable', 'InvalidAuth', 'MissingSession', 'SessionError', 'DecodingError', 'PayloadTooLarge', 'RateLimitExceeded'];

export type ClientResponse = { ok: NoiseResponse } | { error: ClientResponseError };

export function encodeClientRequest(r: ClientRequest): Uint8Array {
  const encrypted =
    'handshake' in r.encrypted
      ? { Handshake: { handshake: { client_ephemeral_public: r.encrypted.handshake.clientEphemeralPublic, payload_ciphertext: r.encrypted.handshake.payloadCiphertext } } }
      : { Transport: { ciphertext: r.encrypted.transport } };
  return encodeCbor({ realm: r.realm, auth_token: r.authToken, session_id: r.sessionId, kind: r.kind, encrypted });
}

/** Whether a body looks like a ClientRequest (a map with a `realm` field) rather than a SecretsRequest. */
export function isClientRequest(x: Cbor): boolean {
  return isMap(x) && 'realm' in x;
}

export function parseClientRequest(x: Cbor): ClientRequest {
  const f = fields(x, 'ClientRequest', ['realm', 'auth_token', 'session_id', 'kind', 'encrypted'] as const);
  if (typeof f.auth_token !== 'string') throw new WireError('auth_token must be text');
  const [kind, kd] = variant(f.kind, 'ClientRequestKind');
  if ((kind !== 'HandshakeOnly' && kind !== 'SecretsRequest') || kd !== undefined) throw new WireError('kind must be HandshakeOnly or SecretsRequest');
  const [n, nd] = variant(f.encrypted, 'NoiseRequest');
  let encrypted: NoiseRequest;
  if (n === 'Handshake') {
    const h = fields(fields(nd, 'NoiseRequest::Handshake', ['handshake'] as const).handshake, 'HandshakeRequest', ['client_ephemeral_public', 'payload_ciphertext'] as const);
    encrypted = { handshake: { clientEphemeralPublic: bytes(h.client_ephemeral_public, 'client_ephemeral_public', 32), payloadCiphertext: bytes(h.payload_ciphertext, 'payload_ciphertext') } };
  } else if (n === 'Transport') {
    encrypted = { transport: bytes(fields(nd, 'NoiseRequest::Transport', ['ciphertext'] as const).ciphertext, 'ciphertext') };
  } else {
    throw new WireError('encrypted must be Handshake or Transport');
  }
  return { realm: bytes(f.realm, 'realm', 16), authToken: f.auth_token, sessionId: uint(f.session_id, 'session_id', 0xffffffff), kind, encrypted };
}

export function encodeClientResponse(r: ClientResponse): Uint8Array {
  if ('error' in r) return encodeCbor(r.error);
  const n = r.ok;
  if ('transport' in n) return encodeCbor({ Ok: { Transport: { ciphertext: n.transport } } });
  const secs = Math.floor(n.sessionLifetimeMs / 1000);
  return encodeCbor({
    Ok: {
      Handshake: {
        handshake: { server_ephemeral_public: n.handshake.serverEphemeralPublic, payload_ciphertext: n.handshake.payloadCiphertext },
        session_lifetime: { secs, nanos: (n.sessionLifetimeMs - secs * 1000) * 1_000_000 },
      },
    },
  });
}

export function parseClientResponse(body: Uint8Array): ClientResponse {
  const [name, data] = variant(decodeCbor(body), 'ClientResponse');
  if (CLIENT_RESPONSE_ERRORS.includes(name)) {
    unit(name, data, 'ClientResponse');
    return { error: name as ClientResponseError };
  }
  if (name !== 'Ok') throw new WireError(`unknown ClientResponse ${name}`);
  const [n, nd] = variant(data, 'NoiseResponse');
  if (n === 'Transport') return { ok: { transport: bytes(fields(nd, 'NoiseResponse::Transport', ['ciphertext'] as const).ciphertext, 'ciphertext') } };
  if (n !== 'Handshake') throw new WireError('NoiseResponse must be Handshake or Transport');
  const f = fields(nd, 'NoiseResponse::Handshake', ['handshake', 'session_lifetime'] as const);
  const h = fields(f.handshake, 'HandshakeResponse', ['server_ephemeral_public', 'payload_ciphertext'] as const);
  const d = fields(f.session_lifetime, 'Duration', ['secs', 'nanos'] as const);
  return {
    ok: {
      handshake: { serverEphemeralPublic: bytes(h.server_ephemeral_public, 'server_ephemeral_public', 32), payloadCiphertext: bytes(h.payload_ciphertext, 'payload_ciphertext') },
      sessionLifetimeMs: uint(d.secs, 'secs', 2 ** 40) * 1000 + Math.floor(uint(d.nanos, 'nanos', 999_999_999) / 1_000_000),
    },
  };
}
