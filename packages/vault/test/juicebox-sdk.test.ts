// The official Juicebox SDK (npm juicebox-sdk 0.3.7) as the client of three Coffer realms (real
// `coffer vault serve` processes, each with its own SQLite file and SoftHSM2 token), over the
// software-realm wire, the hardware-realm (Noise) wire and a mix; and secrets crossing between
// the SDK and Coffer's own client in both directions (spec/juicebox.md).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { juiceboxRecover, juiceboxRegister, accountInfo } from '@coffer/core/juicebox';
import { KeyDestroyedError, WrongPasswordError } from '@coffer/core/vault';
import { configuration, juiceboxTokens, metric, runSdk, sdkConfiguration, startRealms } from './juicebox-helpers.js';

const modes: [string, boolean | boolean[]][] = [
  ['software wire', false],
  ['hardware wire (Noise NK)', true],
  ['two software realms and one hardware realm', [true, false, false]],
];

// Both tests use the same three realms (each its own users).
let shared: Awaited<ReturnType<typeof startRealms>> | undefined;
const sharedRealms = async () => (shared ??= await startRealms(3));
after(() => shared?.stop());

test('official SDK against three Coffer realms: register, wrong PINs count down, right PIN, NoGuesses after the limit, delete', async (t) => {
  const realms = await sharedRealms();
  const counted = async (name: string) => Promise.all(realms.realms.map((r) => metric(r, name)));
  const destroyedBefore = await counted('coffer_vault_records_destroyed_total');
  const attemptsBefore = await counted('coffer_vault_login_attempts_total');
  for (const [name, hardware] of modes) {
    await t.test(name, async () => {
      const account = `sdk-${name.split(' ')[0]}`;
      const tokens = juiceboxTokens(realms.realms, account);
      const cfg = sdkConfiguration(realms.realms, { hardware });
      const K = randomBytes(32).toString('hex');
      const r = await runSdk(cfg, tokens, [
        { op: 'register', pin: '1234', info: account, secret: K, guesses: 4 },
        { op: 'recover', pin: '0000', info: account },
        { op: 'recover', pin: '1111', info: account },
        { op: 'recover', pin: '1234', info: account },
        // The right PIN reset the count: four wrong ones from here, then nothing more.
        { op: 'recover', pin: '0001', info: account },
        { op: 'recover', pin: '0002', info: account },
        { op: 'recover', pin: '0003', info: account },
        { op: 'recover', pin: '0004', info: account },
        { op: 'recover', pin: '1234', info: account },
        { op: 'delete' },
        { op: 'recover', pin: '1234', info: account },
      ]);
      assert.deepEqual(r[0], { op: 'register', ok: true });
      assert.deepEqual(r.slice(1, 3).map((x) => [x.reason, x.guessesRemaining]), [['InvalidPin', 3], ['InvalidPin', 2]]);
      assert.deepEqual(r[3], { op: 'recover', ok: true, secret: K });
      assert.deepEqual(r.slice(4, 8).map((x) => [x.reason, x.guessesRemaining]), [['InvalidPin', 3], ['InvalidPin', 2], ['InvalidPin', 1], ['InvalidPin', 0]]);
      assert.deepEqual([r[8]!.ok, r[8]!.reason, r[8]!.guessesRemaining], [false, 'InvalidPin', 0], 'after the limit even the right PIN gets nothing');
      assert.deepEqual(r[9], { op: 'delete', ok: true });
      assert.equal(r[10]!.reason, 'NotRegistered');
    });
  }
  // Every realm counted its guesses and destroyed each record once, in each mode.
  const destroyed = await counted('coffer_vault_records_destroyed_total');
  const attempts = await counted('coffer_vault_login_attempts_total');
  assert.deepEqual(destroyed.map((n, i) => n - destroyedBefore[i]!), [modes.length, modes.length, modes.length]);
  assert.deepEqual(attempts.map((n, i) => n - attemptsBefore[i]!), [modes.length * 7, modes.length * 7, modes.length * 7]);
});

test('a secret registered with the official SDK is recovered with Coffer\'s client, and the reverse', async (t) => {
  const realms = await sharedRealms();
  for (const [name, hardware] of modes.slice(0, 2)) {
    await t.test(name, async () => {
      const account = `cross-${name.split(' ')[0]}`;
      const tokens = juiceboxTokens(realms.realms, account);
      const conn = { configuration: configuration(realms.realms, { hardware }), token: (id: string) => tokens[id]! };
      const cfg = sdkConfiguration(realms.realms, { hardware });

      const fromSdk = randomBytes(32);
      assert.deepEqual(await runSdk(cfg, tokens, [{ op: 'register', pin: 'correct horse', info: account, secret: fromSdk.toString('hex'), guesses: 10 }]), [{ op: 'register', ok: true }]);
      await assert.rejects(juiceboxRecover({ ...conn, pin: Buffer.from('wrong'), info: accountInfo(account) }), (e: unknown) => e instanceof WrongPasswordError && e.guessesRemaining === 9);
      assert.deepEqual(Buffer.from(await juiceboxRecover({ ...conn, pin: Buffer.from('correct horse'), info: accountInfo(account) })), fromSdk);

      const fromCoffer = randomBytes(32);
      await juiceboxRegister({ ...conn, pin: Buffer.from('battery staple'), secret: fromCoffer, info: accountInfo(account), numGuesses: 3 });
      const r = await runSdk(cfg, tokens, [
        { op: 'recover', pin: 'nope', info: account },
        { op: 'recover', pin: 'battery staple', info: account },
        { op: 'recover', pin: 'battery staple', info: 'another info' },
      ]);
      assert.deepEqual([r[0]!.reason, r[0]!.guessesRemaining], ['InvalidPin', 2]);
      assert.deepEqual(r[1], { op: 'recover', ok: true, secret: fromCoffer.toString('hex') });
      assert.deepEqual([r[2]!.reason, r[2]!.guessesRemaining], ['InvalidPin', 2], 'info is part of the PIN hash');

      // Coffer's client destroys the records at once after the last wrong guess.
      for (const remaining of [1, 0]) {
        const err = await juiceboxRecover({ ...conn, pin: Buffer.from('nope'), info: accountInfo(account) }).catch((e: unknown) => e);
        if (remaining > 0) assert.ok(err instanceof WrongPasswordError && err.guessesRemaining === remaining, String(err));
        else assert.ok(err instanceof KeyDestroyedError, String(err));
      }
      const after = await runSdk(cfg, tokens, [{ op: 'recover', pin: 'battery staple', info: account }]);
      assert.deepEqual([after[0]!.reason, after[0]!.guessesRemaining], ['InvalidPin', 0]);
    });
  }
});
