/**
 * The password path over several independent realms (spec/juicebox.md), end to end: three real
 * `coffer vault serve` processes (each its own SQLite file and SoftHSM2 token) as Juicebox realms,
 * and the real `coffer` command in a real shell for every client step.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, box, coffer, exits, jsonOut, quote, smallTree, tree, type Box } from './helpers.js';

const FAST = { COFFER_INSECURE_TEST_ONLY_FAST_PIN_HASHING: '1' };

interface Realm {
  id: string;
  address: string;
  dataDir: string;
}

async function startRealm(t: TestContext, dataDir: string): Promise<Realm> {
  const child = spawn(process.execPath, [BIN, 'vault', 'serve', '--port', '0', '--data-dir', dataDir, '--log-level', 'warn', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    child.kill('SIGTERM');
  });
  let out = '';
  const j = await new Promise<{ url: string; realmId: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`realm did not start:\n${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"event":"listening"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { url: string; realmId: string });
      }
    });
    child.on('exit', (code) => reject(new Error(`realm exited ${code}:\n${out}`)));
  });
  return { id: j.realmId, address: `${j.url}/`, dataDir };
}

/** realms.json (the SDK Configuration) and tokens.json: realm 1 by command, the others by value. */
async function realmFiles(b: Box, realms: Realm[], account: string, o: { threshold?: number; mode?: string; name?: string } = {}): Promise<{ realms: string; tokens: string }> {
  const tokens: Record<string, unknown> = {};
  for (const [i, r] of realms.entries()) {
    const cmd = `node ${quote(BIN)} vault token --data-dir ${quote(r.dataDir)} --account ${account} --audience juicebox`;
    if (i === 0) tokens[r.id] = { command: cmd };
    else tokens[r.id] = jsonOut(exits(await coffer(b, ['vault', 'token', '--data-dir', r.dataDir, '--account', account, '--audience', 'juicebox', '--json']), 0)).token;
  }
  const name = o.name ?? 'realms';
  const paths = { realms: join(b.dir, `${name}.json`), tokens: join(b.dir, `${name}-tokens.json`) };
  const cfg = { realms: realms.map((r) => ({ id: r.id, address: r.address, public_key: null })), register_threshold: realms.length, recover_threshold: o.threshold ?? realms.length, pin_hashing_mode: o.mode ?? 'FastInsecure' };
  await writeFile(paths.realms, JSON.stringify(cfg, null, 2));
  await writeFile(paths.tokens, JSON.stringify(tokens, null, 2));
  return paths;
}

test('realms path: turn on over three realms, back up, restore elsewhere; wrong guesses count down; status prints the bound; disable deletes every share', async (t) => {
  const b = await box(t);
  const realms = await Promise.all([1, 2, 3].map((i) => startRealm(t, join(b.dir, `realm${i}`))));
  await smallTree(b.src);
  const files = await realmFiles(b, realms, 'alice');
  const flags = ['--realms', files.realms, '--tokens', files.tokens];

  const init = jsonOut(exits(await coffer(b, ['init', '--storage', b.store, ...flags, '--password-stdin', '--max-attempts', '4', '--json'], { input: 'correct horse\n', env: FAST }), 0));
  assert.deepEqual([init.protection, init.realms, init.recoverThreshold, init.guessesPerRealm, init.bound], ['password', 3, 3, 4, 4]);
  assert.equal(init.recoveryKey, undefined);
  exits(await coffer(b, ['backup', b.src, '--quiet'], { env: FAST }), 0);
  const before = await tree(b.src);

  const st = jsonOut(exits(await coffer(b, ['status', '--json'], { env: FAST }), 0));
  assert.equal(st.realms.bound, 4);
  assert.deepEqual(st.realms.states.map((s: { state: string }) => s.state), ['registered', 'registered', 'registered']);
  const human = exits(await coffer(b, ['status'], { env: FAST }), 0).stdout;
  assert.match(human, /Realms: {5}3 \(recover 3-of-3\), each allowing 4 wrong guesses\n {12}bound: at most 4 password tests for whoever controls or rolls back 2 realms/);

  // A new device: the password recovers K from the realms; wrong ones count down.
  const home2 = join(b.dir, 'home2');
  const restore = (password: string, target: string) => coffer(b, ['restore', join(b.dir, target), '--storage', b.store, ...flags, '--password-stdin', '--json'], { input: `${password}\n`, home: home2, env: FAST });
  for (const left of [3, 2]) assert.match(jsonOut(exits(await restore('wrong', 'out'), 3)).error.message, new RegExp(`wrong password: ${left} guess`));
  exits(await restore('correct horse', 'out'), 0);
  assert.deepEqual(await tree(join(b.dir, 'out')), before);

  // Another device joins the same backup with the password, then changes it.
  const home3 = join(b.dir, 'home3');
  exits(await coffer(b, ['init', '--storage', b.store, ...flags, '--password-stdin', '--json'], { input: 'correct horse\n', home: home3, env: FAST }), 0);
  exits(await coffer(b, ['password', 'change', '--password-stdin', '--json'], { input: 'correct horse\nbattery staple\n', home: home3, env: FAST }), 0);
  exits(await restore('correct horse', 'out2'), 3);
  exits(await restore('battery staple', 'out3'), 0);

  // Turning backups off deletes every realm's share.
  exits(await coffer(b, ['backup', 'disable', '--yes', '--json'], { env: FAST }), 0);
  assert.equal(jsonOut(exits(await restore('battery staple', 'out4'), 7)).error.code, 'not-registered');
});

test('realms path: thresholds below n lower each realm\'s limit to keep the bound; the test-only hashing is refused without its variable', async (t) => {
  const b = await box(t);
  const realms = await Promise.all([1, 2, 3].map((i) => startRealm(t, join(b.dir, `realm${i}`))));
  await smallTree(b.src);
  const two = await realmFiles(b, realms, 'bob', { threshold: 2, name: 'two' });
  const flags = ['--realms', two.realms, '--tokens', two.tokens];
  const refused = exits(await coffer(b, ['init', '--storage', b.store, ...flags, '--password-stdin', '--max-attempts', '1'], { input: 'pw\n', env: FAST }), 2);
  assert.match(refused.stderr, /with 2-of-3 realms no per-realm limit keeps the bound at or below 1 guesses/);
  const init = jsonOut(exits(await coffer(b, ['init', '--storage', b.store, ...flags, '--password-stdin', '--json'], { input: 'pw\n', env: FAST }), 0));
  assert.deepEqual([init.recoverThreshold, init.guessesPerRealm, init.bound], [2, 5, 10], '2-of-3 with a limit of 10: 5 per realm, bound (3 - 2 + 1) * 5 = 10');
  assert.equal(jsonOut(exits(await coffer(b, ['status', '--json'], { env: FAST }), 0)).realms.bound, 10);

  const fast = await realmFiles(b, realms, 'carol', { name: 'fast' });
  const noEnv = exits(await coffer(b, ['init', '--storage', join(b.dir, 'store2'), '--realms', fast.realms, '--tokens', fast.tokens, '--password-stdin'], { input: 'pw\n', home: join(b.dir, 'h2') }), 2);
  assert.match(noEnv.stderr, /FastInsecure.*tests only/);
  const both = exits(await coffer(b, ['init', '--storage', join(b.dir, 'store3'), '--realms', fast.realms, '--vault', 'http://x', '--password-stdin'], { input: 'pw\n', home: join(b.dir, 'h3') }), 2);
  assert.match(both.stderr, /--vault .* or --realms/);
});
