// One Juicebox realm on two vault nodes (two SoftHSM2 tokens, keys copied by the ceremony, one
// real PostgreSQL): each realm stays highly available on its own, and the guess limit holds
// across its nodes; Noise sessions live in one node's memory (spec/juicebox.md §9).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { accountInfo, juiceboxRecover, juiceboxRegister, noise, parseConfiguration, wire } from '@coffer/core/juicebox';
import { cleanup, runVault, startVault, tempDir, type VaultProcess } from './helpers.js';
import { attackerAttempt, type Realm } from './juicebox-helpers.js';
import { startPostgres, type PostgresServer } from './postgres-server.js';

function ok(r: { code: number; stderr: string }, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
}

describe('one Juicebox realm on two nodes over PostgreSQL', () => {
  let pg: PostgresServer;
  let root: string;
  const dirs: string[] = [];
  let nodes: VaultProcess[] = [];
  let realmId = '';
  let publicKey = '';
  const asRealm = (n: VaultProcess, i: number): Realm => ({ dataDir: dirs[i]!, proc: n, id: realmId, publicKey, address: `${n.url}/` });
  const token = async (account: string) => {
    const r = await runVault(['token', '--data-dir', dirs[0]!, '--account', account, '--audience', 'juicebox', '--json']);
    ok(r, 'token');
    return (JSON.parse(r.stdout) as { token: string }).token;
  };

  before(async () => {
    root = tempDir('coffer-jb-multinode-');
    for (const n of ['a', 'b']) dirs.push(join(root, n));
    pg = await startPostgres();
    ok(await runVault(['migrate', '--database', pg.url]), 'migrate');
    ok(await runVault(['init', '--data-dir', dirs[0]!, '--hsm', 'softhsm', '--multi-node', '--json']), 'init');
    const d = dirs[1]!;
    ok(await runVault(['hsm', 'transport-key', '--data-dir', d, '--out', `${d}-transport.json`]), 'transport-key');
    const fp = (JSON.parse(readFileSync(`${d}-transport.json`, 'utf8')) as { fingerprint: string }).fingerprint;
    ok(await runVault(['hsm', 'export-wrapped', '--data-dir', dirs[0]!, '--to', `${d}-transport.json`, '--fingerprint', fp, '--out', `${d}-bundle.json`]), 'export');
    ok(await runVault(['hsm', 'import-wrapped', '--data-dir', d, '--in', `${d}-bundle.json`]), 'import');
    nodes = await Promise.all(dirs.map((dir) => startVault(dir, {}, ['--database', pg.url, '--account-rate', '0', '--address-rate', '0', '--log-level', 'warn'])));
    const listening = nodes.map((n) => JSON.parse(n.logs().split('\n').find((l) => l.includes('"event":"listening"'))!) as { realmId: string; juiceboxPublicKey: string });
    assert.equal(new Set(listening.map((l) => l.realmId)).size, 1, 'one realm id');
    assert.equal(new Set(listening.map((l) => l.juiceboxPublicKey)).size, 1, 'one Noise key, derived from the shared sealed secrets');
    realmId = listening[0]!.realmId;
    publicKey = listening[0]!.juiceboxPublicKey;
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    pg?.destroy();
    if (root) cleanup(root);
  });

  it('200 concurrent Recover2 spread over both nodes are granted exactly the limit; a registration made on one node recovers on the other', async () => {
    const tok = await token('shared');
    const cfg = (n: number, hardware = false) => parseConfiguration({ realms: [{ id: realmId, address: `${nodes[n]!.url}/`, public_key: hardware ? publicKey : null }], register_threshold: 1, recover_threshold: 1, pin_hashing_mode: 'FastInsecure' });
    const K = new Uint8Array(32).fill(9);
    await juiceboxRegister({ configuration: cfg(0), token: () => tok, pin: Buffer.from('pw'), secret: K, info: accountInfo('shared'), numGuesses: 10 });
    assert.deepEqual(await juiceboxRecover({ configuration: cfg(1, true), token: () => tok, pin: Buffer.from('pw'), info: accountInfo('shared') }), K);
    const attempts = await Promise.all(Array.from({ length: 200 }, (_, i) => attackerAttempt([asRealm(nodes[i % 2]!, i % 2)], { [realmId]: tok })));
    assert.equal(attempts.filter((a) => a.test).length, 10, 'exactly the limit, summed over the nodes');
    await assert.rejects(juiceboxRecover({ configuration: cfg(0), token: () => tok, pin: Buffer.from('pw'), info: accountInfo('shared') }), { name: 'KeyDestroyedError' });
  });

  it('a Noise session opened on one node is unknown to the other (MissingSession), which a client answers with a new handshake', async () => {
    const tok = await token('sticky');
    const hs = noise.clientHandshake(Buffer.from(publicKey, 'hex'), new Uint8Array(0));
    const post = async (n: VaultProcess, r: wire.ClientRequest) =>
      wire.parseClientResponse(new Uint8Array(await (await fetch(new URL('/req', n.url), { method: 'POST', headers: { 'x-juicebox-version': wire.JUICEBOX_WIRE_VERSION }, body: wire.encodeClientRequest(r) as Uint8Array<ArrayBuffer> })).arrayBuffer()));
    const base = { realm: Buffer.from(realmId, 'hex'), authToken: tok, sessionId: 99 };
    const a = await post(nodes[0]!, { ...base, kind: 'HandshakeOnly', encrypted: { handshake: { clientEphemeralPublic: hs.clientEphemeralPublic, payloadCiphertext: hs.payloadCiphertext } } });
    assert.ok('ok' in a && 'handshake' in a.ok);
    const { transport } = hs.finish(a.ok.handshake.serverEphemeralPublic, a.ok.handshake.payloadCiphertext);
    const msg = () => ({ ...base, kind: 'SecretsRequest' as const, encrypted: { transport: transport.encrypt(wire.encodeSecretsRequest({ kind: 'Recover1' })) } });
    assert.deepEqual(await post(nodes[1]!, msg()), { error: 'MissingSession' });
  });
});
