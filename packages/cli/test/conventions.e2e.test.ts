/**
 * CLI conventions (issue 10): secrets from private files (`--password-file`, `--token-file`) and the
 * environment (`COFFER_TOKEN`), never only argv; the store from `COFFER_STORAGE`; the profile under
 * XDG (`$XDG_CONFIG_HOME/coffer`) while `~/.coffer` is still read; `coffer vault` errors with --json
 * as `coffer` prints them. The real command in a real shell, and a real vault for the password path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { protocol } from '@coffer/core/vault';
import { box, coffer, exits, jsonOut, show, smallTree, tree } from './helpers.js';

/** A realm key of the right form for a vault that is not there: commands get past their input checks and then fail to reach it (exit 7). */
const NOWHERE = ['--vault', 'http://127.0.0.1:9/', '--realm-key', protocol.formatRealmPublicKey(randomBytes(16), randomBytes(32))];

/** A token of the right form (the client reads the account from it); no vault is there to check its signature. */
const b64u = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const TOKEN = `${b64u({ alg: 'EdDSA', typ: 'JWT' })}.${b64u({ sub: 'alice', exp: 4102444800 })}.c2ln`;

async function secretFile(path: string, text: string, mode: number): Promise<string> {
  await writeFile(path, text);
  await chmod(path, mode);
  return path;
}

test('--password-file and --token-file: a file others can read is refused with a hint; a private one is read', async (t) => {
  const b = await box(t);
  const open = await secretFile(join(b.dir, 'pw-open'), 'correct horse\n', 0o644);
  const shut = await secretFile(join(b.dir, 'pw'), 'correct horse\n', 0o600);
  const tokenOpen = await secretFile(join(b.dir, 'token-open'), TOKEN + '\n', 0o640);
  const token = await secretFile(join(b.dir, 'token'), TOKEN + '\n', 0o600);

  const r1 = exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--token', TOKEN, '--password-file', open]), 2);
  assert.match(r1.stderr, /--password-file .*pw-open can be read by other users \(mode 0644\)\n  hint: make it private first: chmod 600 /);
  const r2 = exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--token-file', tokenOpen, '--password-file', shut]), 2);
  assert.match(r2.stderr, /--token-file .*token-open can be read by other users \(mode 0640\)/);
  // Private files: the command reads both and goes on to the vault, which is not there (exit 7).
  const r3 = exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--token-file', token, '--password-file', shut, '--json']), 7);
  assert.equal(jsonOut(r3).error.code, 'vault-unavailable');
  // A missing or empty file is bad usage too, and so are two sources for one secret.
  exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--token-file', join(b.dir, 'none'), '--password-file', shut]), 2);
  const empty = await secretFile(join(b.dir, 'empty'), '\n', 0o600);
  assert.match(exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--token-file', token, '--password-file', empty]), 2).stderr, /holds no secret/);
  assert.match(exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--token', 'x', '--token-file', token, '--password-file', shut]), 2).stderr, /--token or --token-file, not both/);
  assert.equal(existsSync(join(b.store, 'config')), false, 'nothing was written to the store');
});

test('COFFER_TOKEN stands for --token, and the token is not needed on argv', async (t) => {
  const b = await box(t);
  const pw = await secretFile(join(b.dir, 'pw'), 'correct horse\n', 0o600);
  const without = exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--password-file', pw]), 2);
  assert.match(without.stderr, /needs --vault URL, --realm-key KEY and a token \(--token-file FILE, \$COFFER_TOKEN or --token TOKEN\)/);
  exits(await coffer(b, ['init', '--storage', b.store, ...NOWHERE, '--password-file', pw], { env: { COFFER_TOKEN: TOKEN } }), 7);
});

test('COFFER_STORAGE stands for --storage (init and restore)', async (t) => {
  const b = await box(t);
  await smallTree(b.src);
  const init = jsonOut(exits(await coffer(b, ['init', '--json'], { env: { COFFER_STORAGE: b.store } }), 0));
  assert.ok(existsSync(join(b.store, 'config')));
  assert.equal(JSON.parse(readFileSync(join(b.home, 'profile.json'), 'utf8')).storage, b.store);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  // A new device: no profile, the store from the environment, the key on stdin.
  const out = join(b.dir, 'restored');
  exits(await coffer(b, ['restore', out, '--recovery-key-stdin', '--quiet'], { home: join(b.dir, 'other-home'), input: init.recoveryKey + '\n', env: { COFFER_STORAGE: b.store } }), 0);
  assert.deepEqual(await tree(out), await tree(b.src));
  assert.match(exits(await coffer(b, ['init'], { home: join(b.dir, 'third') }), 2).stderr, /--storage is required \(or \$COFFER_STORAGE\)/);
});

test('the profile lives under XDG ($XDG_CONFIG_HOME/coffer, default ~/.config/coffer); ~/.coffer is still read; COFFER_HOME and --profile win', async (t) => {
  const b = await box(t);
  const noHome = { COFFER_HOME: '' };
  // Default: ~/.config/coffer (HOME is the box).
  const a = jsonOut(exits(await coffer(b, ['init', '--storage', join(b.dir, 's1'), '--json'], { env: noHome }), 0));
  assert.equal(a.profile, join(b.dir, '.config', 'coffer'));
  assert.ok(existsSync(join(b.dir, '.config', 'coffer', 'profile.json')));
  // XDG_CONFIG_HOME moves it.
  const xdg = join(b.dir, 'xdg');
  const c = jsonOut(exits(await coffer(b, ['status', '--json'], { env: { ...noHome, XDG_CONFIG_HOME: xdg } }), 2));
  assert.equal(c.error.code, 'no-profile');
  assert.match(c.error.message, new RegExp(`no Coffer profile in ${xdg}/coffer`));
  // A profile made by an earlier coffer in ~/.coffer is still the one used.
  await mkdir(join(b.dir, '.coffer'), { mode: 0o700 });
  const legacy = jsonOut(exits(await coffer(b, ['init', '--storage', join(b.dir, 's2'), '--json'], { env: noHome }), 0));
  assert.equal(legacy.profile, join(b.dir, '.coffer'));
  assert.equal(jsonOut(exits(await coffer(b, ['status', '--json'], { env: { ...noHome, XDG_CONFIG_HOME: xdg } }), 0)).profile, join(b.dir, '.coffer'));
  // COFFER_HOME and --profile win over both.
  assert.equal(jsonOut(exits(await coffer(b, ['status', '--json', '--profile', join(b.dir, '.config', 'coffer')], { env: noHome }), 0)).profile, join(b.dir, '.config', 'coffer'));
  assert.match(exits(await coffer(b, ['status'], { home: join(b.dir, 'elsewhere') }), 2).stderr, /no Coffer profile in .*elsewhere/);
});

test('coffer vault: --json errors go to stdout in coffer\'s form, with the documented exit codes', async (t) => {
  const b = await box(t);
  const usage = exits(await coffer(b, ['vault', 'token', '--data-dir', join(b.dir, 'v'), '--json']), 2);
  assert.equal(usage.stderr, '', show(usage));
  assert.deepEqual(jsonOut(usage), { ok: false, error: { code: 'usage', name: 'UsageError', message: '--account ID is required', hint: 'run `coffer vault --help`', exitCode: 2 } });
  const noRealm = jsonOut(exits(await coffer(b, ['vault', 'token', '--account', 'a', '--data-dir', join(b.dir, 'v'), '--json']), 1));
  assert.equal(noRealm.error.code, 'realm-config');
  assert.equal(noRealm.error.exitCode, 1);
  // And coffer's own errors have the same shape.
  assert.deepEqual(Object.keys(jsonOut(exits(await coffer(b, ['status', '--json']), 2)).error), ['code', 'name', 'message', 'hint', 'exitCode']);
});
