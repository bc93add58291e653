// Several vault nodes sharing one realm: three `coffer vault serve` processes, three SoftHSM2
// tokens (realm keys copied by the wrapped-key ceremony), one real PostgreSQL server. The same
// nodes are one Juicebox realm: its guess limit holds across them, Noise sessions do not.
// Also the fault tests: a node SIGKILLed under load, PostgreSQL restarted under load.

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as opaque from '@serenity-kit/opaque';
import { accountInfo, juiceboxRecover, juiceboxRegister, noise, parseConfiguration, wire } from '@coffer/core/juicebox';
import { INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, protocol, recoverBackupKey, registerBackupKey, vaultStatus, type VaultConnection } from '@coffer/core/vault';
import { INSECURE_TEST_ONLY_PAUSE_ENV } from '../src/server.js';
import { PostgresRecordStore } from '../src/store/postgres.js';
import { cleanup, issueToken, loginByHand, postRaw, rawCall, runVault, startVault, tempDir, type VaultProcess } from './helpers.js';
import { attackerAttempt, type Realm } from './juicebox-helpers.js';
import { startPostgres, type PostgresServer } from './postgres-server.js';

const PASSWORD = 'shared realm password';
const LOAD_ARGS = ['--account-rate', '0', '--address-rate', '0', '--log-level', 'warn'];

function ok(r: { code: number; stderr: string }, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
}

/** A fetch that sends each request to the next node in turn (no load balancer, no affinity). */
function roundRobin(nodes: () => VaultProcess[]): typeof fetch {
  let i = 0;
  return async (input, init) => {
    const live = nodes();
    const target = live[i++ % live.length]!;
    const u = new URL(input instanceof Request ? input.url : String(input));
    return fetch(new URL(u.pathname, target.url), init);
  };
}

async function metric(node: VaultProcess, name: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', node.url))).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function waitFor(what: string, f: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  let last: unknown = null;
  while (!(await f().catch((e: unknown) => ((last = e), false)))) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what} (last error: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const readyStatus = async (n: VaultProcess) => (await fetch(new URL('/readyz', n.url))).status;

describe('three vault nodes, three SoftHSM2 tokens, one PostgreSQL', () => {
  let pg: PostgresServer;
  let root: string;
  const dirs: string[] = [];
  let nodes: VaultProcess[] = [];
  const tokens = new Map<string, string>();
  const token = async (a: string) => {
    if (!tokens.has(a)) tokens.set(a, await issueToken(dirs[0]!, a));
    return tokens.get(a)!;
  };
  const conn = async (a: string, f: typeof fetch = roundRobin(() => nodes)): Promise<VaultConnection> => ({
    vaultUrl: nodes[0]!.url,
    realmPublicKey: nodes[0]!.realmPublicKey,
    token: await token(a),
    keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING,
    fetch: f,
  });
  const version = async (a: string) => {
    const s = await PostgresRecordStore.open({ url: pg.url });
    try {
      return (await s.get(a))?.version ?? null;
    } finally {
      await s.close();
    }
  };
  const start = (i: number) => startVault(dirs[i]!, {}, ['--database', pg.url, ...LOAD_ARGS]);

  before(async () => {
    await opaque.ready;
    root = tempDir('coffer-multinode-');
    for (const n of ['a', 'b', 'c']) dirs.push(join(root, n));
    pg = await startPostgres();
    ok(await runVault(['migrate', '--database', pg.url]), 'migrate');
    ok(await runVault(['init', '--data-dir', dirs[0]!, '--hsm', 'softhsm', '--multi-node', '--json']), 'init');
    // The ceremony, once per further node, with the fingerprint checked as an operator would.
    for (const d of dirs.slice(1)) {
      const t = await runVault(['hsm', 'transport-key', '--data-dir', d, '--out', join(d + '-transport.json')]);
      ok(t, 'transport-key');
      const fp = (JSON.parse(readFileSync(d + '-transport.json', 'utf8')) as { fingerprint: string }).fingerprint;
      assert.match(t.stderr, new RegExp(fp));
      ok(await runVault(['hsm', 'export-wrapped', '--data-dir', dirs[0]!, '--to', d + '-transport.json', '--fingerprint', fp, '--out', d + '-bundle.json']), 'export');
      ok(await runVault(['hsm', 'import-wrapped', '--data-dir', d, '--in', d + '-bundle.json']), 'import');
    }
    ok(await runVault(['hsm', 'lock-export', '--data-dir', dirs[0]!]), 'lock-export');
    nodes = await Promise.all([0, 1, 2].map(start));
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    pg?.destroy();
    if (root) cleanup(root);
  });

  it('the ceremony gave every node the same realm, with keys no token can export any more', async () => {
    assert.equal(new Set(nodes.map((n) => n.realmPublicKey)).size, 1);
    for (const d of dirs) {
      const r = await runVault(['hsm', 'status', '--data-dir', d, '--json']);
      ok(r, 'status');
      const keys = (JSON.parse(r.stdout) as { keys: { extractable: boolean; sensitive: boolean }[] }).keys;
      assert.deepEqual(keys.map((k) => [k.extractable, k.sensitive]), [[false, true], [false, true]], d);
    }
    const bundle = readFileSync(dirs[1]! + '-bundle.json', 'utf8');
    assert.equal(bundle.includes('sealedSecrets'), true);
    assert.equal(/"(opaqueServerSetup|hpkePrivateKey|ticketKey|tokenSecret)"/.test(bundle), false, 'no realm secret in the clear');
  });

  it('refuses a swapped transport key, a bundle made for another token, and export after lock', async () => {
    const x = join(root, 'x');
    ok(await runVault(['hsm', 'transport-key', '--data-dir', x, '--out', x + '-transport.json']), 'transport-key');
    const bad = await runVault(['hsm', 'export-wrapped', '--data-dir', dirs[0]!, '--to', x + '-transport.json', '--fingerprint', '0000-0000-0000-0000-0000-0000-0000-0000']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /fingerprint/);
    const unchecked = await runVault(['hsm', 'export-wrapped', '--data-dir', dirs[0]!, '--to', x + '-transport.json']);
    assert.equal(unchecked.code, 2, 'no export without the fingerprint');
    assert.match(unchecked.stderr, /--fingerprint FP is required/);
    const fp = (JSON.parse(readFileSync(x + '-transport.json', 'utf8')) as { fingerprint: string }).fingerprint;
    const locked = await runVault(['hsm', 'export-wrapped', '--data-dir', dirs[0]!, '--to', x + '-transport.json', '--fingerprint', fp]);
    assert.equal(locked.code, 1);
    assert.match(locked.stderr, /the realm keys on this token are locked: `coffer vault hsm lock-export` was run/);
    assert.doesNotMatch(locked.stderr, /SOFTHSM2_CONF|module path/);
    const wrongToken = await runVault(['hsm', 'import-wrapped', '--data-dir', x, '--in', dirs[1]! + '-bundle.json']);
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /another transport key/);
  });

  it('a login started on one node finishes on another', async () => {
    const a = 'hop';
    const c = await conn(a);
    const key = new Uint8Array(32).fill(7);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: key, maxAttempts: 10 });
    const t = await token(a);
    const f = await loginByHand(nodes[0]!, t, a, PASSWORD);
    assert.equal(f.start.inner?.status, 'ok');
    assert.ok(f.finishLoginRequest);
    const r2 = await rawCall(nodes[2]!, t, a, 'login-finish', { ticket: f.ticket, finishLoginRequest: f.finishLoginRequest, action: 'recover' });
    assert.equal(r2.inner?.status, 'ok');
    // The same ticket cannot be finished again on a third node.
    const r3 = await rawCall(nodes[1]!, t, a, 'login-finish', { ticket: f.ticket, finishLoginRequest: f.finishLoginRequest, action: 'recover' });
    assert.equal(r3.inner?.status, 'ticket-expired');
    // And the client API, each request to the next node.
    assert.deepEqual(await recoverBackupKey({ ...c, password: PASSWORD }), key);
  });

  it('a captured request is accepted once per realm: replays to the other nodes and after a restart are refused', async () => {
    const a = 'captured-login';
    const c = await conn(a);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32), maxAttempts: 10 });
    const t = await token(a);
    const s = opaque.client.startLogin({ password: 'a guess' });
    const first = await rawCall(nodes[0]!, t, a, 'login-start', { startLoginRequest: s.startLoginRequest });
    assert.equal(first.inner?.status, 'ok');
    const counted = await version(a);
    const replayTo = async (n: VaultProcess, body: Uint8Array) => {
      const r = await postRaw(n.url, t, body);
      return [r.status, (JSON.parse(new TextDecoder().decode(r.body)) as { error?: string }).error];
    };
    for (const n of nodes) assert.deepEqual(await replayTo(n, first.requestBody), [400, 'replayed-request']);
    await nodes[0]!.stop();
    nodes[0] = await start(0);
    assert.deepEqual(await replayTo(nodes[0]!, first.requestBody), [400, 'replayed-request'], 'after a restart too');
    assert.equal(await version(a), counted, 'the guess was paid once');
    assert.equal((await vaultStatus(c)).guessesRemaining, 9);

    // A delete, captured and replayed after the account registered again, deletes nothing.
    const recordId = (await rawCall(nodes[1]!, t, a, 'status', {})).inner!['recordId'];
    const del = await rawCall(nodes[1]!, t, a, 'delete', { recordId });
    assert.equal(del.inner?.['deleted'], true);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32).fill(1), maxAttempts: 10 });
    for (const n of nodes) assert.deepEqual(await replayTo(n, del.requestBody), [400, 'replayed-request']);
    assert.equal((await vaultStatus(c)).registered, true);

    // A delete held back (never delivered) and sent after a new registration deletes nothing either.
    const realm = protocol.parseRealmPublicKey(nodes[0]!.realmPublicKey);
    const held = await protocol.sealRequest(realm, {
      v: 1,
      op: 'delete',
      id: protocol.b64u(protocol.randomBytes(16)),
      ts: Date.now(),
      realm: realm.realmIdText,
      account: a,
      body: { recordId: (await rawCall(nodes[2]!, t, a, 'status', {})).inner!['recordId'] },
    });
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32).fill(2), maxAttempts: 10 });
    const late = await postRaw(nodes[2]!.url, t, held.body);
    assert.equal((await protocol.openResponse(held.context, held.enc, late.body)).status, 'conflict');
    assert.deepEqual(await recoverBackupKey({ ...c, password: PASSWORD }), new Uint8Array(32).fill(2));
  });

  it('a correct login on one node resets the count on every node', async () => {
    const a = 'reset-everywhere';
    const c = await conn(a);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32), maxAttempts: 10 });
    for (let i = 0; i < 3; i++) await assert.rejects(recoverBackupKey({ ...c, password: `wrong-${i}` }), { name: 'WrongPasswordError' });
    for (const n of nodes) assert.equal((await vaultStatus(await conn(a, (u, i) => fetch(new URL(new URL(String(u)).pathname, n.url), i)))).guessesRemaining, 7);
    await recoverBackupKey({ ...c, password: PASSWORD });
    for (const n of nodes) assert.equal((await vaultStatus(await conn(a, (u, i) => fetch(new URL(new URL(String(u)).pathname, n.url), i)))).guessesRemaining, 10);
  });

  it('200 concurrent wrong-password logins over all nodes pay exactly the limit, then the record is destroyed on every node', async () => {
    const a = 'flood';
    const c = await conn(a);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32), maxAttempts: 10 });
    const before = await Promise.all(nodes.map((n) => metric(n, 'coffer_vault_login_attempts_total')));
    const destroyedBefore = await Promise.all(nodes.map((n) => metric(n, 'coffer_vault_records_destroyed_total')));
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        recoverBackupKey({ ...c, password: `wrong-${i}` }).then(
          () => 'success',
          (e: unknown) => (e as Error).name,
        ),
      ),
    );
    const names = new Set(outcomes);
    assert.ok([...names].every((n) => ['WrongPasswordError', 'KeyDestroyedError'].includes(n)), JSON.stringify([...names]));
    const attempts = (await Promise.all(nodes.map((n) => metric(n, 'coffer_vault_login_attempts_total')))).reduce((x, y, i) => x + y - before[i]!, 0);
    assert.equal(attempts, 10, 'exactly the limit in paid guesses, summed over the nodes');
    const destroyed = (await Promise.all(nodes.map((n) => metric(n, 'coffer_vault_records_destroyed_total')))).reduce((x, y, i) => x + y - destroyedBefore[i]!, 0);
    assert.equal(destroyed, 1, 'destroyed once');
    // register (1) + ten counted attempts (10) + the tombstone (1): nothing lost, nothing doubled.
    assert.equal(await version(a), 12);
    for (const n of nodes) {
      assert.deepEqual(await vaultStatus(await conn(a, (u, i) => fetch(new URL(new URL(String(u)).pathname, n.url), i))), { registered: false, destroyed: true });
    }
    await assert.rejects(recoverBackupKey({ ...c, password: PASSWORD }), { name: 'KeyDestroyedError' });
  });

  // The same nodes are one Juicebox realm too (spec/juicebox.md §6, §9).
  const juicebox = () => {
    const listening = nodes.map((n) => JSON.parse(n.logs().split('\n').find((l) => l.includes('"event":"listening"'))!) as { realmId: string; juiceboxPublicKey: string });
    return { listening, realmId: listening[0]!.realmId, publicKey: listening[0]!.juiceboxPublicKey };
  };
  const juiceboxToken = async (account: string) => {
    const r = await runVault(['token', '--data-dir', dirs[0]!, '--account', account, '--audience', 'juicebox', '--json']);
    ok(r, 'token');
    return (JSON.parse(r.stdout) as { token: string }).token;
  };

  it('Juicebox: one realm id and one Noise key on every node; 200 concurrent Recover2 over the nodes are granted exactly the limit; a registration made on one node recovers on another', async () => {
    const { listening, realmId, publicKey } = juicebox();
    assert.equal(new Set(listening.map((l) => l.realmId)).size, 1, 'one realm id');
    assert.equal(new Set(listening.map((l) => l.juiceboxPublicKey)).size, 1, 'one Noise key, derived from the shared sealed secrets');
    const tok = await juiceboxToken('jb-shared');
    const cfg = (n: number, hardware = false) => parseConfiguration({ realms: [{ id: realmId, address: `${nodes[n]!.url}/`, public_key: hardware ? publicKey : null }], register_threshold: 1, recover_threshold: 1, pin_hashing_mode: 'FastInsecure' });
    const K = new Uint8Array(32).fill(9);
    await juiceboxRegister({ configuration: cfg(0), token: () => tok, pin: Buffer.from('pw'), secret: K, info: accountInfo('jb-shared'), numGuesses: 10 });
    assert.deepEqual(await juiceboxRecover({ configuration: cfg(1, true), token: () => tok, pin: Buffer.from('pw'), info: accountInfo('jb-shared') }), K);
    const asRealm = (i: number): Realm => ({ dataDir: dirs[i]!, proc: nodes[i]!, id: realmId, publicKey, address: `${nodes[i]!.url}/` });
    const attempts = await Promise.all(Array.from({ length: 200 }, (_, i) => attackerAttempt([asRealm(i % nodes.length)], { [realmId]: tok })));
    assert.equal(attempts.filter((a) => a.test).length, 10, 'exactly the limit, summed over the nodes');
    await assert.rejects(juiceboxRecover({ configuration: cfg(2), token: () => tok, pin: Buffer.from('pw'), info: accountInfo('jb-shared') }), { name: 'KeyDestroyedError' });
  });

  it('Juicebox: a Noise session opened on one node is unknown to another (MissingSession), which a client answers with a new handshake', async () => {
    const { realmId, publicKey } = juicebox();
    const tok = await juiceboxToken('jb-sticky');
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

  it('metrics never name an account', async () => {
    for (const n of nodes) {
      const text = await (await fetch(new URL('/metrics', n.url))).text();
      for (const a of tokens.keys()) assert.equal(text.includes(a), false, `${a} in metrics`);
      assert.match(text, /coffer_vault_http_request_duration_seconds_bucket/);
    }
  });

  it('a node SIGKILLed under load loses and doubles no attempt; the others keep serving; it rejoins', async () => {
    const a = 'kill-load';
    const c = await conn(a);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32), maxAttempts: 100 });
    const t = await token(a);
    const victim = nodes[1]!;
    let okAnswers = 0;
    let lostOnVictim = 0;
    const otherErrors: string[] = [];
    let sent = 0;
    const one = async (n: VaultProcess) => {
      const s = opaque.client.startLogin({ password: PASSWORD });
      try {
        const r = await rawCall(n, t, a, 'login-start', { startLoginRequest: s.startLoginRequest });
        if (r.inner?.status === 'ok') okAnswers++;
        else if (n === victim) lostOnVictim++;
        else otherErrors.push(r.inner?.status ?? `http-${r.httpStatus}`);
      } catch (e) {
        if (n === victim) lostOnVictim++;
        else otherErrors.push((e as Error).message);
      }
    };
    const load = Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        for (let k = 0; k < 12; k++) {
          sent++;
          await one(nodes[(w + k) % 3]!);
        }
      }),
    );
    await waitFor('some load', async () => sent >= 20);
    await victim.kill9();
    await load;
    assert.deepEqual(otherErrors, [], 'the other nodes kept serving');
    const committed = (await version(a))! - 1;
    assert.ok(okAnswers <= committed && committed <= okAnswers + lostOnVictim, `ok ${okAnswers}, committed ${committed}, unanswered on the killed node ${lostOnVictim}`);
    assert.ok(lostOnVictim > 0, 'the kill did hit requests');
    const status = await vaultStatus(c);
    assert.equal(status.guessesRemaining, 100 - committed, 'the counter in the record equals the committed changes');
    nodes[1] = await start(1);
    assert.equal(await readyStatus(nodes[1]!), 200);
    assert.equal((await vaultStatus(await conn(a, (u, i) => fetch(new URL(new URL(String(u)).pathname, nodes[1]!.url), i)))).guessesRemaining, 100 - committed);
  });

  it('a node SIGKILLed between its PostgreSQL commit and its answer keeps the attempt counted on every node', async () => {
    const a = 'kill-after-commit';
    const c = await conn(a);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32), maxAttempts: 10 });
    const pauseFile = join(root, 'pause');
    const paused = await startVault(dirs[0]!, { [INSECURE_TEST_ONLY_PAUSE_ENV]: pauseFile }, ['--database', pg.url, ...LOAD_ARGS]);
    try {
      writeFileSync(pauseFile, '');
      const s = opaque.client.startLogin({ password: PASSWORD });
      const pending = rawCall(paused, await token(a), a, 'login-start', { startLoginRequest: s.startLoginRequest }).catch((e: Error) => e);
      await paused.waitForStderr(/committed, pausing/);
      await paused.kill9();
      assert.ok((await pending) instanceof Error, 'no answer left the killed node');
    } finally {
      rmSync(pauseFile, { force: true });
      await paused.kill9();
    }
    assert.equal(await version(a), 2, 'the attempt was committed');
    for (const n of nodes) assert.equal((await vaultStatus(await conn(a, (u, i) => fetch(new URL(new URL(String(u)).pathname, n.url), i)))).guessesRemaining, 9);
  });

  it('PostgreSQL restarted under load: nodes go not-ready and refuse, then recover by themselves', async () => {
    const a = 'pg-restart';
    const c = await conn(a);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: new Uint8Array(32), maxAttempts: 100 });
    const t = await token(a);
    let okAnswers = 0;
    let refused = 0;
    const bad: string[] = [];
    let stop = false;
    // The database is down for sure between these two instants (pg_ctl stop -w has returned, start
    // not yet called). A request sent and answered within that window cannot have been committed.
    let downSince = Infinity;
    let upFrom = Infinity;
    const answeredWhileDown: number[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let k = 0; !stop; k++) {
          const s = opaque.client.startLogin({ password: PASSWORD });
          const sentAt = performance.now();
          const r = await rawCall(nodes[(w + k) % 3]!, t, a, 'login-start', { startLoginRequest: s.startLoginRequest }).catch((e: Error) => e);
          const answeredAt = performance.now();
          if (!(r instanceof Error) && r.inner?.status === 'ok' && sentAt > downSince && answeredAt < upFrom) answeredWhileDown.push(sentAt);
          if (r instanceof Error) bad.push(r.message);
          else if (r.inner?.status === 'ok') okAnswers++;
          else if (r.httpStatus === 503 && r.error?.error === 'unavailable') refused++;
          else bad.push(r.inner?.status ?? `http-${r.httpStatus} ${r.error?.error}`);
          // Paced so that the account's 100 guesses outlast the test: every ok answer spends one,
          // and the nodes take up to a second to report a change of readiness (cached for 1 s).
          await new Promise((res) => setTimeout(res, 60));
        }
      }),
    );
    let restarted = false;
    try {
      await waitFor('some load', async () => okAnswers >= 5);
      pg.stop();
      downSince = performance.now();
      for (const n of nodes) await waitFor('not ready', async () => (await readyStatus(n)) === 503);
      const refusedBefore = refused;
      await waitFor('refusals', async () => refused >= refusedBefore + 6);
      upFrom = performance.now();
      assert.deepEqual(answeredWhileDown, [], 'no attempt answered while the database was down');
      pg.start();
      restarted = true;
      for (const n of nodes) await waitFor('ready again', async () => (await readyStatus(n)) === 200);
      const okBefore = okAnswers;
      await waitFor('answers again', async () => okAnswers >= okBefore + 5);
    } finally {
      if (!restarted) pg.start();
      stop = true;
      await load;
    }
    assert.deepEqual(bad, []);
    const committed = (await version(a))! - 1;
    assert.ok(okAnswers <= committed && committed <= okAnswers + refused, `ok ${okAnswers}, committed ${committed}, refused ${refused}`);
    assert.equal((await vaultStatus(c)).guessesRemaining, 100 - committed);
  });

  // The end of the overlap is the boundary's clock against `retireAt`: ops.test.ts moves the
  // clock past it in process; here every node takes the rotated realm and honours the overlap.
  it('rotates the channel key on every node with an overlap: old and new keys work on every node', async () => {
    const a = 'rotation';
    const oldKey = nodes[0]!.realmPublicKey;
    const c = await conn(a);
    const key = new Uint8Array(32).fill(3);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: key, maxAttempts: 10 });
    const r = await runVault(['rotate-channel-key', '--data-dir', dirs[0]!, '--overlap-days', '1', '--out', join(root, 'realm-rotated.json'), '--json']);
    ok(r, 'rotate');
    const newKey = (JSON.parse(r.stdout) as { realmPublicKey: string }).realmPublicKey;
    assert.notEqual(newKey, oldKey);
    assert.equal(protocol.parseRealmPublicKey(newKey).realmIdText, protocol.parseRealmPublicKey(oldKey).realmIdText, 'same realm');
    for (const d of dirs.slice(1)) ok(await runVault(['realm-update', '--data-dir', d, '--in', join(root, 'realm-rotated.json')]), 'realm-update');
    nodes = await Promise.all(nodes.map(async (n, i) => (await n.stop(), start(i))));
    assert.deepEqual(nodes.map((n) => n.realmPublicKey), [newKey, newKey, newKey]);
    const pinned = (k: string): VaultConnection => ({ ...c, realmPublicKey: k });
    // Overlap: clients pinning either key recover, on every node (round robin).
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await recoverBackupKey({ ...pinned(oldKey), password: PASSWORD }), key);
      assert.deepEqual(await recoverBackupKey({ ...pinned(newKey), password: PASSWORD }), key);
    }
    const t = await token(a);
    for (const n of nodes) {
      for (const k of [oldKey, newKey]) assert.equal((await rawCall({ url: n.url, realmPublicKey: k }, t, a, 'status', {})).inner?.status, 'ok');
    }
  });
});
