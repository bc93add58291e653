/**
 * The password path of the `coffer` command end to end (issue 3): a real `coffer vault serve`
 * process with its SQLite record store and SoftHSM2 token (software boundary where SoftHSM2 is
 * missing), and the real command in a real shell for every client step.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { BIN, box, coffer, exits, jsonOut, smallTree, tree, type Box } from './helpers.js';

const FAST = { COFFER_INSECURE_TEST_ONLY_FAST_KEY_STRETCHING: '1' };

interface Vault {
  url: string;
  realmKey: string;
  dataDir: string;
  process: ChildProcess;
}

async function startVault(t: TestContext, dir: string): Promise<Vault> {
  const dataDir = join(dir, 'vault');
  // One account makes ~40 requests in seconds here; the per-account rate limit (tested in the
  // vault's own suite) would answer 429 on a fast machine, so it is raised for this story.
  const child = spawn(process.execPath, [BIN, 'vault', 'serve', '--port', '0', '--data-dir', dataDir, '--log-level', 'warn', '--account-rate', '600/200'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    child.kill('SIGTERM');
  });
  // The banner (URL, realm public key) may come on either stream.
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vault did not start:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m && /realm public key: (\S+)/.test(out)) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`vault exited ${code}:\n${out}`)));
  });
  const realmKey = /realm public key: (\S+)/.exec(out)![1]!;
  return { url, realmKey, dataDir, process: child };
}

async function tokenFor(b: Box, v: Vault, account: string): Promise<string> {
  return jsonOut(exits(await coffer(b, ['vault', 'token', '--account', account, '--data-dir', v.dataDir, '--json']), 0)).token as string;
}

const vaultFlags = (v: Vault, token: string) => ['--vault', v.url, '--realm-key', v.realmKey, '--token', token];

test('password path: turn on with a password, back up, restore on a new device; wrong guesses count down; the limit destroys the key', async (t) => {
  const b = await box(t);
  const v = await startVault(t, b.dir);
  const token = await tokenFor(b, v, 'alice@example');
  await smallTree(b.src);
  const env = { ...FAST };

  const init = jsonOut(exits(await coffer(b, ['init', '--storage', b.store, ...vaultFlags(v, token), '--password-stdin', '--max-attempts', '4', '--json'], { input: 'correct horse\n', env }), 0));
  assert.equal(init.protection, 'password');
  assert.equal(init.maxAttempts, 4);
  assert.equal(init.recoveryKey, undefined, 'the password path shows no recovery key');
  exits(await coffer(b, ['backup', b.src, '--quiet'], { env }), 0);
  const before = await tree(b.src);

  // A new device: wrong passwords count down exactly, each costing one guess.
  const home2 = join(b.dir, 'home2');
  const restore = (password: string, target: string) =>
    coffer(b, ['restore', join(b.dir, target), '--storage', b.store, ...vaultFlags(v, token), '--password-stdin', '--json'], { input: `${password}\n`, home: home2, env });
  for (const left of [3, 2]) {
    const r = exits(await restore('wrong', 'out'), 3);
    assert.match(jsonOut(r).error.message, new RegExp(`wrong password: ${left} guess`));
  }
  // The right password resets the count and restores every byte.
  exits(await restore('correct horse', 'out'), 0);
  assert.deepEqual(await tree(join(b.dir, 'out')), before);
  const st = jsonOut(exits(await coffer(b, ['status', '--json'], { env }), 0));
  assert.deepEqual([st.vault.registered, st.vault.guessesRemaining, st.vault.maxAttempts], [true, 4, 4]);

  // Password change: the old one stops working, the new one works.
  exits(await coffer(b, ['password', 'change', '--password-stdin'], { input: 'correct horse\nbattery staple\n', env }), 0);
  exits(await restore('correct horse', 'out2'), 3);
  exits(await restore('battery staple', 'out2'), 0);

  // Four wrong guesses in a row: the last says so, and then the key is gone for good.
  const msgs: string[] = [];
  for (let i = 0; i < 4; i++) msgs.push(jsonOut(await restore('guess', 'out3')).error.message);
  assert.match(msgs[2]!, /1 guess remains/);
  assert.match(msgs[3]!, /gone for good/);
  const gone = await restore('battery staple', 'out3');
  assert.equal(gone.code, 6, 'destroyed key: exit 6');
  assert.match(jsonOut(gone).error.message, /gone for good/);
  // The device that turned backups on still has its key, and says the vault has none.
  const st2 = jsonOut(exits(await coffer(b, ['status', '--json'], { env }), 0));
  assert.equal(st2.vault.registered, false);
});

test('password path: another account cannot use the key; backup disable deletes it from the vault', async (t) => {
  const b = await box(t);
  const v = await startVault(t, b.dir);
  const alice = await tokenFor(b, v, 'alice');
  const mallory = await tokenFor(b, v, 'mallory');
  await smallTree(b.src);
  const env = { ...FAST };
  exits(await coffer(b, ['init', '--storage', b.store, ...vaultFlags(v, alice), '--password-stdin', '--quiet'], { input: 'pw-alice\n', env }), 0);
  exits(await coffer(b, ['backup', b.src, '--quiet'], { env }), 0);
  const r = await coffer(b, ['restore', join(b.dir, 'out'), '--storage', b.store, ...vaultFlags(v, mallory), '--password-stdin'], { input: 'pw-alice\n', home: join(b.dir, 'h2'), env });
  assert.equal(r.code, 7, 'an account without a key gets "not registered"');
  exits(await coffer(b, ['backup', 'disable'], { env }), 2);
  exits(await coffer(b, ['backup', 'disable', '--yes'], { env }), 0);
  const after = await coffer(b, ['restore', join(b.dir, 'out'), '--storage', b.store, ...vaultFlags(v, alice), '--password-stdin'], { input: 'pw-alice\n', home: join(b.dir, 'h3'), env });
  assert.equal(after.code, 7);
  assert.match(after.stderr, /no backup key in the vault/);
});

test('password path: bad vault flags are usage errors that spend no guess', async (t) => {
  const b = await box(t);
  const v = await startVault(t, b.dir);
  const token = await tokenFor(b, v, 'bob');
  await smallTree(b.src);
  const env = { ...FAST };
  exits(await coffer(b, ['init', '--storage', b.store, '--vault', v.url, '--password-stdin'], { input: 'x\n', env }), 2);
  exits(await coffer(b, ['init', '--storage', b.store, ...vaultFlags(v, token), '--recovery-key', '--password-stdin'], { input: 'x\n', env }), 2);
  exits(await coffer(b, ['init', '--storage', b.store, '--vault', v.url, '--realm-key', 'not-a-key', '--token', token, '--password-stdin'], { input: 'x\n', env }), 2);
  exits(await coffer(b, ['init', '--storage', b.store, ...vaultFlags(v, token), '--password-stdin', '--quiet'], { input: 'pw\n', env }), 0);
  // Restoring from a folder that holds no backup fails before any guess is spent.
  exits(await coffer(b, ['restore', join(b.dir, 'o'), '--storage', join(b.dir, 'nothing'), ...vaultFlags(v, token), '--password-stdin'], { input: 'wrong\n', home: join(b.dir, 'h'), env }), 5);
  const st = jsonOut(exits(await coffer(b, ['status', '--json'], { env }), 0));
  assert.equal(st.vault.guessesRemaining, 10);
});
