// What several independent realms buy (spec/juicebox.md §6.3, spec/threat-model.md §5): an
// operator who rolls one realm back gains no guess, destroyed stays destroyed unless every realm
// is rolled back, and concurrency across realms never yields more tests than the limit.
// Real processes: three `coffer vault serve`, each its own SQLite file and SoftHSM2 token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { accountInfo, juiceboxRecover, juiceboxRegister } from '@coffer/core/juicebox';
import { KeyDestroyedError } from '@coffer/core/vault';
import { attackerAttempt, configuration, juiceboxTokens, metric, restoreRealm, snapshotRealm, startRealms } from './juicebox-helpers.js';

const LIMIT = 10;

test('rollback: restoring realm 1 after every 9 wrong guesses, five times, gives at most 10 password tests; the key is gone; two restored realms do not bring it back', async (t) => {
  const realms = await startRealms(3);
  t.after(() => realms.stop());
  const r = realms.realms;
  const account = 'victim';
  const K = randomBytes(32);
  const password = Buffer.from('the right password');
  const conn = () => configuration(r);
  // Tokens stay valid across restores: a realm's token key is in the data directory it restores.
  const tokens = juiceboxTokens(r, account);
  await juiceboxRegister({ configuration: conn(), token: (id) => tokens[id]!, pin: password, secret: K, info: accountInfo(account), numGuesses: LIMIT });

  // The operator of realm 1 keeps a copy of its data directory from right after registration,
  // and so (to test the last claim) do the operators of realms 1 and 2 together.
  const before = [join(realms.root, 'copy1'), join(realms.root, 'copy2')];
  await Promise.all([snapshotRealm(r, 0, before[0]!), snapshotRealm(r, 1, before[1]!)]);

  let tests = 0;
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 9; i++) if ((await attackerAttempt(r, tokens)).test) tests++;
    await restoreRealm(r, 0, before[0]!);
  }
  assert.equal(tests, LIMIT, 'the attacker got the first 10 tests, and not one more');
  for (const realm of r.slice(1)) assert.ok((await metric(realm, 'coffer_vault_records_destroyed_total')) >= 1, 'realms 2 and 3 destroyed the record');

  await assert.rejects(juiceboxRecover({ configuration: conn(), token: (id) => tokens[id]!, pin: password, info: accountInfo(account) }), KeyDestroyedError);

  // Both restored from before destruction: realm 3 still has nothing, and 3-of-3 needs it.
  await Promise.all([restoreRealm(r, 0, before[0]!), restoreRealm(r, 1, before[1]!)]);
  await assert.rejects(juiceboxRecover({ configuration: conn(), token: (id) => tokens[id]!, pin: password, info: accountInfo(account) }), KeyDestroyedError);
});

test('concurrency: 200 concurrent wrong PINs spread over three realms allow at most 10 password tests', async (t) => {
  const realms = await startRealms(3);
  t.after(() => realms.stop());
  const r = realms.realms;
  const account = 'crowd';
  const tokens = juiceboxTokens(r, account);
  await juiceboxRegister({ configuration: configuration(r), token: (id) => tokens[id]!, pin: Buffer.from('pw'), secret: randomBytes(32), info: accountInfo(account), numGuesses: LIMIT });
  const attempts = await Promise.all(Array.from({ length: 200 }, () => attackerAttempt(r, tokens)));
  const tests = attempts.filter((a) => a.test).length;
  assert.ok(tests <= LIMIT, `${tests} password tests`);
  for (let i = 0; i < 3; i++) {
    const evaluated = attempts.filter((a) => a.evaluated[i]).length;
    assert.equal(evaluated, LIMIT, `realm ${i + 1} evaluated exactly its ${LIMIT} guesses`);
    assert.equal(await metric(r[i]!, 'coffer_vault_login_attempts_total'), LIMIT);
  }
});
