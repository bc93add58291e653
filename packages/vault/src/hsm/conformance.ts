// One conformance suite for every Hsm implementation (ARCHITECTURE.md). Uses node:test.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { HsmKeyExistsError, HsmKeyNotFoundError, UnsealFailedError } from '../errors.js';
import type { Hsm } from './types.js';

/** What the Hsm conformance suite runs against: an Hsm and how to dispose of it. */
export interface HsmFixture {
  hsm: Hsm;
  /** Closes `hsm` and opens the same key store again (persistence check). */
  reopen(): Promise<Hsm>;
  cleanup(): Promise<void>;
}

/** Registers the Hsm conformance suite (node:test) for the implementation `setup` makes. */
export function hsmConformance(name: string, setup: () => Promise<HsmFixture>): void {
  describe(`Hsm conformance: ${name}`, () => {
    let fx: HsmFixture;
    let hsm: Hsm;
    const label = `conf-${randomBytes(4).toString('hex')}`;
    const aad = new TextEncoder().encode('account-1|v7');
    before(async () => {
      fx = await setup();
      hsm = fx.hsm;
      await hsm.generateKey(label);
    });
    after(async () => {
      await fx.cleanup();
    });

    it('reports the keys it has', async () => {
      assert.equal(await hsm.hasKey(label), true);
      assert.equal(await hsm.hasKey(`${label}-nope`), false);
    });

    it('answers the readiness probe', async () => {
      await hsm.probe();
    });

    it('refuses to generate a key twice under one label', async () => {
      await assert.rejects(hsm.generateKey(label), HsmKeyExistsError);
    });

    it('rejects empty and oversized plaintexts', async () => {
      await assert.rejects(hsm.seal(label, new Uint8Array(0), aad), RangeError);
      await assert.rejects(hsm.seal(label, new Uint8Array((1 << 20) + 1), aad), RangeError);
    });

    it('seals and unseals small and large plaintexts', async () => {
      for (const n of [1, 31, 32, 1000, 70_000]) {
        const pt = randomBytes(n);
        const s = await hsm.seal(label, pt, aad);
        assert.equal(s.length, 12 + n + 16, 'nonce || ciphertext || tag');
        assert.deepEqual(Buffer.from(await hsm.unseal(label, s, aad)), pt);
      }
    });

    it('uses a fresh nonce every time', async () => {
      const pt = new Uint8Array(16);
      const a = await hsm.seal(label, pt, aad);
      const b = await hsm.seal(label, pt, aad);
      assert.notDeepEqual(Buffer.from(a.subarray(0, 12)), Buffer.from(b.subarray(0, 12)));
      assert.notDeepEqual(Buffer.from(a), Buffer.from(b));
    });

    it('does not put the plaintext in the sealed output', async () => {
      const pt = Buffer.from('plaintext-marker-'.repeat(4));
      const s = Buffer.from(await hsm.seal(label, pt, aad));
      assert.equal(s.includes(Buffer.from('plaintext-marker')), false);
    });

    it('fails to unseal with the wrong AAD', async () => {
      const s = await hsm.seal(label, Buffer.from('secret'), aad);
      await assert.rejects(hsm.unseal(label, s, new TextEncoder().encode('account-1|v8')), UnsealFailedError);
      await assert.rejects(hsm.unseal(label, s, new Uint8Array(0)), UnsealFailedError);
    });

    it('fails to unseal tampered, truncated or foreign data', async () => {
      const s = await hsm.seal(label, Buffer.from('secret record'), aad);
      for (const i of [0, 11, 12, s.length - 17, s.length - 1]) {
        const t = Uint8Array.from(s);
        t[i] = (t[i] as number) ^ 0x01;
        await assert.rejects(hsm.unseal(label, t, aad), UnsealFailedError, `flip at ${i}`);
      }
      await assert.rejects(hsm.unseal(label, s.subarray(0, s.length - 1), aad), UnsealFailedError);
      await assert.rejects(hsm.unseal(label, s.subarray(0, 20), aad), UnsealFailedError);
      const other = `${label}-b`;
      await hsm.generateKey(other);
      await assert.rejects(hsm.unseal(other, s, aad), UnsealFailedError);
    });

    it('names a missing key', async () => {
      await assert.rejects(hsm.seal(`${label}-missing`, new Uint8Array(1), aad), HsmKeyNotFoundError);
      await assert.rejects(hsm.unseal(`${label}-missing`, new Uint8Array(40), aad), HsmKeyNotFoundError);
    });

    it('rejects bad labels', async () => {
      await assert.rejects(hsm.generateKey('bad label with spaces'), TypeError);
    });

    it('keeps keys across close and reopen', async () => {
      const s = await hsm.seal(label, Buffer.from('persist me'), aad);
      const closed = hsm;
      hsm = await fx.reopen();
      await assert.rejects(closed.probe(), 'a closed HSM fails the probe');
      assert.equal(await hsm.hasKey(label), true);
      assert.equal(Buffer.from(await hsm.unseal(label, s, aad)).toString(), 'persist me');
    });
  });
}
