/**
 * Browser-only cases beside the core suites: the HTTP object store through HttpStorage (conformance
 * suite), and the vault client against the real vault behind the app server. The page is signed in
 * (core-in-chromium.test.ts signs up first): each case uses a folder of that account's store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backup, formatRecoveryKey, generateBackupKey, parseRecoveryKey, Repository, restore, SecretKey, webCryptoProvider } from '@coffer/core';
import { storageConformance } from '@coffer/core/testing';
import {
  INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, KeyDestroyedError, recoverBackupKey, registerBackupKey, vaultStatus, WrongPasswordError,
} from '@coffer/core/vault';
import { HttpStorage } from '@coffer/http';
import { MemorySource, MemoryTarget, sameTree, type MemFile } from './helpers.js';

const run = Math.random().toString(36).slice(2, 10);
const { account } = (await (await fetch('/api/session')).json()) as { account: string };
const store = (name: string) => new HttpStorage(new URL(`/store/${account}/${name}-${run}/`, location.href).href);

for (const c of storageConformance) {
  test(`http store conformance (HttpStorage): ${c.name}`, () => c.run(store(`conf-${storageConformance.indexOf(c)}`)));
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
}

/** A vault connection for the signed-in account (a token for nobody else can be had). */
async function connection() {
  const config = (await (await fetch('/config.json')).json()) as { realmPublicKey: string };
  const r = await fetch('/api/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ purpose: 'register', keyStretching: 'insecure-test-only-fast' }) });
  const { token } = (await r.json()) as { token: string };
  // The client's default transport calls `fetch` as a method of its own config object, which
  // browsers refuse ("Illegal invocation"): pass a plain wrapper (reported upstream to core).
  const f: typeof fetch = (input, init) => fetch(input, init);
  return { vaultUrl: location.origin, realmPublicKey: config.realmPublicKey, token, fetch: f, keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING };
}

test('vault client in the browser: register, a wrong password is counted, the right one recovers K', async () => {
  const conn = await connection();
  const key = generateBackupKey(webCryptoProvider);
  await registerBackupKey({ ...conn, password: 'correct horse battery', backupKey: key.expose(), maxAttempts: 3 });
  await assert.rejects(recoverBackupKey({ ...conn, password: 'wrong horse' }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 2);
  const k = await recoverBackupKey({ ...conn, password: 'correct horse battery' });
  assert.deepEqual(k, key.expose());
  const s = await vaultStatus(conn);
  assert.ok(s.registered && s.guessesRemaining === 3, 'a right password resets the count');
});

test('vault client in the browser: after the limit the key is gone for good', async () => {
  const conn = await connection();
  const key = generateBackupKey(webCryptoProvider);
  await registerBackupKey({ ...conn, password: 'correct horse battery', backupKey: key.expose(), maxAttempts: 3 });
  await assert.rejects(recoverBackupKey({ ...conn, password: 'nope nope 1' }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 2);
  await assert.rejects(recoverBackupKey({ ...conn, password: 'nope nope 2' }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 1);
  await assert.rejects(recoverBackupKey({ ...conn, password: 'nope nope 3' }), (e: unknown) => e instanceof KeyDestroyedError || (e instanceof WrongPasswordError && e.guessesRemaining === 0));
  await assert.rejects(recoverBackupKey({ ...conn, password: 'correct horse battery' }), KeyDestroyedError);
});

test('backup to the HTTP store and restore with the recovery key typed back', async () => {
  const files = new Map<string, MemFile>([
    ['chat', { kind: 'dir', mode: 0o755, mtimeNs: '1000' }],
    ['chat/messages.db', { kind: 'file', data: random(70_000), mode: 0o600, mtimeNs: '1700000000000000000' }],
    ['chat/empty', { kind: 'file', data: new Uint8Array(0), mode: 0o644, mtimeNs: '5' }],
  ]);
  const storage = store('repo');
  const key = generateBackupKey(webCryptoProvider);
  const repo = await Repository.init(storage, webCryptoProvider, key, { chunkSize: 16384 });
  await backup(repo, new MemorySource(files));
  const typed = formatRecoveryKey(key).toLowerCase().replace(/ /g, '-');
  const again = await Repository.open(storage, webCryptoProvider, parseRecoveryKey(typed));
  const out = new MemoryTarget();
  await restore(again, out);
  assert.ok(sameTree(files, out.committed!));
  await assert.rejects(Repository.open(storage, webCryptoProvider, new SecretKey(new Uint8Array(32))), /key/i);
});
