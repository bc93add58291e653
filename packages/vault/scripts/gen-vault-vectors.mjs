#!/usr/bin/env node
// Generates packages/vault/test/vectors/vault-v1.json: test vectors for spec/vault-protocol.md
// (channel request §6.1, response §6.3, key wrapping §7.2, release §7.4), each naming the outcome
// a decoder must reach. Inputs are fixed bytes; outputs come from @coffer/core/vault's WebCrypto code.
//   npx tsc -b packages/vault && node packages/vault/scripts/gen-vault-vectors.mjs

import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { protocol } from '@coffer/core/vault';

const hex = (b) => Buffer.from(b).toString('hex');
const bytes = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) & 0xff);

const suite = protocol.hpkeSuite();
const realmIkm = bytes(32, 1);
const kp = await suite.kem.deriveKeyPair(realmIkm);
const pkR = new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey));
const skR = new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey));
const realmId = bytes(16, 2);
const realmPublicKey = protocol.formatRealmPublicKey(realmId, pkR);
const realm = protocol.parseRealmPublicKey(realmPublicKey);

const innerJson = JSON.stringify({ v: 1, op: 'status', id: protocol.b64u(bytes(16, 3)), ts: 1795000000000, realm: realm.realmIdText, account: 'alice', body: {} });
const ekm = bytes(32, 4);
const req = await protocol.sealRequestPlaintext(realm, protocol.utf8(innerJson), { ekm });
const tampered = Uint8Array.from(req.body);
tampered[100] ^= 0x01;

const response = { v: 1, id: protocol.b64u(bytes(16, 3)), status: 'ok', registered: false };
const nonceR = bytes(32, 5);
const resp = await protocol.sealResponse(req.context, req.enc, response, { nonce: nonceR });

const exportKey = bytes(64, 6);
const K = bytes(32, 7);
const wrapNonce = bytes(12, 8);
const wrapped = await protocol.wrapBackupKey(exportKey, realm.realmIdText, 'alice', K, { nonce: wrapNonce });

const sessionKey = bytes(64, 9);
const releaseNonce = bytes(12, 10);
const released = await protocol.sealRelease(sessionKey, response.id, wrapped, { nonce: releaseNonce });

const vectors = {
  protocol: 'coffer-vault-v1',
  spec: 'spec/vault-protocol.md',
  generator: 'packages/vault/scripts/gen-vault-vectors.mjs',
  realm: { ikm: hex(realmIkm), skR: hex(skR), pkR: hex(pkR), realmId: hex(realmId), realmIdText: realm.realmIdText, realmPublicKey },
  cases: [
    { name: 'request', section: '6.1', expect: 'success', ekm: hex(ekm), plaintextJson: innerJson, enc: hex(req.enc), body: hex(req.body) },
    { name: 'request-tampered', section: '6.2', expect: 'undecryptable-request', body: hex(tampered) },
    { name: 'request-wrong-version-byte', section: '6.2', expect: 'malformed-request', body: hex(Uint8Array.from(req.body, (x, i) => (i === 0 ? 2 : x))) },
    { name: 'response', section: '6.3', expect: 'success', request: 'request', nonceR: hex(nonceR), responseJson: JSON.stringify(response), body: hex(resp) },
    { name: 'response-tampered', section: '6.3', expect: 'open-fails', request: 'request', body: hex(Uint8Array.from(resp, (x, i) => (i === 40 ? x ^ 1 : x))) },
    { name: 'wrapped-key', section: '7.2', expect: 'success', exportKey: hex(exportKey), account: 'alice', backupKey: hex(K), nonce: hex(wrapNonce), wrappedKey: hex(wrapped) },
    { name: 'wrapped-key-other-account', section: '7.2', expect: 'unwrap-fails', exportKey: hex(exportKey), account: 'bob', wrappedKey: hex(wrapped) },
    { name: 'release', section: '7.4', expect: 'success', sessionKey: hex(sessionKey), requestId: response.id, wrappedKey: hex(wrapped), nonce: hex(releaseNonce), released: hex(released) },
    { name: 'release-other-request', section: '7.4', expect: 'open-fails', sessionKey: hex(sessionKey), requestId: protocol.b64u(bytes(16, 11)), released: hex(released) },
  ],
};
const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'vectors', 'vault-v1.json');
writeFileSync(out, JSON.stringify(vectors, null, 2) + '\n');
console.log(`wrote ${out}`);
