// End-to-end: the core client against a real `coffer vault serve` child process, a real SoftHSM2
// token and a real SQLite file (spec/vault-protocol.md, spec/threat-model.md §3).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as opaque from '@serenity-kit/opaque';
import {
  INSECURE_TEST_ONLY_FAST_KEY_STRETCHING,
  KeyDestroyedError,
  NotRegisteredError,
  VaultProtocolError,
  VaultRequestRejectedError,
  VaultUnauthorizedError,
  VaultUnavailableError,
  WrongPasswordError,
  changePassword,
  deleteBackupKey,
  protocol,
  recoverBackupKey,
  registerBackupKey,
  vaultStatus,
} from '@coffer/core/vault';
import { INSECURE_TEST_ONLY_PAUSE_ENV } from '../src/server.js';
import { SqliteRecordStore } from '../src/store/sqlite.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { captured, CapturingFetch, cleanup, connection, issueToken, loginByHand, postRaw, rawCall, runVault, startVault, tempDir, type VaultProcess } from './helpers.js';

const PASSWORD = 'correct horse battery staple ✓';

describe('vault end to end (SoftHSM2, SQLite, HTTP)', () => {
  let dir: string;
  let v: VaultProcess;
  const extraLogs: string[] = [];
  const cap = new CapturingFetch();
  const keys: Uint8Array[] = [];
  const passwords: string[] = [PASSWORD];
  const exportKeys: Uint8Array[] = [];
  const tokens = new Map<string, string>();
  const token = async (account: string) => {
    let t = tokens.get(account);
    if (!t) {
      t = await issueToken(dir, account);
      tokens.set(account, t);
    }
    return t;
  };
  const conn = async (account: string) => connection(v, await token(account), cap.fetch);
  const newKey = () => {
    const k = new Uint8Array(randomBytes(32));
    keys.push(k);
    return k;
  };
  const stored = async (account: string) => {
    const s = SqliteRecordStore.open(join(dir, 'records.sqlite'));
    try {
      return await s.get(account);
    } finally {
      await s.close();
    }
  };
  const version = async (account: string) => (await stored(account))?.version ?? null;

  before(async () => {
    dir = tempDir('coffer-vault-e2e-');
    const init = await runVault(['init', '--data-dir', dir, '--hsm', 'softhsm', '--json']);
    assert.equal(init.code, 0, init.stderr);
    assert.match(JSON.parse(init.stdout).hsm, /PKCS#11 token/);
    // The race tests send dozens of requests for one account at once, and the whole file several
    // hundred from one address; the rate limits (tested in ops.test.ts) would refuse many of them
    // before they reach the attempt counter.
    v = await startVault(dir, {}, ['--account-rate', '0', '--address-rate', '0']);
    await opaque.ready;
  });

  after(async () => {
    await v?.stop();
    cleanup(dir);
  });

  it('answers health and readiness', async () => {
    assert.equal((await fetch(new URL('/healthz', v.url))).status, 200);
    assert.deepEqual(await (await fetch(new URL('/readyz', v.url))).json(), { ready: true });
    assert.equal(((await (await fetch(new URL('/v1/realm', v.url))).json()) as { realmPublicKey: string }).realmPublicKey, v.realmPublicKey);
  });

  it('registers K, then recovers it with the right password', async () => {
    const c = await conn('alice');
    const K = newKey();
    assert.deepEqual(await vaultStatus(c), { registered: false });
    assert.deepEqual(await registerBackupKey({ ...c, password: PASSWORD, backupKey: K }), { maxAttempts: 10, guessesRemaining: 10 });
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 10, maxAttempts: 10 });
    const got = await recoverBackupKey({ ...c, password: PASSWORD });
    assert.deepEqual(Buffer.from(got), Buffer.from(K));
  });

  it('counts wrong passwords down exactly, and a correct login resets the counter', async () => {
    const c = await conn('bob');
    const K = newKey();
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: K, maxAttempts: 5 });
    for (const expected of [4, 3, 2]) {
      const e = await recoverBackupKey({ ...c, password: `wrong-${expected}` }).catch((x: unknown) => x);
      assert.ok(e instanceof WrongPasswordError, String(e));
      assert.equal(e.guessesRemaining, expected);
      assert.match(e.message, new RegExp(`${expected} guesses remain`));
      assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: expected, maxAttempts: 5 });
    }
    assert.deepEqual(Buffer.from(await recoverBackupKey({ ...c, password: PASSWORD })), Buffer.from(K));
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 5, maxAttempts: 5 });
  });

  it('destroys the record when the limit is reached: the key is gone for good', async () => {
    const c = await conn('carol');
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 3 });
    const live = (await stored('carol'))!.sealed.length;
    await assert.rejects(recoverBackupKey({ ...c, password: 'nope1' }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 2);
    await assert.rejects(recoverBackupKey({ ...c, password: 'nope2' }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 1);
    const last = await recoverBackupKey({ ...c, password: 'nope3' }).catch((x: unknown) => x);
    assert.ok(last instanceof KeyDestroyedError, String(last));
    assert.match(last.message, /gone for good/);
    // What remains is a tombstone: the OPAQUE record (~190 bytes) and the wrapped key (60) are gone.
    const tombstone = (await stored('carol'))!.sealed.length;
    assert.ok(tombstone < live - 250, `tombstone ${tombstone} bytes, live record ${live}`);
    assert.deepEqual(await vaultStatus(c), { registered: false, destroyed: true });
    // Even the right password cannot bring it back, and the owner is told so.
    await assert.rejects(recoverBackupKey({ ...c, password: PASSWORD }), KeyDestroyedError);
    // A new registration starts afresh.
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 3 });
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 3, maxAttempts: 3 });
  });

  it('destroys the record when the client never sends its final message after the last guess', async () => {
    const acct = 'carol-silent';
    const c = await conn(acct);
    const t = await token(acct);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 3 });
    for (let i = 0; i < 3; i++) {
      const { startLoginRequest } = opaque.client.startLogin({ password: `silent-${i}` });
      const r = await rawCall(v, t, acct, 'login-start', { startLoginRequest });
      assert.equal(r.inner?.status, 'ok', 'a KE2 for each of the 3 allowed attempts');
    }
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 0, maxAttempts: 3 });
    const { startLoginRequest } = opaque.client.startLogin({ password: PASSWORD });
    const r = await rawCall(v, t, acct, 'login-start', { startLoginRequest });
    assert.equal(r.inner?.status, 'destroyed', 'no fourth KE2, even for the right password');
    assert.deepEqual(await vaultStatus(c), { registered: false, destroyed: true });
  });

  it('changes the password in the same exchange as a successful login', async () => {
    const c = await conn('dave');
    const K = newKey();
    const newPassword = 'a whole new password';
    passwords.push(newPassword);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: K, maxAttempts: 4 });
    await assert.rejects(recoverBackupKey({ ...c, password: 'typo' }), WrongPasswordError);
    assert.deepEqual(await changePassword({ ...c, password: PASSWORD, newPassword, backupKey: K }), { maxAttempts: 4, guessesRemaining: 4 });
    await assert.rejects(recoverBackupKey({ ...c, password: PASSWORD }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 3);
    assert.deepEqual(Buffer.from(await recoverBackupKey({ ...c, password: newPassword })), Buffer.from(K));
    // Without K at hand the client recovers it first.
    await changePassword({ ...c, password: newPassword, newPassword: PASSWORD });
    assert.deepEqual(Buffer.from(await recoverBackupKey({ ...c, password: PASSWORD })), Buffer.from(K));
    await assert.rejects(changePassword({ ...c, password: 'bad', newPassword: 'x', backupKey: K }), WrongPasswordError);
  });

  it('deletes the key (turns password backups off)', async () => {
    const c = await conn('erin');
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey() });
    assert.deepEqual(await deleteBackupKey(c), { deleted: true });
    assert.deepEqual(await deleteBackupKey(c), { deleted: false });
    assert.deepEqual(await vaultStatus(c), { registered: false });
    await assert.rejects(recoverBackupKey({ ...c, password: PASSWORD }), NotRegisteredError);
  });

  it('never lowers the attempt count when re-registering', async () => {
    const c = await conn('frank');
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 6 });
    await assert.rejects(recoverBackupKey({ ...c, password: 'w1' }), WrongPasswordError);
    await assert.rejects(recoverBackupKey({ ...c, password: 'w2' }), WrongPasswordError);
    const K2 = newKey();
    assert.deepEqual(await registerBackupKey({ ...c, password: PASSWORD, backupKey: K2, maxAttempts: 6 }), { maxAttempts: 6, guessesRemaining: 4 });
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 4, maxAttempts: 6 });
    assert.deepEqual(Buffer.from(await recoverBackupKey({ ...c, password: PASSWORD })), Buffer.from(K2));
  });

  it('refuses a per-account limit outside the operator bounds, with a clear error', async () => {
    const c = await conn('grace');
    const e = await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 1000 }).catch((x: unknown) => x);
    assert.ok(e instanceof VaultProtocolError);
    assert.match(e.message, /maxAttempts must be an integer from 3 to 100/);
    assert.deepEqual(await vaultStatus(c), { registered: false });
    // A syntactically fine but unusable OPAQUE record is refused at registration, not at login.
    const t = await token('grace');
    const reg = opaque.client.startRegistration({ password: PASSWORD });
    const r1 = await rawCall(v, t, 'grace', 'register-start', { registrationRequest: reg.registrationRequest });
    const junk = await rawCall(v, t, 'grace', 'register-finish', { ticket: r1.inner!['ticket'], registrationRecord: 'A'.repeat(342), wrappedKey: protocol.b64u(new Uint8Array(60)) });
    assert.deepEqual([junk.inner?.status, junk.inner?.['message']], ['invalid', 'registrationRecord is not a valid OPAQUE registration record']);
    assert.deepEqual(await vaultStatus(c), { registered: false });
  });

  it('makes unknown accounts indistinguishable: same status codes and body sizes', async () => {
    const known = await conn('heidi');
    await registerBackupKey({ ...known, password: PASSWORD, backupKey: newKey() });
    const sizes = async (account: string) => {
      const t = await token(account);
      const { startLoginRequest } = opaque.client.startLogin({ password: 'guess' });
      const r = await rawCall(v, t, account, 'login-start', { startLoginRequest });
      assert.equal(r.inner?.status, 'ok');
      const ke2 = r.inner['loginResponse'] as string;
      const ticket = r.inner['ticket'] as string;
      const fin = await rawCall(v, t, account, 'login-finish', { ticket, finishLoginRequest: null, action: 'recover' });
      const st = await rawCall(v, t, account, 'status', {});
      return {
        http: [r.httpStatus, fin.httpStatus, st.httpStatus],
        req: [r.requestBody.length, fin.requestBody.length, st.requestBody.length],
        res: [r.responseBody.length, fin.responseBody.length, st.responseBody.length],
        ke2: ke2.length,
        ticket: ticket.length,
      };
    };
    const a = await sizes('heidi');
    const b = await sizes('nobody-here');
    assert.deepEqual(b, a);
    // The client itself, not the network, learns "not registered".
    await assert.rejects(recoverBackupKey({ ...(await conn('nobody-here')), password: 'x' }), NotRegisteredError);
  });

  it('gives a destroyed record answers of the same sizes as a live and an unknown account', async () => {
    const gone = 'heidi-gone';
    const c = await conn(gone);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 3 });
    for (let i = 0; i < 3; i++) await recoverBackupKey({ ...c, password: `w${i}` }).catch(() => undefined);
    assert.deepEqual(await vaultStatus(c), { registered: false, destroyed: true });
    const sizes = async (account: string) => {
      const t = await token(account);
      const r = await rawCall(v, t, account, 'login-start', { startLoginRequest: opaque.client.startLogin({ password: 'guess' }).startLoginRequest });
      const st = await rawCall(v, t, account, 'status', {});
      return { status: r.inner?.status, http: [r.httpStatus, st.httpStatus], res: [r.responseBody.length, st.responseBody.length] };
    };
    const destroyed = await sizes(gone);
    assert.equal(destroyed.status, 'destroyed');
    for (const other of ['heidi', 'nobody-here']) {
      const o = await sizes(other);
      assert.equal(o.status, 'ok');
      assert.deepEqual([destroyed.http, destroyed.res], [o.http, o.res], `destroyed vs ${other}`);
    }
  });

  it('a login ticket from before a delete does not finish against the next registration', async () => {
    const acct = 'olga';
    const c = await conn(acct);
    const t = await token(acct);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 10 });
    const held = await loginByHand(v, t, acct, PASSWORD);
    assert.ok(held.finishLoginRequest, 'a KE3 for the right password, held back');
    assert.deepEqual(await deleteBackupKey(c), { deleted: true });
    await registerBackupKey({ ...c, password: 'the new password', backupKey: newKey(), maxAttempts: 10 });
    for (let i = 0; i < 3; i++) await assert.rejects(recoverBackupKey({ ...c, password: `wrong-${i}` }), WrongPasswordError);
    const old = await rawCall(v, t, acct, 'login-finish', { ticket: held.ticket, finishLoginRequest: held.finishLoginRequest, action: 'recover' });
    assert.equal(old.inner?.status, 'ticket-expired');
    assert.equal(old.inner?.['released'], undefined);
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 7, maxAttempts: 10 }, 'the count was not reset');
  });

  it('leaves no earlier version of a destroyed or deleted record in records.sqlite or its WAL', async () => {
    const files = () => Buffer.concat(['records.sqlite', 'records.sqlite-wal', 'records.sqlite-shm'].filter((f) => existsSync(join(dir, f))).map((f) => readFileSync(join(dir, f))));
    // 48 bytes of each sealed version's ciphertext: a version is readable iff they are in the files.
    const found = (sealed: Uint8Array) => files().includes(Buffer.from(sealed.subarray(12, 60)));
    const track = async (account: string, versions: Uint8Array[]) => versions.push((await stored(account))!.sealed);

    const doomed = 'pia';
    const c = await conn(doomed);
    const versions: Uint8Array[] = [];
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 3 });
    await track(doomed, versions);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(recoverBackupKey({ ...c, password: `wrong-${i}` }), WrongPasswordError);
      await track(doomed, versions);
    }
    assert.ok(versions.every(found), 'before destruction every version is still in the files (the search can fail)');
    await assert.rejects(recoverBackupKey({ ...c, password: 'wrong-last' }), KeyDestroyedError);
    const tombstone = (await stored(doomed))!.sealed;
    assert.equal(found(tombstone), true);
    assert.deepEqual(versions.map(found), versions.map(() => false), 'no earlier version left once destruction returned');

    const deleted = 'quinn';
    const d = await conn(deleted);
    const dv: Uint8Array[] = [];
    await registerBackupKey({ ...d, password: PASSWORD, backupKey: newKey() });
    await track(deleted, dv);
    await assert.rejects(recoverBackupKey({ ...d, password: 'wrong' }), WrongPasswordError);
    await track(deleted, dv);
    assert.ok(dv.every(found));
    assert.deepEqual(await deleteBackupKey(d), { deleted: true });
    assert.deepEqual(dv.map(found), [false, false], 'nothing of a deleted record left');
  });

  it('50 concurrent logins never release more real KE2s than the limit', async () => {
    // The vault cannot tell a right from a wrong password at login-start, so the attacker's best
    // case is modelled with the right password and no final message: a KE2 the client can verify
    // is a real one (fake KE2s for a destroyed record do not verify).
    const acct = 'ivan';
    const c = await conn(acct);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 10 });
    const t = await token(acct);
    // Two vault processes on one database: only compare-and-set can serialise them.
    const node2 = await startVault(dir, {}, ['--account-rate', '0', '--address-rate', '0']);
    const nodes = [v, node2];
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const { start, finishLoginRequest } = await loginByHand(nodes[i % 2]!, t, acct, PASSWORD);
        if (start.inner?.status !== 'ok') return start.inner?.status ?? `http-${start.httpStatus}`;
        return finishLoginRequest ? 'real-ke2' : 'fake-ke2';
      }),
    ).finally(async () => {
      extraLogs.push(node2.logs(), node2.stderr());
      await node2.stop();
    });
    const count = (x: string) => results.filter((s) => s === x).length;
    assert.equal(count('real-ke2'), 10, `statuses: ${JSON.stringify(results)}`);
    assert.equal(count('real-ke2') + count('fake-ke2') + count('destroyed'), 50, JSON.stringify(results));
    assert.deepEqual(await vaultStatus(c), { registered: false, destroyed: true }, 'the 11th attempt destroyed the record');
  });

  it('50 concurrent wrong-password recoveries through the client all fail and destroy the record', async () => {
    const acct = 'ivy';
    const c = await conn(acct);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 10 });
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        recoverBackupKey({ ...c, password: `wrong-${i}` }).then(
          () => 'success',
          (e: unknown) => (e as Error).name,
        ),
      ),
    );
    assert.ok(outcomes.every((o) => ['WrongPasswordError', 'KeyDestroyedError', 'NotRegisteredError'].includes(o)), JSON.stringify(outcomes));
    assert.ok(outcomes.filter((o) => o === 'WrongPasswordError').length <= 9, JSON.stringify(outcomes));
    assert.deepEqual(await vaultStatus(c), { registered: false, destroyed: true });
  });

  it('rejects malformed, oversized, tampered, stale, replayed and misaddressed requests, changing nothing', async () => {
    const acct = 'judy';
    const c = await conn(acct);
    const t = await token(acct);
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 5 });
    await assert.rejects(recoverBackupKey({ ...c, password: 'one wrong' }), WrongPasswordError);
    const before = await version(acct);
    const ke1 = () => ({ startLoginRequest: opaque.client.startLogin({ password: 'attacker' }).startLoginRequest });

    // Oversized.
    const big = await postRaw(v.url, t, new Uint8Array(protocol.MAX_REQUEST_BYTES + 1));
    assert.equal(big.status, 413);
    assert.equal(JSON.parse(new TextDecoder().decode(big.body)).error, 'too-large');
    // Malformed: garbage, wrong version byte, wrong content type.
    const garbage = await postRaw(v.url, t, new Uint8Array(randomBytes(2000)));
    assert.equal(garbage.status, 400);
    assert.match(new TextDecoder().decode(garbage.body), /malformed-request|undecryptable-request/);
    const short = await postRaw(v.url, t, new Uint8Array([1, 2, 3]));
    assert.deepEqual([short.status, JSON.parse(new TextDecoder().decode(short.body)).error], [400, 'malformed-request']);
    const wrongType = await postRaw(v.url, t, new TextEncoder().encode('{"op":"status"}'), 'application/json');
    assert.equal(wrongType.status, 400);
    const v2 = await rawCall(v, t, acct, 'login-start', ke1(), { mutate: (b) => Uint8Array.from(b, (x, i) => (i === 0 ? 2 : x)) });
    assert.deepEqual([v2.httpStatus, v2.error?.error], [400, 'malformed-request']);
    // Tampered: any flipped ciphertext bit.
    for (const pos of [1, 40, 500]) {
      const tam = await rawCall(v, t, acct, 'login-start', ke1(), { mutate: (b) => Uint8Array.from(b, (x, i) => (i === pos ? x ^ 1 : x)) });
      assert.deepEqual([tam.httpStatus, tam.error?.error], [400, 'undecryptable-request'], `flip at ${pos}`);
    }
    // Sealed to another realm key.
    const otherRealm = protocol.formatRealmPublicKey(protocol.parseRealmPublicKey(v.realmPublicKey).realmId, new Uint8Array(randomBytes(32)));
    const foreign = await recoverBackupKey({ ...c, realmPublicKey: otherRealm, password: PASSWORD }).catch((x: unknown) => x);
    assert.ok(foreign instanceof VaultRequestRejectedError && foreign.vaultCode === 'undecryptable-request', String(foreign));
    // Well sealed, but not a protocol v1 request inside.
    const realmKey = protocol.parseRealmPublicKey(v.realmPublicKey);
    const inner = (o: Record<string, unknown>) => protocol.utf8(JSON.stringify({ v: 1, op: 'status', id: protocol.b64u(protocol.randomBytes(16)), ts: Date.now(), realm: realmKey.realmIdText, account: acct, body: {}, ...o }));
    for (const pt of [inner({ op: 'bogus' }), inner({ v: 2 }), inner({ id: 'short' }), inner({ realm: 'AAAAAAAAAAAAAAAAAAAAAA' }), inner({ body: 'x' }), protocol.utf8('not json')]) {
      const sealed = await protocol.sealRequestPlaintext(realmKey, pt);
      const r = await postRaw(v.url, t, sealed.body);
      assert.deepEqual([r.status, JSON.parse(new TextDecoder().decode(r.body)).error], [400, 'malformed-request'], protocol.fromUtf8(pt));
    }
    // Stale and future timestamps.
    const stale = await rawCall(v, t, acct, 'login-start', ke1(), { ts: Date.now() - 10 * 60_000 });
    assert.deepEqual([stale.httpStatus, stale.error?.error], [400, 'stale-request']);
    const future = await rawCall(v, t, acct, 'login-start', ke1(), { ts: Date.now() + 10 * 60_000 });
    assert.deepEqual([future.httpStatus, future.error?.error], [400, 'stale-request']);
    const staleClient = await vaultStatus({ ...c, now: () => Date.now() - 3_600_000 }).catch((x: unknown) => x);
    assert.ok(staleClient instanceof VaultRequestRejectedError && /clock/.test(staleClient.hint));
    // A request for judy carried with mallory's token.
    const mallory = await token('mallory');
    const mis = await rawCall(v, mallory, acct, 'login-start', ke1());
    assert.deepEqual([mis.httpStatus, mis.error?.error], [400, 'account-mismatch']);
    // Tokens: missing, forged, for another realm.
    assert.equal((await postRaw(v.url, '', new Uint8Array(2000))).status, 401);
    const forged = `${t.slice(0, t.lastIndexOf('.'))}.${Buffer.alloc(32).toString('base64url')}`;
    const bad = await vaultStatus({ ...c, token: forged }).catch((x: unknown) => x);
    assert.ok(bad instanceof VaultUnauthorizedError, String(bad));
    assert.match(bad.message, /bad signature/);
    // Replay of a byte-identical request to the same node.
    const first = await rawCall(v, t, acct, 'status', {});
    assert.equal(first.httpStatus, 200);
    const replay = await postRaw(v.url, t, first.requestBody);
    assert.deepEqual([replay.status, JSON.parse(new TextDecoder().decode(replay.body)).error], [400, 'replayed-request']);
    const start = await rawCall(v, t, acct, 'login-start', ke1());
    assert.equal(start.inner?.status, 'ok');
    const afterStart = await version(acct);
    const replayStart = await postRaw(v.url, t, start.requestBody);
    assert.equal(replayStart.status, 400, 'a replayed login-start is not counted twice');
    assert.equal(await version(acct), afterStart);

    assert.equal(afterStart, (before as number) + 1, 'only the one genuine login-start changed the record');
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 3, maxAttempts: 5 });
  });

  it('refuses a replayed login-finish or register-finish on another process of the realm, and the tickets would be spent anyway', async () => {
    const acct = 'ken';
    const c = await conn(acct);
    const t = await token(acct);
    const K = newKey();
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: K, maxAttempts: 8 });
    // A successful login, captured by hand.
    const fin = await loginByHand(v, t, acct, PASSWORD);
    assert.ok(fin.finishLoginRequest);
    const f1 = await rawCall(v, t, acct, 'login-finish', { ticket: fin.ticket, finishLoginRequest: fin.finishLoginRequest, action: 'recover' });
    assert.equal(f1.inner?.status, 'ok');
    // Capture a register-finish too (via the client, through the capturing fetch).
    const regStartCount = cap.requests.length;
    await registerBackupKey({ ...c, password: PASSWORD, backupKey: K, maxAttempts: 8 });
    const regFinishBody = cap.requests[regStartCount + 1]!;
    // Three wrong guesses afterwards.
    for (let i = 0; i < 3; i++) await assert.rejects(recoverBackupKey({ ...c, password: `w${i}` }), WrongPasswordError);
    assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 5, maxAttempts: 8 });
    const versionBefore = await version(acct);

    // A second process on the same database: the request ids were claimed in the database.
    const node2 = await startVault(dir);
    try {
      for (const body of [f1.requestBody, regFinishBody]) {
        const r = await postRaw(node2.url, t, body);
        assert.deepEqual([r.status, JSON.parse(new TextDecoder().decode(r.body)).error], [400, 'replayed-request']);
      }
      // Even with a fresh request id (the same ticket sent again), the used ticket gives nothing.
      const again = await rawCall(node2, t, acct, 'login-finish', { ticket: fin.ticket, finishLoginRequest: fin.finishLoginRequest, action: 'recover' });
      assert.equal(again.inner?.status, 'ticket-expired', 'the ticket was already used: no reset, no key');
      assert.equal(again.inner?.['released'], undefined);
      assert.equal(await version(acct), versionBefore);
      assert.deepEqual(await vaultStatus(c), { registered: true, guessesRemaining: 5, maxAttempts: 8 });
    } finally {
      extraLogs.push(node2.logs(), node2.stderr());
      await node2.stop();
    }
  });

  it('never loses a counter increment when the vault is SIGKILLed after the commit and before the answer', async () => {
    const acct = 'leo';
    const pauseFile = join(dir, 'pause-now');
    const node = await startVault(dir, { [INSECURE_TEST_ONLY_PAUSE_ENV]: pauseFile });
    try {
      const c = connection(node, await token(acct), cap.fetch);
      await registerBackupKey({ ...c, password: PASSWORD, backupKey: newKey(), maxAttempts: 5 });
      writeFileSync(pauseFile, '');
      const pending = recoverBackupKey({ ...c, password: PASSWORD }).catch((x: unknown) => x);
      await node.waitForStderr(/TEST-ONLY: committed, pausing/);
      await node.kill9();
      const e = await pending;
      assert.ok(e instanceof VaultUnavailableError, `the answer never left: ${String(e)}`);
    } finally {
      rmSync(pauseFile, { force: true });
      extraLogs.push(node.logs(), node.stderr());
      await node.stop();
    }
    assert.match(extraLogs.join(''), /TEST-ONLY pause-after-commit hook is enabled/);
    // The increment was durable: another process sees it.
    assert.deepEqual(await vaultStatus(await conn(acct)), { registered: true, guessesRemaining: 4, maxAttempts: 5 });
  });

  it('refuses a record copied to another account, and notices nothing else changed', async () => {
    const a = await conn('nina');
    const b = await conn('oscar');
    await registerBackupKey({ ...a, password: PASSWORD, backupKey: newKey() });
    await registerBackupKey({ ...b, password: PASSWORD, backupKey: newKey() });
    const store = SqliteRecordStore.open(join(dir, 'records.sqlite'));
    try {
      const na = (await store.get('nina'))!;
      const ob = (await store.get('oscar'))!;
      // The operator writes nina's sealed record into oscar's row (same version number).
      assert.equal(await store.commit('oscar', { kind: 'put', expectedVersion: ob.version, newVersion: ob.version + 1, sealed: na.sealed }), 'ok');
      const e = await recoverBackupKey({ ...b, password: PASSWORD }).catch((x: unknown) => x);
      assert.ok(e instanceof VaultUnavailableError && /HTTP 500|record-unreadable/.test(e.message), String(e));
      assert.match(v.logs(), /stored record failed to unseal/);
      // nina is untouched.
      assert.deepEqual(await vaultStatus(a), { registered: true, guessesRemaining: 10, maxAttempts: 10 });
    } finally {
      await store.close();
    }
  });

  it('gives up on a vault that does not answer, with VaultUnavailableError', async () => {
    const { createServer } = await import('node:http');
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    try {
      const e = await vaultStatus({ ...(await conn('alice')), vaultUrl: `http://127.0.0.1:${port}`, timeoutMs: 300 }).catch((x: unknown) => x);
      assert.ok(e instanceof VaultUnavailableError && /within 300 ms/.test(e.message), String(e));
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('every message the server produced in these tests matches spec/vault-messages.schema.json', async () => {
    // A whole life by hand first, so every op and every status is among the messages checked.
    const acct = 'schema-walk';
    const t = await token(acct);
    const realm = protocol.parseRealmPublicKey(v.realmPublicKey);
    const register = async (maxAttempts?: number) => {
      const reg = opaque.client.startRegistration({ password: PASSWORD });
      const r1 = await rawCall(v, t, acct, 'register-start', { registrationRequest: reg.registrationRequest });
      const fin = opaque.client.finishRegistration({
        password: PASSWORD, registrationResponse: r1.inner!['registrationResponse'] as string, clientRegistrationState: reg.clientRegistrationState,
        identifiers: protocol.opaqueIdentifiers(realm.realmIdText, acct), keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING,
      });
      const wrapped = await protocol.wrapBackupKey(protocol.fromB64u(fin.exportKey), realm.realmIdText, acct, newKey());
      const body = { ticket: r1.inner!['ticket'], registrationRecord: fin.registrationRecord, wrappedKey: protocol.b64u(wrapped), ...(maxAttempts ? { maxAttempts } : {}) };
      return { body, r2: await rawCall(v, t, acct, 'register-finish', body) };
    };
    const status = async () => (await rawCall(v, t, acct, 'status', {})).inner!;
    assert.equal((await status())['registered'], false);
    const { body: firstFinish } = await register(3);
    const wrong = await loginByHand(v, t, acct, 'not the password');
    assert.equal((await rawCall(v, t, acct, 'login-finish', { ticket: wrong.ticket, finishLoginRequest: null, action: 'recover' })).inner!.status, 'wrong-password');
    const right = await loginByHand(v, t, acct, PASSWORD);
    assert.equal((await rawCall(v, t, acct, 'login-finish', { ticket: right.ticket, finishLoginRequest: right.finishLoginRequest, action: 'recover' })).inner!.status, 'ok');
    assert.equal((await rawCall(v, t, acct, 'login-finish', { ticket: right.ticket, finishLoginRequest: right.finishLoginRequest, action: 'recover' })).inner!.status, 'ticket-expired');
    assert.equal((await rawCall(v, t, acct, 'register-finish', firstFinish)).inner!.status, 'conflict');
    assert.equal((await rawCall(v, t, acct, 'delete', { recordId: 'another-registration' })).inner!.status, 'conflict');
    assert.equal((await rawCall(v, t, acct, 'register-start', {})).inner!.status, 'invalid');
    for (let i = 0; i < 3; i++) await loginByHand(v, t, acct, 'not the password');
    assert.equal((await loginByHand(v, t, acct, PASSWORD)).start.inner!.status, 'destroyed');
    assert.equal((await status())['destroyed'], true);
    const recordId = (await status())['recordId'];
    assert.equal((await rawCall(v, t, acct, 'delete', { recordId })).inner!['deleted'], true);
    assert.equal((await rawCall(v, t, acct, 'delete', { recordId })).inner!['deleted'], false);
    const unknown = await loginByHand(v, t, acct, PASSWORD);
    assert.equal((await rawCall(v, t, acct, 'login-finish', { ticket: unknown.ticket, finishLoginRequest: unknown.finishLoginRequest, action: 'recover' })).inner!.status, 'not-registered');
    await register();
    assert.equal((await rawCall(v, 'not-a-token', acct, 'status', {})).error !== null, true);
    assert.equal((await rawCall(v, t, acct, 'status', {}, { ts: Date.now() - 10 * 60_000 })).httpStatus, 400);

    const schema = JSON.parse(readFileSync(new URL('../../../../spec/vault-messages.schema.json', import.meta.url), 'utf8')) as { $defs: Record<string, unknown> };
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    ajv.addSchema(schema, 'vault');
    const check = (ref: string, value: unknown, what: string) => {
      const validate = ajv.getSchema(`vault#/$defs/${ref}`)!;
      assert.ok(validate(value), `${what}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
    };
    // The schema's list of error codes is the code's one list.
    assert.deepEqual((schema.$defs['errorCode'] as { enum: string[] }).enum, [...protocol.VAULT_ERROR_CODES]);
    const seen = new Set<string>();
    for (const [i, x] of captured.entries()) {
      const what = `exchange ${i} (${x.op}, HTTP ${x.httpStatus})`;
      if (x.response) {
        check(`response.${x.op}`, x.response, what);
        seen.add(`${x.op} ${x.response.status}`);
        // Requests the server took as well formed match the request schema too.
        if (x.response.status !== 'invalid') check('request', x.request, `${what} request`);
      } else {
        check('errorBody', x.error, what);
        seen.add(`error ${(x.error as { error: string }).error}`);
      }
    }
    const expected = [
      'register-start ok', 'register-start invalid', 'register-finish ok', 'register-finish conflict', 'login-start ok', 'login-start destroyed',
      'login-finish ok', 'login-finish wrong-password', 'login-finish ticket-expired', 'login-finish not-registered', 'delete ok', 'delete conflict',
      'status ok', 'error unauthorized', 'error stale-request',
    ];
    for (const e of expected) assert.ok(seen.has(e), `no message "${e}" was checked`);
    assert.ok(captured.length > 40, `${captured.length} exchanges checked`);
  });

  it('never writes the password, K, the export key or the token into the database, logs or HTTP traffic', async () => {
    // One registration done by hand so the test knows the export key.
    const acct = 'mia';
    const t = await token(acct);
    const realm = protocol.parseRealmPublicKey(v.realmPublicKey);
    const K = newKey();
    const reg = opaque.client.startRegistration({ password: PASSWORD });
    const r1 = await rawCall(v, t, acct, 'register-start', { registrationRequest: reg.registrationRequest });
    const fin = opaque.client.finishRegistration({
      password: PASSWORD,
      registrationResponse: r1.inner!['registrationResponse'] as string,
      clientRegistrationState: reg.clientRegistrationState,
      identifiers: protocol.opaqueIdentifiers(realm.realmIdText, acct),
      keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING,
    });
    const exportKey = protocol.fromB64u(fin.exportKey);
    exportKeys.push(exportKey);
    const wrapped = await protocol.wrapBackupKey(exportKey, realm.realmIdText, acct, K);
    const r2 = await rawCall(v, t, acct, 'register-finish', { ticket: r1.inner!['ticket'], registrationRecord: fin.registrationRecord, wrappedKey: protocol.b64u(wrapped) });
    assert.equal(r2.inner?.status, 'ok');
    assert.deepEqual(Buffer.from(await recoverBackupKey({ ...(await conn(acct)), password: PASSWORD })), Buffer.from(K));
    const http = [r1.requestBody, r1.responseBody, r2.requestBody, r2.responseBody, ...cap.requests, ...cap.responses];
    assert.ok(cap.requests.length > 50, 'the capture saw the traffic of this file');

    await v.stop(); // flush logs and the WAL as a real shutdown would
    const files = readdirSync(dir).filter((f) => f.startsWith('records.sqlite')).map((f) => readFileSync(join(dir, f)));
    assert.ok(files.length >= 1 && files[0]!.length > 0);
    const logs = Buffer.from(v.logs() + v.stderr() + extraLogs.join(''));
    assert.ok(logs.length > 1000, 'logs were captured');
    const haystacks: [string, Buffer][] = [
      ['database', Buffer.concat(files)],
      ['logs', logs],
      ['http', Buffer.concat(http)],
    ];
    const forms = (b: Uint8Array): Buffer[] => {
      const x = Buffer.from(b);
      return [x, Buffer.from(x.toString('hex')), Buffer.from(x.toString('base64')), Buffer.from(x.toString('base64url'))];
    };
    const needles: [string, Buffer[]][] = [
      ...passwords.map((p): [string, Buffer[]] => ['password', [Buffer.from(p), Buffer.from(p.slice(0, 12))]]),
      ...keys.map((k): [string, Buffer[]] => ['K', forms(k)]),
      ...exportKeys.map((k): [string, Buffer[]] => ['export key', forms(k)]),
      ...[...tokens.values()].map((tk): [string, Buffer[]] => ['token', [Buffer.from(tk), Buffer.from(tk.slice(tk.lastIndexOf('.') + 1))]]),
    ];
    for (const [where, hay] of haystacks) {
      for (const [what, ns] of needles) {
        if (what === 'token' && where !== 'logs') continue; // the token travels in the Authorization header by design
        for (const n of ns) assert.equal(hay.includes(n), false, `${what} found in ${where}`);
      }
    }
    // And the scan can fail: a known value is found.
    assert.ok(Buffer.concat(http).includes(Buffer.from(r2.requestBody.subarray(0, 40))));
    assert.ok(existsSync(join(dir, 'records.sqlite')));
    assert.match(logs.toString(), /\[redacted\]|"msg":"incoming request"/);
  });
});
