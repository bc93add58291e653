import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { formatRecoveryKey, parseRecoveryKey, SecretKey, toHex, UsageError, WrongKeyError } from '@coffer/core';
import { checkKey, keyCheckValue } from '#src/keys.js';
import { deriveKeys } from '@coffer/core/testing';
import { providers } from './helpers.js';

test('recovery key: 64 hex digits in 16 groups of 4, and back (any case, spaces, dashes)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.constantFrom(' ', '-', '', '\n', ' - '), fc.boolean(), (raw, sep, lower) => {
      const text = formatRecoveryKey(new SecretKey(raw));
      assert.match(text, /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
      const retyped = text.split(' ').join(sep);
      const key = parseRecoveryKey(lower ? retyped.toLowerCase() : retyped);
      assert.equal(toHex(key.expose()), toHex(raw));
    }),
  );
});

test('recovery key: malformed input is a usage error that never echoes the digits', () => {
  const key = formatRecoveryKey(new SecretKey(new Uint8Array(32).fill(0xab)));
  for (const bad of [key.slice(0, -1), key + 'A', key.replace('A', 'G'), '', key.replace('B', 'Ø')]) {
    assert.throws(() => parseRecoveryKey(bad), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.ok(!e.message.includes('ABAB'), 'message must not contain key digits');
      assert.ok(e.hint);
      return true;
    });
  }
  assert.throws(() => parseRecoveryKey(key.slice(0, -1)), /64 digits; 63 were given/);
  assert.throws(() => parseRecoveryKey(key.replace('A', 'G')), /character 1 is not/);
});

test('SecretKey never prints its bytes', () => {
  const k = new SecretKey(new Uint8Array(32).fill(0x41));
  for (const s of [String(k), JSON.stringify({ k }), inspect(k), inspect({ nested: { k } }), `${k}`]) {
    assert.ok(!s.includes('41') && !s.includes('AAAA'), s);
    assert.match(s, /redacted/);
  }
  k.wipe();
  assert.ok(k.expose().every((b) => b === 0));
});

for (const crypto of providers) {
  test(`key derivation and key check (${crypto.name})`, async () => {
    const k1 = new SecretKey(new Uint8Array(32).fill(1));
    const k2 = new SecretKey(new Uint8Array(32).fill(2));
    const d1 = await deriveKeys(crypto, k1);
    const all = Object.values(d1).map((v) => toHex(v as Uint8Array));
    assert.equal(new Set(all).size, 6, 'every label gives a distinct key');
    assert.ok(all.every((h) => h.length === 64));
    const id = new Uint8Array(16).fill(7);
    const stored = await keyCheckValue(crypto, d1, id);
    await checkKey(crypto, d1, id, stored);
    await assert.rejects(checkKey(crypto, await deriveKeys(crypto, k2), id, stored), WrongKeyError);
    await assert.rejects(checkKey(crypto, d1, new Uint8Array(16).fill(8), stored), WrongKeyError);
  });
}

test('both providers derive the same keys (HKDF-SHA256, RFC 5869 test case 1)', async () => {
  // RFC 5869 A.1
  const ikm = Buffer.from('0b'.repeat(22), 'hex');
  const salt = Buffer.from('000102030405060708090a0b0c', 'hex');
  const info = Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex');
  const okm = '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865';
  for (const c of providers) assert.equal(toHex(await c.hkdfSha256(ikm, salt, info, 42)), okm);
});
