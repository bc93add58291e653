// The Juicebox realm's edges with Coffer's own client (spec/juicebox.md §6-§9): tokens, malformed
// and refused requests, what the database holds, thresholds below n, the hardware wire's opacity.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { accountInfo, juiceboxDelete, juiceboxRecover, juiceboxRegister, noise, wire } from '@coffer/core/juicebox';
import { KeyDestroyedError, NotRegisteredError, VaultUnauthorizedError, WrongPasswordError } from '@coffer/core/vault';
import { issueJuiceboxToken } from '../src/juicebox/token.js';
import { CapturingFetch, runVault, tempDir, cleanup } from './helpers.js';
import { configuration, juiceboxTokens, startRealm, startRealms, type Realm } from './juicebox-helpers.js';

// The realm tests share three realms (each its own users); the 2-of-3 test stops one, so it runs last of them.
let shared: Awaited<ReturnType<typeof startRealms>> | undefined;
const sharedRealms = async () => (shared ??= await startRealms(3)).realms;
after(() => shared?.stop());

async function post(r: Realm, body: Uint8Array, headers: Record<string, string>): Promise<{ status: number; body: Uint8Array; text: string }> {
  const res = await fetch(new URL('req', r.address), { method: 'POST', headers: { 'x-juicebox-version': wire.JUICEBOX_WIRE_VERSION, ...headers }, body: body as Uint8Array<ArrayBuffer> });
  const b = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, body: b, text: new TextDecoder().decode(b) };
}

test('tokens: the realm takes only its own, well-formed, short-lived tokens (EdDSA tenant key)', async (t) => {
  const dir = tempDir('coffer-jb-token-');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  writeFileSync(join(dir, 'app.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
  const init = await runVault(['init', '--data-dir', join(dir, 'realm'), '--token-public-key', join(dir, 'app.pub.pem'), '--json']);
  assert.equal(init.code, 0, init.stderr);
  const realm = await startRealm(join(dir, 'realm'));
  t.after(async () => {
    await realm.proc.stop();
    cleanup(dir);
  });
  const signer = { alg: 'EdDSA' as const, privateKey };
  const good = issueJuiceboxToken(signer, { user: 'eve', realmIdHex: realm.id, ttlSeconds: 600 });
  const recover1 = wire.encodeSecretsRequest({ kind: 'Recover1' });
  assert.equal((await post(realm, recover1, { authorization: `Bearer ${good}` })).status, 200);

  const now = Date.now();
  const tamper = (tok: string, f: (h: Record<string, unknown>, c: Record<string, unknown>) => void) => {
    const [h, c] = tok.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>);
    f(h!, c!);
    const input = `${Buffer.from(JSON.stringify(h)).toString('base64url')}.${Buffer.from(JSON.stringify(c)).toString('base64url')}`;
    return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
  };
  const bad: [string, string][] = [
    ['another realm', issueJuiceboxToken(signer, { user: 'eve', realmIdHex: '00'.repeat(16), ttlSeconds: 600 })],
    ['expired', issueJuiceboxToken(signer, { user: 'eve', realmIdHex: realm.id, ttlSeconds: 60, nowMs: now - 3_600_000 })],
    ['not valid yet', issueJuiceboxToken(signer, { user: 'eve', realmIdHex: realm.id, ttlSeconds: 60, nowMs: now + 3_600_000 })],
    ['lives longer than 24 h', tamper(good, (_h, c) => (c['exp'] = (c['nbf'] as number) + 86_401))],
    ['no nbf', tamper(good, (_h, c) => delete c['nbf'])],
    ['iss is not the tenant of kid', tamper(good, (_h, c) => (c['iss'] = 'other'))],
    ['unknown tenant', tamper(good, (h, c) => ((h['kid'] = 'acme:1'), (c['iss'] = 'acme')))],
    ['unknown key version', tamper(good, (h) => (h['kid'] = 'coffer:2'))],
    ['critical extension', tamper(good, (h) => (h['crit'] = ['exp']))],
    ['audit scope', tamper(good, (_h, c) => (c['scope'] = 'audit'))],
    ['HS256 instead of EdDSA', tamper(good, (h) => (h['alg'] = 'HS256'))],
    ['non-canonical signature', good.slice(0, -1) + String.fromCharCode(good.charCodeAt(good.length - 1) + 1)],
    ['wrong signature', good.slice(0, -4) + (good.endsWith('AAAA') ? 'BAAA' : 'AAAA')],
    ['empty', ''],
  ];
  for (const [why, tok] of bad) {
    const r = await post(realm, recover1, { authorization: `Bearer ${tok}` });
    assert.equal(r.status, 401, `${why}: ${r.text}`);
    assert.ok(!r.text.includes(tok.slice(20, 60)) || tok === '', 'the token never comes back');
  }
  assert.equal((await post(realm, recover1, { authorization: `Bearer ${good}` })).status, 200, 'the good token still works');
  assert.ok(!realm.proc.logs().includes(good.split('.')[2]!), 'no token in the logs');

  // Our client says what to do about it.
  const conn = { configuration: configuration([realm], {}), token: () => bad[0]![1] };
  await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('x'), info: accountInfo('eve') }), VaultUnauthorizedError);
});

test('realm edges: version header, malformed bodies, unusable registrations, unknown users; records sealed in the database', async () => {
  const r = await sharedRealms();
  const tokens = juiceboxTokens(r, 'alice');
  const auth = { authorization: `Bearer ${tokens[r[0]!.id]}` };
  const recover1 = wire.encodeSecretsRequest({ kind: 'Recover1' });

  assert.equal((await post(r[0]!, recover1, { ...auth, 'x-juicebox-version': '0.2.9' })).status, 426);
  assert.equal((await post(r[0]!, wire.encodeCbor('Register3'), auth)).status, 400);
  assert.equal((await post(r[0]!, new Uint8Array(9000), auth)).status, 413);
  assert.equal((await post(r[0]!, recover1, {})).status, 401, 'no token, and not a hardware-realm envelope');
  const r1 = await post(r[0]!, recover1, auth);
  assert.deepEqual(wire.parseSecretsResponse(r1.body), { kind: 'Recover1', status: 'NotRegistered' });

  // A Register2 whose public key is not the private key's, or that allows 0 or too many guesses.
  const k = randomBytes(32);
  k[31]! &= 0x0f;
  const base: wire.Register2Request = {
    version: randomBytes(16),
    oprfPrivateKey: k,
    oprfSignedPublicKey: { publicKey: randomBytes(32), verifyingKey: randomBytes(32), signature: randomBytes(64) },
    unlockKeyCommitment: randomBytes(32),
    unlockKeyTag: randomBytes(16),
    encryptionKeyScalarShare: new Uint8Array(32),
    encryptedSecret: randomBytes(145),
    encryptedSecretCommitment: randomBytes(16),
    numGuesses: 10,
  };
  const reg2 = (over: Partial<wire.Register2Request>) => wire.encodeSecretsRequest({ kind: 'Register2', request: { ...base, ...over } });
  assert.match((await post(r[0]!, reg2({}), auth)).text, /public key does not belong/);
  const { jbcrypto } = await import('@coffer/core/juicebox');
  const pk = jbcrypto.mulBase(jbcrypto.scalarFromBytes(k)).toBytes();
  for (const n of [0, 101]) {
    const res = await post(r[0]!, reg2({ oprfSignedPublicKey: { ...base.oprfSignedPublicKey, publicKey: pk }, numGuesses: n }), auth);
    assert.equal(res.status, 400, res.text);
    assert.match(res.text, /num_guesses must be 1 to 100/);
  }
  assert.deepEqual(wire.parseSecretsResponse((await post(r[0]!, recover1, auth)).body), { kind: 'Recover1', status: 'NotRegistered' }, 'nothing was stored');

  // Registration through a capturing transport: nothing secret of it may appear in a database file.
  const cap = new CapturingFetch();
  const conn = { configuration: configuration(r), token: (id: string) => tokens[id]!, fetch: cap.fetch };
  const K = randomBytes(32);
  await juiceboxRegister({ ...conn, pin: Buffer.from('pin'), secret: K, info: accountInfo('alice'), numGuesses: 5 });
  const sent = cap.requests.map((b) => wire.parseSecretsRequest(b)).filter((q): q is Extract<wire.SecretsRequest, { kind: 'Register2' }> => q.kind === 'Register2');
  assert.equal(sent.length, 3);
  for (const realm of r) {
    const files = readdirSync(realm.dataDir).filter((f) => f.startsWith('records.sqlite'));
    const raw = Buffer.concat(files.map((f) => readFileSync(join(realm.dataDir, f))));
    for (const q of sent) {
      for (const [what, bytes] of Object.entries({ key: q.request.oprfPrivateKey, tag: q.request.unlockKeyTag, share: q.request.encryptionKeyScalarShare, secret: q.request.encryptedSecret })) {
        assert.equal(raw.indexOf(Buffer.from(bytes)), -1, `${what} in the clear in ${realm.dataDir}`);
      }
    }
  }
  assert.deepEqual(Buffer.from(await juiceboxRecover({ ...conn, pin: Buffer.from('pin'), info: accountInfo('alice') })), K);
  await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('pin'), info: accountInfo('mallory') }), WrongPasswordError, 'info is salt');
  const bobTokens = juiceboxTokens(r, 'bob');
  await assert.rejects(juiceboxRecover({ ...conn, token: (id: string) => bobTokens[id]!, pin: Buffer.from('pin'), info: accountInfo('alice') }), NotRegisteredError, 'each user has their own record');
  await juiceboxDelete(conn);
  await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('pin'), info: accountInfo('alice') }), NotRegisteredError);
});

test('hardware wire: every body is a Noise envelope, every answer one size, and sensitive requests never ride in a handshake', async () => {
  const r = await sharedRealms();
  const tokens = juiceboxTokens(r, 'dave');
  const cap = new CapturingFetch();
  const conn = { configuration: configuration(r, { hardware: true }), token: (id: string) => tokens[id]!, fetch: cap.fetch };
  const K = randomBytes(32);
  await juiceboxRegister({ ...conn, pin: Buffer.from('pin'), secret: K, info: accountInfo('dave'), numGuesses: 5 });
  await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('nip'), info: accountInfo('dave') }), WrongPasswordError);
  assert.deepEqual(Buffer.from(await juiceboxRecover({ ...conn, pin: Buffer.from('pin'), info: accountInfo('dave') })), K);
  const sizes = new Set<number>();
  for (const body of cap.requests) assert.ok(wire.isClientRequest(wire.decodeCbor(body)));
  for (const body of cap.responses) {
    const res = wire.parseClientResponse(body);
    assert.ok('ok' in res);
    if ('transport' in res.ok) sizes.add(res.ok.transport.length);
    else if (res.ok.handshake.payloadCiphertext.length > 16) sizes.add(res.ok.handshake.payloadCiphertext.length);
  }
  assert.equal(sizes.size, 1, `one answer size, got ${[...sizes].join(', ')}`);
  assert.equal(cap.responses.some((b) => Buffer.from(b).includes(K)), false);

  // A Recover2 in the handshake itself (no forward secrecy) is refused.
  const hs = noise.clientHandshake(Buffer.from(r[0]!.publicKey, 'hex'), wire.encodeSecretsRequest({ kind: 'Recover2', version: new Uint8Array(16), blindedInput: new Uint8Array(32) }));
  const body = wire.encodeClientRequest({ realm: Buffer.from(r[0]!.id, 'hex'), authToken: tokens[r[0]!.id]!, sessionId: 7, kind: 'SecretsRequest', encrypted: { handshake: { clientEphemeralPublic: hs.clientEphemeralPublic, payloadCiphertext: hs.payloadCiphertext } } });
  assert.deepEqual(wire.parseClientResponse((await post(r[0]!, body, {})).body), { error: 'SessionError' });
  const transport = wire.encodeClientRequest({ realm: Buffer.from(r[0]!.id, 'hex'), authToken: tokens[r[0]!.id]!, sessionId: 12345, kind: 'SecretsRequest', encrypted: { transport: new Uint8Array(40) } });
  assert.deepEqual(wire.parseClientResponse((await post(r[0]!, transport, {})).body), { error: 'MissingSession' });
  const badAuth = wire.encodeClientRequest({ realm: Buffer.from(r[0]!.id, 'hex'), authToken: 'x.y.z', sessionId: 1, kind: 'HandshakeOnly', encrypted: { transport: new Uint8Array(40) } });
  assert.deepEqual(wire.parseClientResponse((await post(r[0]!, badAuth, {})).body), { error: 'InvalidAuth' });
});

test('2-of-3: recovery survives one realm down; each realm allows G = 5 so that the bound is 10', async () => {
  const r = await sharedRealms();
  const tokens = juiceboxTokens(r, 'carol');
  const conn = { configuration: configuration(r, { threshold: 2 }), token: (id: string) => tokens[id]! };
  const K = randomBytes(32);
  await juiceboxRegister({ ...conn, pin: Buffer.from('pin'), secret: K, info: accountInfo('carol'), numGuesses: 5 });
  await r[2]!.proc.stop();
  assert.deepEqual(Buffer.from(await juiceboxRecover({ ...conn, pin: Buffer.from('pin'), info: accountInfo('carol'), timeoutMs: 2000 })), K);
  for (const left of [4, 3, 2, 1]) {
    await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('no'), info: accountInfo('carol'), timeoutMs: 2000 }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === left);
  }
  await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('no'), info: accountInfo('carol'), timeoutMs: 2000 }), KeyDestroyedError);
  await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('pin'), info: accountInfo('carol'), timeoutMs: 2000 }), KeyDestroyedError);
});

test('vault token --audience juicebox: at most 24 hours; bad audiences are usage errors', async (t) => {
  const dir = tempDir('coffer-jb-cli-');
  t.after(() => cleanup(dir));
  assert.equal((await runVault(['init', '--data-dir', dir, '--hsm', 'software', '--json'])).code, 0);
  const long = await runVault(['token', '--data-dir', dir, '--account', 'a', '--audience', 'juicebox', '--ttl', '86401']);
  assert.equal(long.code, 2);
  assert.match(long.stderr, /at most 24 hours/);
  assert.equal((await runVault(['token', '--data-dir', dir, '--account', 'a', '--audience', 'other'])).code, 2);
  const ok = await runVault(['token', '--data-dir', dir, '--account', 'a', '--audience', 'juicebox', '--json']);
  const j = JSON.parse(ok.stdout) as { realmId: string; token: string; audience: string };
  assert.match(j.realmId, /^[0-9a-f]{32}$/);
  assert.equal(JSON.parse(Buffer.from(j.token.split('.')[1]!, 'base64url').toString()).aud, j.realmId);
});
