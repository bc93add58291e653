// Runs the protocol test vectors (test/vectors/vault-v1.json, made by scripts/gen-vault-vectors.mjs)
// against the client's WebCrypto code, the server's node:crypto twins, and the real Boundary.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { protocol } from '@coffer/core/vault';
import { Boundary, RequestRejectedError, realmSecretsAad } from '../src/boundary.js';
import { sealRelease as nodeSealRelease, sealResponse as nodeSealResponse } from '../src/channel.js';
import { SoftwareHsmDevelopmentOnly } from '../src/hsm/software.js';
import { issueToken } from '../src/token.js';
import { cleanup, tempDir } from './helpers.js';

type Case = Record<string, string> & { name: string; expect: string };
const here = dirname(fileURLToPath(import.meta.url));
const V = JSON.parse(readFileSync(join(here, '..', '..', 'test', 'vectors', 'vault-v1.json'), 'utf8')) as {
  realm: Record<string, string>;
  cases: Case[];
};
const h = (x: string) => new Uint8Array(Buffer.from(x, 'hex'));
const c = (name: string) => V.cases.find((x) => x.name === name)!;
const realm = protocol.parseRealmPublicKey(V.realm['realmPublicKey']!);
const suite = protocol.hpkeSuite();

async function recipient(body: Uint8Array) {
  const rc = await suite.createRecipientContext({
    recipientKey: await suite.kem.deserializePrivateKey(h(V.realm['skR']!)),
    enc: body.slice(1, 33),
    info: protocol.requestInfo(realm.realmId),
  });
  const pt = new Uint8Array(await rc.open(body.slice(33), protocol.requestAad(realm.realmId)));
  return { rc, pt };
}

describe('protocol v1 test vectors', () => {
  it('covers every case in the file', () => {
    assert.equal(V.cases.length, 9);
    assert.equal(new Set(V.cases.map((x) => x.expect)).size >= 4, true);
  });

  it('request (§6.1): the client reproduces it byte for byte and a recipient opens it', async () => {
    const v = c('request');
    assert.equal(protocol.formatRealmPublicKey(h(V.realm['realmId']!), h(V.realm['pkR']!)), V.realm['realmPublicKey']);
    const kp = await suite.kem.deriveKeyPair(h(V.realm['ikm']!));
    assert.equal(Buffer.from(await suite.kem.serializePublicKey(kp.publicKey)).toString('hex'), V.realm['pkR']);
    const s = await protocol.sealRequestPlaintext(realm, protocol.utf8(v['plaintextJson']!), { ekm: h(v['ekm']!) });
    assert.equal(Buffer.from(s.body).toString('hex'), v['body']);
    const { pt } = await recipient(h(v['body']!));
    assert.equal(protocol.fromUtf8(protocol.unpad(pt)), v['plaintextJson']);
  });

  it('response (§6.3): client and server implementations both reproduce it; tampering fails', async () => {
    const v = c('response');
    const req = await protocol.sealRequestPlaintext(realm, protocol.utf8(c('request')['plaintextJson']!), { ekm: h(c('request')['ekm']!) });
    const obj = JSON.parse(v['responseJson']!) as protocol.InnerResponse;
    assert.equal(Buffer.from(await protocol.sealResponse(req.context, req.enc, obj, { nonce: h(v['nonceR']!) })).toString('hex'), v['body']);
    const { rc } = await recipient(req.body);
    assert.equal(Buffer.from(await nodeSealResponse(rc, req.enc, obj, { nonce: h(v['nonceR']!) })).toString('hex'), v['body'], 'server twin');
    assert.deepEqual(await protocol.openResponse(req.context, req.enc, h(v['body']!)), obj);
    await assert.rejects(protocol.openResponse(req.context, req.enc, h(c('response-tampered')['body']!)));
  });

  it('wrapped key (§7.2): reproduced, unwraps, and fails for another account', async () => {
    const v = c('wrapped-key');
    const w = await protocol.wrapBackupKey(h(v['exportKey']!), realm.realmIdText, v['account']!, h(v['backupKey']!), { nonce: h(v['nonce']!) });
    assert.equal(Buffer.from(w).toString('hex'), v['wrappedKey']);
    assert.equal(Buffer.from(await protocol.unwrapBackupKey(h(v['exportKey']!), realm.realmIdText, v['account']!, w)).toString('hex'), v['backupKey']);
    const bad = c('wrapped-key-other-account');
    await assert.rejects(protocol.unwrapBackupKey(h(bad['exportKey']!), realm.realmIdText, bad['account']!, h(bad['wrappedKey']!)));
  });

  it('release (§7.4): client and server implementations reproduce it; another request id fails', async () => {
    const v = c('release');
    const viaCore = await protocol.sealRelease(h(v['sessionKey']!), v['requestId']!, h(v['wrappedKey']!), { nonce: h(v['nonce']!) });
    assert.equal(Buffer.from(viaCore).toString('hex'), v['released']);
    assert.equal(Buffer.from(nodeSealRelease(h(v['sessionKey']!), v['requestId']!, h(v['wrappedKey']!), { nonce: h(v['nonce']!) })).toString('hex'), v['released']);
    assert.equal(Buffer.from(await protocol.openRelease(h(v['sessionKey']!), v['requestId']!, h(v['released']!))).toString('hex'), v['wrappedKey']);
    const bad = c('release-other-request');
    await assert.rejects(protocol.openRelease(h(bad['sessionKey']!), bad['requestId']!, h(bad['released']!)));
  });

  describe('through the real Boundary', () => {
    let dir: string;
    let hsm: SoftwareHsmDevelopmentOnly;
    let boundary: Boundary;
    let token: string;
    before(async () => {
      dir = tempDir('coffer-vectors-');
      hsm = SoftwareHsmDevelopmentOnly.open(join(dir, 'k.json'), () => {});
      await hsm.generateKey('realm');
      await hsm.generateKey('records');
      await opaque.ready;
      const tokenSecret = new Uint8Array(randomBytes(32));
      const secrets = {
        opaqueServerSetup: opaque.server.createSetup(),
        hpkePrivateKey: protocol.b64u(h(V.realm['skR']!)),
        ticketKey: protocol.b64u(new Uint8Array(randomBytes(32))),
        tokenSecret: protocol.b64u(tokenSecret),
      };
      const sealed = await hsm.seal('realm', protocol.utf8(JSON.stringify(secrets)), realmSecretsAad(realm.realmId));
      const ts = (JSON.parse(c('request')['plaintextJson']!) as { ts: number }).ts;
      boundary = await Boundary.start({
        realmIdText: realm.realmIdText,
        realmPublicKey: V.realm['realmPublicKey']!,
        hsm,
        realmKeyLabel: 'realm',
        recordKeyLabel: 'records',
        sealedSecrets: sealed,
        now: () => ts,
      });
      token = issueToken({ alg: 'HS256', secret: tokenSecret }, { account: 'alice', audience: boundary.audience, ttlSeconds: 60, nowMs: ts });
    });
    after(async () => {
      await hsm.close();
      cleanup(dir);
    });

    for (const name of ['request', 'request-tampered', 'request-wrong-version-byte']) {
      it(`${name}: ${V.cases.find((x) => x.name === name)!.expect}`, async () => {
        const v = c(name);
        const result = await boundary.openRequest(token, h(v['body']!)).then(
          () => 'success',
          (e: unknown) => (e instanceof RequestRejectedError ? e.code : `unexpected ${String(e)}`),
        );
        assert.equal(result, v.expect);
      });
    }
  });
});
