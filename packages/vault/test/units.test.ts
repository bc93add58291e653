// Unit tests: tokens, the vault CLI, and client-side input checks (no server needed).

import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InvalidVaultConfigError, protocol, registerBackupKey, vaultStatus } from '@coffer/core/vault';
import { InvalidTokenError } from '../src/errors.js';
import { canonicalB64u, issueToken, TokenVerifierCache, vaultTokenRules, verifyToken } from '../src/token.js';
import { cleanup, runVault, serveInProcess, tempDir } from './helpers.js';
import { vaultCommand } from '../src/cli.js';

const secret = new Uint8Array(32).fill(7);
const aud = 'coffer-vault:test';
const now = Date.UTC(2026, 10, 26, 12);

describe('account tokens', () => {
  const hs = { alg: 'HS256' as const, secret };
  /** A token with this header and payload, signed with the test secret. */
  const signed = (header: object, payload: object) => {
    const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  };
  const claims = (o: object = {}) => ({ sub: 'alice', aud, iat: now / 1000, exp: now / 1000 + 600, ...o });
  const refused = (tok: string, re: RegExp, at = now, a = aud) =>
    assert.rejects(verifyToken(hs, tok, a, at), (e: unknown) => e instanceof InvalidTokenError && re.test(e.message) && !e.message.includes(tok));

  it('verifies HS256 and returns the account', async () => {
    const t = issueToken(hs, { account: 'alice', audience: aud, ttlSeconds: 60, nowMs: now });
    assert.equal(await verifyToken(hs, t, aud, now), 'alice');
    assert.equal(await verifyToken(hs, signed({ alg: 'HS256', typ: 'JWT' }, claims()), aud, now), 'alice', 'the hand-made token of the cases below is valid as such');
  });

  it('verifies EdDSA with the public key only', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const t = issueToken({ alg: 'EdDSA', privateKey }, { account: 'bob', audience: aud, ttlSeconds: 60, nowMs: now });
    assert.equal(await verifyToken({ alg: 'EdDSA', publicKey }, t, aud, now), 'bob');
  });

  it('rejects expired, wrong-audience, forged and algorithm-swapped tokens', async () => {
    const t = issueToken(hs, { account: 'alice', audience: aud, ttlSeconds: 60, nowMs: now });
    await refused(t, /expired/, now + 200_000);
    await refused(t, /audience/, now, 'coffer-vault:other');
    await refused(t, /future/, now - 200_000);
    const [h, p, sig] = t.split('.') as [string, string, string];
    const flipped = sig.slice(0, 10) + (sig[10] === 'A' ? 'B' : 'A') + sig.slice(11);
    await refused(`${h}.${p}.${flipped}`, /bad signature/);
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
    await refused(none, /algorithm/);
    await refused('a.b', /not a JWT/);
    const { privateKey } = generateKeyPairSync('ed25519');
    await refused(issueToken({ alg: 'EdDSA', privateKey }, { account: 'alice', audience: aud, ttlSeconds: 60, nowMs: now }), /algorithm/);
  });

  it('rejects a future nbf, an unknown crit header and a non-canonical encoding', async () => {
    await refused(signed({ alg: 'HS256' }, claims({ nbf: now / 1000 + 3600 })), /not valid yet/);
    assert.equal(await verifyToken(hs, signed({ alg: 'HS256' }, claims({ nbf: now / 1000 - 10 })), aud, now), 'alice', 'a past nbf is fine');
    await refused(signed({ alg: 'HS256', crit: ['x-coffer-ext'], 'x-coffer-ext': 1 }, claims()), /crit/);
    // The last character of a 32-byte MAC carries 4 bits and 2 unused ones: setting an unused bit
    // gives another spelling of the same bytes, which a lenient decoder accepts.
    const t = signed({ alg: 'HS256' }, claims());
    const last = t.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = t.slice(0, -1) + alphabet[alphabet.indexOf(last) + 1]!;
    assert.deepEqual(Buffer.from(twin.split('.')[2]!, 'base64url'), Buffer.from(t.split('.')[2]!, 'base64url'), 'the same signature bytes');
    await refused(twin, /not canonical base64url/);
    await refused(`${t}=`.replace(/\.([^.]*)$/, '.$1'), /not canonical|not a valid/);
  });
});

describe('token verification cache', () => {
  it('skips the signature check only for the same string, and still checks the clock', async () => {
    const hs = { alg: 'HS256' as const, secret };
    const cache = new TokenVerifierCache(vaultTokenRules(hs, aud));
    const t = issueToken(hs, { account: 'carol', audience: aud, ttlSeconds: 60, nowMs: now });
    assert.equal(await cache.verify(t, now), 'carol');
    assert.equal(await cache.verify(t, now + 1000), 'carol');
    await assert.rejects(cache.verify(t, now + 200_000), /expired/, 'a remembered token expires like any other');
    const [h, p, sig] = t.split('.') as [string, string, string];
    await assert.rejects(cache.verify(`${h}.${p}.${sig.slice(0, 5)}${sig[5] === 'A' ? 'B' : 'A'}${sig.slice(6)}`, now), /bad signature/);
    await assert.rejects(cache.verify(issueToken(hs, { account: 'carol', audience: 'coffer-vault:other', ttlSeconds: 60, nowMs: now }), now), /audience/);
  });

  it('knows canonical base64url', () => {
    for (const ok of ['', 'AA', 'AAA', 'AAAA', 'QQ', 'QUE', 'QUFB', Buffer.from('any bytes!').toString('base64url')]) assert.equal(canonicalB64u(ok), true, ok);
    for (const bad of ['A', 'AB', 'AAB', 'QR', 'QUF', 'AA==', 'A+A/', 'AAAAA']) assert.equal(canonicalB64u(bad), false, bad);
  });
});

describe('coffer vault CLI', () => {
  const dir = tempDir('coffer-vault-cli-');
  after(() => cleanup(dir));

  it('prints help and exits 0; no command is a usage error (2)', async () => {
    const h = await runVault(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /coffer vault <command>/);
    assert.equal((await runVault([])).code, 2);
  });

  it('exits 2 with a hint on bad usage', async () => {
    const r = await runVault(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "frobnicate"\nhint: /);
    const f = await runVault(['token', '--nope']);
    assert.equal(f.code, 2);
    // --json: the error as `coffer --json` prints it, on stdout (one error model, one format).
    const j = await runVault(['token', '--data-dir', dir, '--json']);
    assert.equal(j.code, 2);
    assert.equal(j.stderr, '');
    const out = JSON.parse(j.stdout) as { ok: boolean; error: Record<string, unknown> };
    assert.equal(out.ok, false);
    assert.deepEqual(Object.keys(out.error), ['code', 'name', 'message', 'hint', 'exitCode']);
    assert.deepEqual([out.error['code'], out.error['name'], out.error['exitCode']], ['usage', 'UsageError', 2]);
    assert.match(String(out.error['message']), /--account ID is required/);
    assert.equal((await runVault(['init', '--data-dir', dir, '--hsm', 'cloud'])).code, 2);
  });

  it('explains a missing realm', async () => {
    const r = await runVault(['token', '--data-dir', join(dir, 'none'), '--account', 'a']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no realm in .*: the directory does not exist\nhint: .*run `coffer vault init/);
  });

  it('init with the software HSM warns loudly, prints the realm key, refuses to overwrite; token works', async () => {
    const d = join(dir, 'sw');
    const r = await runVault(['init', '--data-dir', d, '--hsm', 'software']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /SOFTWARE HSM \(development only\)/);
    assert.match(r.stdout, /coffer-realm-v1:[A-Za-z0-9_-]{64}/);
    const again = await runVault(['init', '--data-dir', d, '--hsm', 'software']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /refusing to overwrite/);
    const t = await runVault(['token', '--data-dir', d, '--account', 'alice', '--ttl', '60']);
    assert.equal(t.code, 0, t.stderr);
    assert.equal(t.stdout.trim().split('.').length, 3);
    assert.equal((await runVault(['token', '--data-dir', d, '--account', 'bad account'])).code, 2);
  });

  it('refuses to start when realm.json publishes a key that does not match the sealed private key', async () => {
    const d = join(dir, 'swap');
    assert.equal((await runVault(['init', '--data-dir', d, '--hsm', 'software'])).code, 0);
    const f = JSON.parse(readFileSync(join(d, 'realm.json'), 'utf8'));
    const r = protocol.parseRealmPublicKey(f.realmPublicKey);
    f.realmPublicKey = protocol.formatRealmPublicKey(r.realmId, new Uint8Array(32).fill(5));
    writeFileSync(join(d, 'realm.json'), JSON.stringify(f));
    const t = await runVault(['token', '--data-dir', d, '--account', 'alice']);
    assert.equal(t.code, 4, 'a realm file that does not match its sealed key is damaged data (exit code 4)');
    assert.match(t.stderr, /published realm public key does not match the sealed private key/);
  });

  it('serves in-process until its AbortSignal fires (how the coffer CLI embeds it)', async () => {
    const d = join(dir, 'inproc');
    assert.equal((await runVault(['init', '--data-dir', d, '--hsm', 'software'])).code, 0);
    const ac = new AbortController();
    let logs = '';
    let url = '';
    const running = vaultCommand(['serve', '--data-dir', d, '--port', '0'], {
      stdout: { write: (x: string) => (logs += x) },
      stderr: { write: () => true },
      signal: ac.signal,
      onListening: (u) => {
        url = u;
      },
    });
    while (!url) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(await (await fetch(new URL('/healthz', url))).json(), { ok: true });
    ac.abort();
    assert.equal(await running, 0);
    assert.match(logs, /SOFTWARE HSM IN USE/);
    assert.equal(process.listenerCount('SIGTERM'), 0, 'signal handlers are removed again');
  });

  it('serve --hsm makes a new realm in the HSM it names, and says an existing realm keeps its own', async () => {
    const d = join(dir, 'serve-hsm');
    const serveOnce = async (args: string[]) => {
      const s = await serveInProcess(['--data-dir', d, ...args]);
      assert.ok(s.url, s.stderr);
      await s.stop();
      return s.stderr;
    };
    assert.match(await serveOnce(['--hsm', 'software']), /SOFTWARE HSM/);
    assert.ok(existsSync(join(d, 'software-hsm-DEVELOPMENT-ONLY.json')), 'the realm was made with the software HSM');
    assert.match(await serveOnce(['--hsm', 'softhsm']), /--hsm is ignored: the realm .* exists/);
  });

  it('init --hsm softhsm honours --pkcs11-token, and refuses flags that would be ignored', async () => {
    const d = join(dir, 'labelled');
    const r = await runVault(['init', '--data-dir', d, '--hsm', 'softhsm', '--pkcs11-token', 'coffer-1']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /PKCS#11 token "coffer-1"/);
    assert.equal(JSON.parse(readFileSync(join(d, 'realm.json'), 'utf8')).hsm.tokenLabel, 'coffer-1');
    assert.equal((await runVault(['token', '--data-dir', d, '--account', 'a'])).code, 0, 'the realm opens its token by that label');
    const mod = await runVault(['init', '--data-dir', join(dir, 'mod'), '--hsm', 'softhsm', '--pkcs11-module', '/usr/lib/softhsm/libsofthsm2.so']);
    assert.equal(mod.code, 2);
    assert.match(mod.stderr, /--pkcs11-module is only for --hsm pkcs11/);
    const sw = await runVault(['init', '--data-dir', join(dir, 'sw-label'), '--hsm', 'software', '--pkcs11-token', 'x']);
    assert.equal(sw.code, 2);
    assert.match(sw.stderr, /software HSM has none/);
    assert.equal(existsSync(join(dir, 'mod')) || existsSync(join(dir, 'sw-label')), false, 'nothing was made');
  });

  it('init --multi-node says the next steps include the shared database', async () => {
    const r = await runVault(['init', '--data-dir', join(dir, 'multi'), '--hsm', 'softhsm', '--multi-node']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /hsm transport-key/);
    assert.match(r.stdout, /COFFER_VAULT_DATABASE=postgres:\/\/\.\.\. coffer vault serve/);
  });

  it('--hsm pkcs11 without the PIN says which variable to set', async () => {
    const saved = process.env['COFFER_VAULT_HSM_PIN'];
    delete process.env['COFFER_VAULT_HSM_PIN'];
    try {
      const r = await runVault(['init', '--data-dir', join(dir, 'nopin'), '--hsm', 'pkcs11', '--pkcs11-module', '/usr/lib/softhsm/libsofthsm2.so', '--pkcs11-token', 'coffer-1']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /COFFER_VAULT_HSM_PIN is not set: it must hold the user PIN of PKCS#11 token "coffer-1"/);
      assert.match(r.stderr, /hint: export COFFER_VAULT_HSM_PIN=.*SOFTHSM2_CONF/);
      assert.doesNotMatch(r.stderr, /run `coffer vault init/);
    } finally {
      if (saved !== undefined) process.env['COFFER_VAULT_HSM_PIN'] = saved;
    }
  });

  it('hsm transport-key --hsm pkcs11 makes its data directory, and says where the token is missing', async () => {
    // A SoftHSM2 token made the way an operator would (softhsm2-util), used through --hsm pkcs11.
    const conf = join(dir, 'softhsm2.conf');
    mkdirSync(join(dir, 'tokens'));
    writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\n`);
    const env = { ...process.env, SOFTHSM2_CONF: conf };
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'coffer-2', '--so-pin', '12345678', '--pin', '87654321'], { env, stdio: 'ignore' });
    const saved = { conf: process.env['SOFTHSM2_CONF'], pin: process.env['COFFER_VAULT_HSM_PIN'] };
    process.env['SOFTHSM2_CONF'] = conf;
    process.env['COFFER_VAULT_HSM_PIN'] = '87654321';
    try {
      const nested = join(dir, 'not', 'yet', 'there');
      const args = ['hsm', 'transport-key', '--data-dir', nested, '--hsm', 'pkcs11', '--pkcs11-module', '/usr/lib/softhsm/libsofthsm2.so', '--out', join(dir, 't.json')];
      const r = await runVault([...args, '--pkcs11-token', 'coffer-2']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Transport key fingerprint: [0-9a-f]{4}(-[0-9a-f]{4}){7}\n$/, 'the fingerprint on stdout when the key goes to --out');
      assert.ok(existsSync(join(nested, 'transport-key.json')));
      const missing = await runVault([...args.map((a) => (a === nested ? join(dir, 'other') : a)), '--pkcs11-token', 'no-such-token']);
      assert.equal(missing.code, 5, 'an HSM the vault cannot reach or log in to exits 5');
      assert.match(missing.stderr, /no initialised PKCS#11 token labelled "no-such-token"/);
      assert.match(missing.stderr, /hint: .*SOFTHSM2_CONF/);
      process.env['COFFER_VAULT_HSM_PIN'] = '11111111';
      const wrongPin = await runVault([...args.map((a) => (a === nested ? join(dir, 'other2') : a)), '--pkcs11-token', 'coffer-2']);
      assert.equal(wrongPin.code, 5);
      assert.match(wrongPin.stderr, /failed: wrong user PIN\nhint: check the PIN in \$COFFER_VAULT_HSM_PIN/);
      assert.equal(wrongPin.stderr.includes('11111111'), false);
    } finally {
      for (const [k, v] of [['SOFTHSM2_CONF', saved.conf], ['COFFER_VAULT_HSM_PIN', saved.pin]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('refuses to serve a database that belongs to another realm', async () => {
    const a = join(dir, 'realm-a');
    const b = join(dir, 'realm-b');
    for (const d of [a, b]) assert.equal((await runVault(['init', '--data-dir', d, '--hsm', 'software'])).code, 0);
    const first = await serveInProcess(['--data-dir', a]);
    assert.ok(first.url, first.stderr);
    await first.stop();
    copyFileSync(join(a, 'records.sqlite'), join(b, 'records.sqlite'));
    const second = await serveInProcess(['--data-dir', b]);
    assert.equal(second.code, 2, 'a database of another realm is a configuration mistake (bad usage)');
    assert.match(second.stderr, /this database belongs to realm [A-Za-z0-9_-]{22}, not to this node's realm [A-Za-z0-9_-]{22}\nhint: give every realm a database of its own/);
  });

  it('serves HTTPS with --tls-cert/--tls-key, and checks the TLS and proxy options', async () => {
    const d = join(dir, 'tls');
    assert.equal((await runVault(['init', '--data-dir', d, '--hsm', 'software'])).code, 0);
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const s = await serveInProcess(['--data-dir', d, '--tls-cert', cert, '--tls-key', key, '--trust-proxy', '10.0.0.0/8,127.0.0.1']);
    assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/, s.stderr);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        https.get(new URL('/readyz', s.url), { ca: readFileSync(cert) }, (res) => {
          let b = '';
          res.setEncoding('utf8').on('data', (x: string) => (b += x)).on('end', () => resolve(`${res.statusCode} ${b}`));
        }).on('error', reject);
      });
      assert.equal(body, '200 {"ready":true}', 'a client that trusts the certificate gets answers');
      await assert.rejects(fetch(new URL('/readyz', s.url.replace('https:', 'http:'))), 'no plain HTTP on that port');
    } finally {
      await s.stop();
    }
    for (const [args, re] of [
      [['--tls-cert', cert], /--tls-cert FILE and --tls-key FILE go together/],
      [['--tls-cert', cert, '--tls-key', join(dir, 'nope.pem')], /--tls-key .*nope\.pem: cannot read it/],
      [['--trust-proxy', 'everyone'], /--trust-proxy takes addresses or CIDR ranges/],
      [['--trust-proxy', '10.0.0.0/33'], /--trust-proxy takes addresses/],
    ] as const) {
      const r = await runVault(['serve', '--data-dir', d, '--port', '0', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
    }
  });

  it('init with an Ed25519 app key makes an EdDSA realm that issues no tokens itself', async () => {
    const d = join(dir, 'ed');
    const { publicKey } = generateKeyPairSync('ed25519');
    const pem = join(dir, 'app.pub.pem');
    writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
    const r = await runVault(['init', '--data-dir', d, '--hsm', 'software', '--token-public-key', pem, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).tokenAlg, 'EdDSA');
    const t = await runVault(['token', '--data-dir', d, '--account', 'alice']);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /EdDSA/);
  });
});

describe('vault client input checks', () => {
  const realmPublicKey = protocol.formatRealmPublicKey(new Uint8Array(16), new Uint8Array(32).fill(9));
  const token = issueToken({ alg: 'HS256', secret }, { account: 'alice', audience: aud, ttlSeconds: 60 });
  const noFetch: typeof fetch = async () => {
    throw new Error('must not be called');
  };
  it('names what is wrong before any network traffic', async () => {
    const base = { vaultUrl: 'http://127.0.0.1:1', realmPublicKey, token, fetch: noFetch };
    for (const [patch, re] of [
      [{ vaultUrl: 'not a url' }, /vault URL/],
      [{ vaultUrl: 'http://user:pw@host/' }, /credentials/],
      [{ realmPublicKey: 'coffer-realm-v2:abc' }, /must start with/],
      [{ realmPublicKey: 'coffer-realm-v1:abc' }, /48 bytes/],
      [{ token: 'x' }, /not a JWT/],
    ] as const) {
      await assert.rejects(vaultStatus({ ...base, ...patch }), (e: unknown) => e instanceof InvalidVaultConfigError && re.test(e.message) && typeof e.hint === 'string');
    }
    await assert.rejects(registerBackupKey({ ...base, password: 'pw', backupKey: new Uint8Array(31) }), /32 bytes/);
    await assert.rejects(registerBackupKey({ ...base, password: '', backupKey: new Uint8Array(32) }), /non-empty/);
  });

  it('round-trips the realm key and pads to 1 KiB blocks', () => {
    const r = protocol.parseRealmPublicKey(realmPublicKey);
    assert.equal(r.publicKey.length, 32);
    assert.equal(protocol.formatRealmPublicKey(r.realmId, r.publicKey), realmPublicKey);
    for (const n of [0, 1, 1019, 1020, 1021, 5000]) {
      const p = protocol.pad(new Uint8Array(n).fill(1));
      assert.equal(p.length % 1024, 0);
      assert.equal(protocol.unpad(p).length, n);
    }
    const bad = protocol.pad(new Uint8Array(3));
    bad[100] = 1;
    assert.throws(() => protocol.unpad(bad), /bad padding/);
  });
});

it('the wire error codes live in one place, in sync with spec/vault-protocol.md §5', () => {
  const spec = readFileSync(new URL('../../../../spec/vault-protocol.md', import.meta.url), 'utf8');
  const sentence = /Non-200 bodies are plain JSON .*? with codes\s+([^.]*)\./s.exec(spec);
  assert.ok(sentence, 'spec §5 lists the codes');
  const listed = [...sentence[1]!.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]);
  assert.deepEqual(listed, [...protocol.VAULT_ERROR_CODES]);
  for (const code of ['rate-limited', 'record-unreadable', 'internal']) assert.ok(protocol.VAULT_ERROR_CODES.includes(code as protocol.VaultErrorCode), code);
});
