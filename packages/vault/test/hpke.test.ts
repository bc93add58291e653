// The server's HPKE (node:crypto) against the client's (@hpke/core, Web Crypto): what one seals,
// the other opens, and both export the same secrets (RFC 9180, the suite of spec §2).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { protocol } from '@coffer/core/vault';
import { HpkeOpenError, HpkeRecipientKey } from '../src/hpke.js';

describe('HPKE recipient on node:crypto', () => {
  it('opens what @hpke/core seals and exports the same secrets, for random keys, infos, aads and lengths', async () => {
    const suite = protocol.hpkeSuite();
    for (let i = 0; i < 25; i++) {
      const kp = await suite.kem.generateKeyPair();
      const sk = new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey));
      const pk = new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey));
      const key = HpkeRecipientKey.fromPrivateKey(sk);
      assert.deepEqual(key.publicKey, pk, 'the same public key');
      const info = new Uint8Array(randomBytes(i * 3));
      const aad = new Uint8Array(randomBytes(i % 7));
      const pt = new Uint8Array(randomBytes(i * 97));
      const sender = await suite.createSenderContext({ recipientPublicKey: kp.publicKey, info });
      const ct = new Uint8Array(await sender.seal(pt, aad));
      const enc = new Uint8Array(sender.enc);
      const { plaintext, exporter } = key.open(enc, info, aad, ct);
      assert.deepEqual(plaintext, pt);
      for (const [ctx, len] of [[new Uint8Array(0), 32], [protocol.utf8('coffer-vault-v1 response'), 32], [new Uint8Array(randomBytes(40)), 77]] as const) {
        assert.deepEqual(exporter.exportSync(ctx, len), new Uint8Array(await sender.export(ctx, len)));
        assert.deepEqual(new Uint8Array(await exporter.export(ctx, len)), new Uint8Array(await sender.export(ctx, len)));
      }
      // What the server's HPKE opens, @hpke/core's recipient opens too.
      const rc = await suite.createRecipientContext({ recipientKey: kp, enc, info });
      assert.deepEqual(new Uint8Array(await rc.open(ct, aad)), pt);
    }
  });

  it('refuses tampering, another info or aad, another key and small-order points', async () => {
    const suite = protocol.hpkeSuite();
    const kp = await suite.kem.generateKeyPair();
    const key = HpkeRecipientKey.fromPrivateKey(new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey)));
    const info = protocol.utf8('info');
    const aad = protocol.utf8('aad');
    const sender = await suite.createSenderContext({ recipientPublicKey: kp.publicKey, info });
    const ct = new Uint8Array(await sender.seal(protocol.utf8('hello'), aad));
    const enc = new Uint8Array(sender.enc);
    assert.equal(protocol.fromUtf8(key.open(enc, info, aad, ct).plaintext), 'hello');
    const flip = (b: Uint8Array, i: number) => Uint8Array.from(b, (x, j) => (j === i ? x ^ 1 : x));
    for (const [what, f] of [
      ['ciphertext', () => key.open(enc, info, aad, flip(ct, 2))],
      ['tag', () => key.open(enc, info, aad, flip(ct, ct.length - 1))],
      ['enc', () => key.open(flip(enc, 5), info, aad, ct)],
      ['info', () => key.open(enc, protocol.utf8('infx'), aad, ct)],
      ['aad', () => key.open(enc, info, protocol.utf8('aax'), ct)],
      ['short', () => key.open(enc, info, aad, ct.subarray(0, 10))],
      ['zero point', () => key.open(new Uint8Array(32), info, aad, ct)],
      ['order-8 point', () => key.open(Uint8Array.from(Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex')), info, aad, ct)],
    ] as const) {
      assert.throws(f, HpkeOpenError, what);
    }
    const other = HpkeRecipientKey.fromPrivateKey(new Uint8Array(randomBytes(32)));
    assert.throws(() => other.open(enc, info, aad, ct), HpkeOpenError, 'another key');
  });
});
