// The Juicebox realm as a protocol of the vault server, in process (spec/juicebox.md §6): the
// guess is durable before Recover2 answers, destruction and Delete leave no earlier version in
// the SQLite files, the realm's AAD is the one the spec writes, and its tokens go through the
// vault's one verifier.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { accountInfo, jbcrypto, juiceboxDelete, juiceboxRecover, juiceboxRegister, parseConfiguration, wire, type JuiceboxConnection } from '@coffer/core/juicebox';
import { KeyDestroyedError, protocol, WrongPasswordError } from '@coffer/core/vault';
import type { Hsm } from '../src/hsm/types.js';
import { JuiceboxRealm, juiceboxProtocol, recordKey } from '../src/juicebox/index.js';
import { initRealm, openRealm } from '../src/realm.js';
import { RecordSealer } from '../src/records.js';
import { buildVaultServer, type VaultServer } from '../src/server.js';
import { SqliteRecordStore } from '../src/store/sqlite.js';
import { cleanup, FaultyStore, tempDir } from './helpers.js';

describe('Juicebox realm on the vault server (in process, software HSM, SQLite)', () => {
  let dir: string;
  let hsm: Hsm;
  let realm: JuiceboxRealm;
  let store: FaultyStore;
  let server: VaultServer;
  let address: string;

  before(async () => {
    dir = tempDir('coffer-jb-realm-');
    const quiet = () => undefined;
    await initRealm({ dataDir: dir, hsm: 'software', warn: quiet });
    const opened = await openRealm(dir, { warn: quiet });
    hsm = opened.hsm;
    realm = await JuiceboxRealm.start({ file: opened.file, hsm, policy: opened.boundary.policy });
    store = new FaultyStore(SqliteRecordStore.open(join(dir, 'records.sqlite')));
    server = await buildVaultServer({
      boundary: opened.boundary,
      store,
      realmPublicKey: opened.file.realmPublicKey,
      logger: false,
      rateLimits: { perAccount: false, perAddress: false },
      protocols: [juiceboxProtocol(realm)],
    });
    address = `${await server.app.listen({ host: '127.0.0.1', port: 0 })}/`;
  });
  after(async () => {
    await server.app.close();
    await store.close();
    await hsm.close();
    cleanup(dir);
  });

  const conn = (user: string): JuiceboxConnection => {
    const token = realm.issueDevelopmentToken(user, 600);
    return {
      configuration: parseConfiguration({ realms: [{ id: realm.realmIdHex, address, public_key: null }], register_threshold: 1, recover_threshold: 1, pin_hashing_mode: 'FastInsecure' }),
      token: () => token,
    };
  };
  const register = (user: string, numGuesses: number) => juiceboxRegister({ ...conn(user), pin: Buffer.from('right pin'), secret: new Uint8Array(32).fill(9), info: accountInfo(user), numGuesses });
  const recover = (user: string, pin: string) => juiceboxRecover({ ...conn(user), pin: Buffer.from(pin), info: accountInfo(user) });
  const stored = async (user: string) => (await store.get(recordKey({ tenant: 'coffer', user })))!;
  const call = (user: string, q: wire.SecretsRequest) =>
    fetch(new URL('req', address), {
      method: 'POST',
      headers: { authorization: `Bearer ${realm.issueDevelopmentToken(user, 600)}`, 'x-juicebox-version': wire.JUICEBOX_WIRE_VERSION },
      body: wire.encodeSecretsRequest(q) as Uint8Array<ArrayBuffer>,
    });
  const attempts = async () => Number(/^coffer_vault_login_attempts_total (\S+)$/m.exec(await server.metrics.registry.metrics())?.[1]);

  it('answers Recover2 only once the spent guess is durable: a failed commit releases no evaluation', async () => {
    await register('ada', 5);
    const before = await stored('ada');
    const paid = await attempts();
    store.failCommits = true;
    let res: Response;
    try {
      // Recover1 changes nothing and still answers; Recover2 must commit first.
      const r1 = wire.parseSecretsResponse(new Uint8Array(await (await call('ada', { kind: 'Recover1' })).arrayBuffer()));
      assert.ok(r1.kind === 'Recover1' && r1.status === 'Ok');
      res = await call('ada', { kind: 'Recover2', version: r1.version, blindedInput: jbcrypto.oprfBlind(new Uint8Array(32).fill(1)).blindedInput.toBytes() });
    } finally {
      store.failCommits = false;
    }
    assert.equal(res.status, 503);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/, 'never a body the SDK would decode as an answer');
    assert.match(await res.text(), /cannot reach its database/);
    assert.equal((await stored('ada')).version, before.version, 'nothing was written');
    assert.equal(await attempts(), paid, 'no guess was paid, and none released');
    assert.deepEqual(Buffer.from(await recover('ada', 'right pin')), Buffer.alloc(32, 9), 'the record is intact');
  });

  it('leaves no earlier version of a destroyed or deleted record in records.sqlite or its WAL', async () => {
    const files = () => Buffer.concat(['records.sqlite', 'records.sqlite-wal'].filter((f) => existsSync(join(dir, f))).map((f) => readFileSync(join(dir, f))));
    // 48 bytes of each sealed version's ciphertext: a version is readable iff they are in the files.
    const found = (sealed: Uint8Array) => files().includes(Buffer.from(sealed.subarray(12, 60)));

    const versions: Uint8Array[] = [];
    await register('pia', 3);
    versions.push((await stored('pia')).sealed);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(recover('pia', `wrong-${i}`), WrongPasswordError);
      versions.push((await stored('pia')).sealed);
    }
    assert.ok(versions.every(found), 'before destruction every version is still in the files (the search can fail)');
    await assert.rejects(recover('pia', 'wrong-last'), KeyDestroyedError);
    assert.equal(found((await stored('pia')).sealed), true, 'the tombstone is there');
    assert.deepEqual(versions.map(found), versions.map(() => false), 'no earlier version left once NoGuesses was answered');
    await assert.rejects(recover('pia', 'right pin'), KeyDestroyedError, 'the right PIN is too late');

    const dv: Uint8Array[] = [];
    await register('quinn', 5);
    dv.push((await stored('quinn')).sealed);
    await assert.rejects(recover('quinn', 'wrong'), WrongPasswordError);
    dv.push((await stored('quinn')).sealed);
    assert.ok(dv.every(found));
    await juiceboxDelete(conn('quinn'));
    assert.equal(await store.get(recordKey({ tenant: 'coffer', user: 'quinn' })), null);
    assert.deepEqual(dv.map(found), [false, false], 'nothing of a deleted record left');
  });

  it('seals records with the AAD of spec/juicebox.md §6.1, bound to the realm, the record key and the version', async () => {
    const key = recordKey({ tenant: 'coffer', user: 'ada' });
    const be2 = (n: number) => new Uint8Array([n >> 8, n & 255]);
    const k = protocol.utf8(key);
    const spec = protocol.concat(protocol.utf8('coffer-juicebox-v1 record'), be2(16), realm.realmId, be2(k.length), k, protocol.u64be(7));
    const sealer = new RecordSealer<{ account: string }>({ hsm, recordKeyLabel: 'unused', aadLabel: 'coffer-juicebox-v1 record', realm: realm.realmId });
    assert.deepEqual(Buffer.from(sealer.aad(key, 7)), Buffer.from(spec));
    // A row copied to another user's key (at a version it could have there) does not unseal.
    await register('bea', 4);
    const moved = await stored('ada');
    const other = recordKey({ tenant: 'coffer', user: 'bea' });
    const current = (await store.get(other))!;
    assert.ok(moved.version > current.version, 'ada has had more changes than bea');
    assert.equal(await store.commit(other, { kind: 'put', expectedVersion: current.version, newVersion: moved.version, sealed: moved.sealed }), 'ok');
    const res = await call('bea', { kind: 'Recover1' });
    assert.equal(res.status, 500);
    assert.match(await res.text(), /cannot read the record/);
  });
});
