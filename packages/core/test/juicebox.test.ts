// The Juicebox client's cryptography and wire against the SDK's published vectors
// (spec/juicebox.md §11), plus properties of sharing, the wire and the Noise channel.
// Runs in Node and, bundled, in Chromium (apps/web/test/core-in-chromium.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fromHex, toHex } from '@coffer/core';
import { utf8 } from '@coffer/core/testing';
import { InvalidVaultConfigError } from '@coffer/core/vault';
import {
  guessBound, hashPin, INSECURE_TEST_ONLY_FAST_PIN_HASHING, jbcrypto as c, noise, parseConfiguration, perRealmLimitFor, wire,
} from '@coffer/core/juicebox';
import { juiceboxVectors } from './helpers.js';

const { oprf: oprfVectors, pin: pinVectors } = juiceboxVectors();

/** A random source that hands out the given bytes in order, and fails when they run out. */
function fixedRandom(...chunks: string[]): c.RandomSource & { left(): number } {
  let pool = fromHex(chunks.join(''));
  const f = (n: number) => {
    if (pool.length < n) throw new Error('fixed randomness exhausted');
    const out = pool.slice(0, n);
    pool = pool.slice(n);
    return out;
  };
  return Object.assign(f, { left: () => pool.length });
}

test('oprf: the SDK vectors (key, blinding, evaluation, DLEQ proof, output)', () => {
  assert.equal(oprfVectors.vectors.length, 10);
  for (const v of oprfVectors.vectors) {
    const random = fixedRandom(v.inputs.private_key_seed, v.inputs.blinding_factor_seed, v.inputs.beta_t_seed);
    const input = fromHex(v.inputs.input);
    const key = c.randomScalar(random);
    const publicKey = c.mulBase(key).toBytes();
    const { blindingFactor, blindedInput } = c.oprfBlind(input, random);
    const blindedOutput = c.oprfEvaluate(key, blindedInput);
    const proof = c.dleqProve(key, blindedInput, publicKey, blindedOutput, random);
    assert.equal(random.left(), 0, `${v.name}: every seed byte used`);
    const o = v.outputs;
    assert.equal(toHex(c.scalarToBytes(key)), o.private_key, v.name);
    assert.equal(toHex(publicKey), o.public_key, v.name);
    assert.equal(toHex(c.scalarToBytes(blindingFactor)), o.blinding_factor, v.name);
    assert.equal(toHex(blindedInput.toBytes()), o.blinded_input, v.name);
    assert.equal(toHex(blindedOutput.toBytes()), o.blinded_output, v.name);
    assert.equal(toHex(c.scalarToBytes(proof.c)), o.proof_c, v.name);
    assert.equal(toHex(c.scalarToBytes(proof.z)), o.proof_beta_z, v.name);
    assert.ok(c.dleqVerify(blindedInput, c.pointFromBytes(publicKey), blindedOutput, proof), v.name);
    assert.equal(toHex(c.oprfFinalize(input, blindingFactor, blindedOutput)), o.output, v.name);
    assert.equal(toHex(c.oprfUnoblivious(key, input)), o.output, v.name);
  }
});

test('oprf: a proof fails for any other input, key, output or proof value', () => {
  const v = oprfVectors.vectors[0]!;
  const U = c.pointFromBytes(fromHex(v.outputs.blinded_input));
  const V = c.pointFromBytes(fromHex(v.outputs.public_key));
  const W = c.pointFromBytes(fromHex(v.outputs.blinded_output));
  const proof = { c: c.scalarFromBytes(fromHex(v.outputs.proof_c)), z: c.scalarFromBytes(fromHex(v.outputs.proof_beta_z)) };
  const other = c.hashToGroup(utf8('other'));
  assert.ok(c.dleqVerify(U, V, W, proof));
  assert.ok(!c.dleqVerify(other, V, W, proof));
  assert.ok(!c.dleqVerify(U, other, W, proof));
  assert.ok(!c.dleqVerify(U, V, other, proof));
  assert.ok(!c.dleqVerify(U, V, W, { c: proof.c + 1n, z: proof.z }));
  assert.ok(!c.dleqVerify(U, V, W, { c: proof.c, z: proof.z + 1n }));
});

test('encodings: non-canonical scalars and points are refused', () => {
  assert.throws(() => c.scalarFromBytes(new Uint8Array(32).fill(0xff)), /canonical/);
  assert.throws(() => c.pointFromBytes(new Uint8Array(32).fill(0xff)), /canonical/);
  assert.throws(() => c.pointFromBytes(new Uint8Array(31)), /32 bytes/);
});

test('pin hashing: the SDK vector (Standard2019: Argon2id 16 MiB, 32 passes)', async () => {
  for (const v of pinVectors.pinHashing) {
    const k = await hashPin('Standard2019', fromHex(v.pin), fromHex(v.version), fromHex(v.info));
    assert.equal(toHex(k.accessKey), v.accessKey);
    assert.equal(toHex(k.encryptionKeySeed), v.encryptionKeySeed);
  }
  const fast = await hashPin(INSECURE_TEST_ONLY_FAST_PIN_HASHING, utf8('1234'), new Uint8Array(16).fill(5), utf8('artemis'));
  assert.notEqual(toHex(fast.accessKey), pinVectors.pinHashing[0]!.accessKey, 'the fast mode is another function');
});

test('secret encryption: the SDK vector, padding and tampering', () => {
  for (const v of pinVectors.secretEncryption) {
    const enc = c.encryptSecret(fromHex(v.encryptionKey), fromHex(v.secret));
    assert.equal(toHex(enc), v.encryptedSecret);
    assert.equal(enc.length, c.ENCRYPTED_SECRET_BYTES);
    assert.equal(toHex(c.decryptSecret(fromHex(v.encryptionKey), enc)), v.secret);
    enc[5]! ^= 1;
    assert.throws(() => c.decryptSecret(fromHex(v.encryptionKey), enc));
  }
  assert.throws(() => c.encryptSecret(new Uint8Array(32), new Uint8Array(129)), /at most 128/);
});

test('shamir: any t of n shares recover scalars and points; fewer give something else', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 4 }), fc.bigInt({ min: 0n, max: 2n ** 252n }), (t, extra, secret) => {
      const n = t + extra;
      const shares = c.createShares(secret, t, n).map((value, i) => ({ index: i + 1, value }));
      const pick = [...shares].sort(() => Math.random() - 0.5).slice(0, t);
      assert.equal(c.recoverScalar(pick), secret);
      // Points: shares of s+1 multiplied by G recover (s+1)·G (linear in the shares).
      const pointShares = c.createShares(secret + 1n, t, n).map((value, i) => ({ index: i + 1, value: c.mulBase(value) }));
      assert.ok(c.recoverPoint(pointShares.slice(0, t)).equals(c.mulBase(secret + 1n)));
      if (t > 1) assert.notEqual(c.recoverScalar(pick.slice(1)), secret);
    }),
    { numRuns: 40 },
  );
  assert.throws(() => c.recoverScalar([{ index: 1, value: 1n }, { index: 1, value: 2n }]), /duplicate/);
});

test('signed OPRF keys: verify only for the realm they were signed for', () => {
  const realmA = new Uint8Array(16).fill(1);
  const realmB = new Uint8Array(16).fill(2);
  const [a, b] = c.signPublicKeys([
    { realmId: realmA, publicKey: c.mulBase(5n).toBytes() },
    { realmId: realmB, publicKey: c.mulBase(6n).toBytes() },
  ]);
  assert.ok(c.verifySignedPublicKey(a!, realmA));
  assert.ok(c.verifySignedPublicKey(b!, realmB));
  assert.ok(!c.verifySignedPublicKey(a!, realmB));
  assert.deepEqual(a!.verifyingKey, b!.verifyingKey, 'one signing key for all realms');
  assert.ok(!c.verifySignedPublicKey({ ...a!, publicKey: b!.publicKey }, realmA));
});

test('wire: every request and response round-trips; the SDK proof encoding; bad shapes are refused', () => {
  const b = (n: number, v = 7) => new Uint8Array(n).fill(v);
  const requests: wire.SecretsRequest[] = [
    { kind: 'Register1' },
    { kind: 'Recover1' },
    { kind: 'Delete' },
    { kind: 'Recover2', version: b(16), blindedInput: b(32) },
    { kind: 'Recover3', version: b(16), unlockKeyTag: b(16) },
    {
      kind: 'Register2',
      request: {
        version: b(16),
        oprfPrivateKey: b(32),
        oprfSignedPublicKey: { publicKey: b(32), verifyingKey: b(32), signature: b(64) },
        unlockKeyCommitment: b(32),
        unlockKeyTag: b(16),
        encryptionKeyScalarShare: b(32),
        encryptedSecret: b(145),
        encryptedSecretCommitment: b(16),
        numGuesses: 10,
      },
    },
  ];
  for (const r of requests) assert.deepEqual(wire.parseSecretsRequest(wire.encodeSecretsRequest(r)), r);
  assert.ok(wire.encodeSecretsRequest(requests[5]!).length < wire.MAX_REQUEST_BYTES);
  const responses: wire.SecretsResponse[] = [
    { kind: 'Register1' },
    { kind: 'Register2' },
    { kind: 'Delete' },
    { kind: 'Recover1', status: 'Ok', version: b(16) },
    { kind: 'Recover1', status: 'NoGuesses' },
    { kind: 'Recover2', status: 'Ok', signedPublicKey: { publicKey: b(32), verifyingKey: b(32), signature: b(64) }, blindedResult: b(32), proof: { c: b(32), betaZ: b(32) }, unlockKeyCommitment: b(32), numGuesses: 10, guessCount: 3 },
    { kind: 'Recover2', status: 'VersionMismatch' },
    { kind: 'Recover3', status: 'Ok', encryptionKeyScalarShare: b(32), encryptedSecret: b(145), encryptedSecretCommitment: b(16) },
    { kind: 'Recover3', status: 'BadUnlockKeyTag', guessesRemaining: 4 },
    { kind: 'Recover3', status: 'NotRegistered' },
  ];
  for (const r of responses) {
    assert.deepEqual(wire.parseSecretsResponse(wire.encodeSecretsResponse(r)), r);
    assert.deepEqual(wire.unpadResponse(wire.padResponse(r)), r);
  }
  // Every padded response has one size (hardware realms).
  assert.equal(new Set(responses.map((r) => wire.padResponse(r).length)).size, 1);
  // realm/api's proof test: c = -2, beta_z = -1 as CBOR.
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  assert.equal(
    toHex(wire.encodeCbor({ c: c.scalarToBytes(L - 2n), beta_z: c.scalarToBytes(L - 1n) })),
    'a261635820ebd3f55c1a631258d69cf7a2def9de140000000000000000000000000000001066626574615f7a5820ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010',
  );
  for (const bad of [wire.encodeCbor('Register3'), wire.encodeCbor({ Recover2: { version: b(15), oprf_blinded_input: b(32) } }), wire.encodeCbor({ Recover3: { version: b(16) } }), new Uint8Array([0xff]), new Uint8Array(3000)]) {
    assert.throws(() => wire.parseSecretsRequest(bad), wire.WireError);
  }
  // A duplicated map key, a non-shortest integer: not Juicebox messages.
  assert.throws(() => wire.decodeCbor(fromHex('a2616101616102')), wire.WireError);
  assert.throws(() => wire.decodeCbor(fromHex('1801')), wire.WireError);
});

test('wire: client requests and responses (hardware realms) round-trip', () => {
  const b = (n: number) => new Uint8Array(n).fill(3);
  const reqs: wire.ClientRequest[] = [
    { realm: b(16), authToken: 'tok', sessionId: 4294967295, kind: 'HandshakeOnly', encrypted: { handshake: { clientEphemeralPublic: b(32), payloadCiphertext: b(16) } } },
    { realm: b(16), authToken: 'tok', sessionId: 1, kind: 'SecretsRequest', encrypted: { transport: b(40) } },
  ];
  for (const r of reqs) {
    const cbor = wire.decodeCbor(wire.encodeClientRequest(r));
    assert.ok(wire.isClientRequest(cbor));
    assert.deepEqual(wire.parseClientRequest(cbor), r);
  }
  assert.ok(!wire.isClientRequest(wire.decodeCbor(wire.encodeSecretsRequest({ kind: 'Recover2', version: b(16), blindedInput: b(32) }))));
  const resps: wire.ClientResponse[] = [
    { ok: { handshake: { serverEphemeralPublic: b(32), payloadCiphertext: b(452) }, sessionLifetimeMs: 300_000 } },
    { ok: { transport: b(452) } },
    { error: 'MissingSession' },
    { error: 'InvalidAuth' },
  ];
  for (const r of resps) assert.deepEqual(wire.parseClientResponse(wire.encodeClientResponse(r)), r);
});

test('noise NK: handshake with and without payload, transport both ways, tampering and the wrong key fail', () => {
  const sk = c.systemRandom(32);
  const pk = noise.x25519PublicKey(sk);
  for (const first of [new Uint8Array(0), utf8('Recover1')]) {
    const hs = noise.clientHandshake(pk, first);
    const srv = noise.serverHandshake(sk, pk, hs.clientEphemeralPublic, hs.payloadCiphertext);
    assert.deepEqual(srv.payload, first);
    const answer = srv.respond(utf8('ok'));
    const client = hs.finish(answer.serverEphemeralPublic, answer.payloadCiphertext);
    assert.deepEqual(client.payload, utf8('ok'));
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(answer.transport.decrypt(client.transport.encrypt(utf8(`q${i}`))), utf8(`q${i}`));
      assert.deepEqual(client.transport.decrypt(answer.transport.encrypt(utf8(`a${i}`))), utf8(`a${i}`));
    }
    const ct = client.transport.encrypt(utf8('x'));
    ct[0]! ^= 1;
    assert.throws(() => answer.transport.decrypt(ct), noise.NoiseError);
  }
  // A handshake sealed to another realm key does not open.
  const other = noise.x25519PublicKey(c.systemRandom(32));
  const hs = noise.clientHandshake(other, utf8('secret'));
  assert.throws(() => noise.serverHandshake(sk, pk, hs.clientEphemeralPublic, hs.payloadCiphertext), noise.NoiseError);
});

test('configuration: the SDK shape, checked and sorted by realm id; the guess bound', () => {
  const cfg = parseConfiguration({
    realms: [
      { id: 'ff'.repeat(16), address: 'http://127.0.0.1:1/', public_key: null },
      { id: '01'.repeat(16), address: 'http://127.0.0.1:2/', public_key: 'ab'.repeat(32) },
      { id: '80'.repeat(16), address: 'http://127.0.0.1:3' },
    ],
    register_threshold: 3,
    recover_threshold: 2,
    pin_hashing_mode: 'Standard2019',
  });
  assert.deepEqual(cfg.realms.map((r) => toHex(r.id).slice(0, 2)), ['01', '80', 'ff']);
  assert.equal(cfg.realms[1]!.address, 'http://127.0.0.1:3/');
  assert.equal(cfg.realms[0]!.publicKey?.length, 32);
  const base = { realms: [{ id: '01'.repeat(16), address: 'http://a/' }, { id: '02'.repeat(16), address: 'http://b/' }], register_threshold: 2, recover_threshold: 2, pin_hashing_mode: 'Standard2019' };
  for (const bad of [
    { ...base, recover_threshold: 1 },
    { ...base, register_threshold: 1 },
    { ...base, pin_hashing_mode: 'Fast' },
    { ...base, realms: [base.realms[0], base.realms[0]] },
    { ...base, realms: [{ id: 'zz', address: 'http://a/' }, base.realms[1]] },
    { ...base, realms: [{ id: '01'.repeat(16), address: 'ftp://a/' }, base.realms[1]] },
  ]) {
    assert.throws(() => parseConfiguration(bad), InvalidVaultConfigError);
  }
  assert.equal(guessBound(3, 3, 10), 10, 'n-of-n: rolling back n-1 realms gains nothing');
  assert.equal(guessBound(3, 2, 10), 20);
  assert.equal(guessBound(3, 2, 5), 10);
  assert.equal(guessBound(5, 3, 10, 0), 16);
  assert.equal(guessBound(3, 3, 10, 3), Infinity);
  assert.equal(perRealmLimitFor(3, 2, 10), 5);
  assert.equal(perRealmLimitFor(3, 3, 10), 10);
});
