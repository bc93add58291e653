// docs/operating.md §1 is a script: this test runs exactly its ```sh operating-guide blocks, in
// order, in one bash, as root, against a throwaway PostgreSQL and a temporary VAULT_ROOT, then
// checks that they brought up what the guide says: three nodes, three SoftHSM2 tokens, one
// PostgreSQL, TLS, one realm. The guide cannot drift from the code.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, protocol, recoverBackupKey, registerBackupKey, vaultStatus, type VaultConnection } from '@coffer/core/vault';
import { audienceFor, issueToken } from '../src/token.js';
import { cleanup, tempDir } from './helpers.js';
import { startPostgres, type PostgresServer } from './postgres-server.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const GUIDE = join(repo, 'docs', 'operating.md');

/** The fenced blocks whose info string is exactly `sh <marker>`, in document order. */
export function guideBlocks(markdown: string, marker: string): string[] {
  return [...markdown.matchAll(/^```sh (\S+)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === marker).map((m) => m[2]!);
}

async function freeBasePort(): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    if ((await free(base)) && (await free(base + 1)) && (await free(base + 2))) return base;
  }
}

/** A fetch over node:https that trusts one CA (the global fetch cannot be given one). */
function fetchTrusting(ca: Buffer): typeof fetch {
  return (input, init) =>
    new Promise((resolve, reject) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const req = https.request(url, { method: init?.method ?? 'GET', headers: init?.headers as Record<string, string>, ca, ...(init?.signal ? { signal: init.signal } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0 })));
      });
      req.on('error', reject);
      req.end(init?.body ? Buffer.from(init.body as Uint8Array) : undefined);
    });
}

describe('docs/operating.md, run as written', () => {
  let pgServer: PostgresServer;
  let root: string;
  let vaultRoot: string;
  let basePort: number;
  let output = '';
  const pids: number[] = [];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the guide is run as root (it uses runuser and writes root-only files); run the tests as root');
    pgServer = await startPostgres();
    root = tempDir('coffer-guide-');
    vaultRoot = join(root, 'vault');
    basePort = await freeBasePort();
  });

  after(async () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
    for (const pid of pids) {
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    pgServer?.destroy();
    if (root) cleanup(root);
  });

  it('has its prerequisites: the Debian packages it installs are installed (scripts/setup.sh)', () => {
    const install = guideBlocks(readFileSync(GUIDE, 'utf8'), 'operating-guide-install');
    assert.equal(install.length, 1);
    const packages = /apt-get install -y (.+)/.exec(install[0]!)![1]!.trim().split(/\s+/);
    assert.deepEqual(packages.sort(), ['curl', 'openssl', 'postgresql', 'softhsm2']);
    for (const p of packages) execFileSync('dpkg', ['-s', p], { stdio: 'ignore' });
  });

  it('its commands, run in order, bring up three nodes with three SoftHSM2 tokens over one PostgreSQL', async () => {
    const blocks = guideBlocks(readFileSync(GUIDE, 'utf8'), 'operating-guide');
    assert.ok(blocks.length >= 7, `${blocks.length} blocks`);
    const script = ['set -euo pipefail', ...blocks].join('\n');
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(COFFER_|SOFTHSM2_CONF$|PG)/.test(k)) env[k] = v;
    Object.assign(env, {
      VAULT_ROOT: vaultRoot,
      PGHOST: pgServer.dir,
      PGPORT: String(pgServer.port),
      BASE_PORT: String(basePort),
      PATH: `${join(repo, 'node_modules', '.bin')}:${process.env['PATH']}`,
    });
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('bash', ['-c', script], { env, cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
      child.once('exit', resolve);
    });
    for (const n of [1, 2, 3]) {
      const f = join(vaultRoot, `n${n}.pid`);
      if (existsSync(f)) pids.push(Number(readFileSync(f, 'utf8')));
    }
    assert.equal(code, 0, `the guide's commands failed:\n${output}`);
    assert.equal(pids.length, 3);
    assert.equal((output.match(/\{"ready":true\}/g) ?? []).length, 3, output);
    assert.equal((output.match(/: not exportable/g) ?? []).length, 6, 'hsm status on every node: both keys locked or never exportable');
  });

  it('the three nodes serve one realm over TLS, on three tokens, bound to the one database', async () => {
    assert.equal(pids.length, 3, 'the guide ran');
    const ca = readFileSync(join(vaultRoot, 'tls.crt'));
    const realms = [1, 2, 3].map((n) => JSON.parse(readFileSync(join(vaultRoot, `n${n}`, 'realm.json'), 'utf8')) as { realmId: string; realmPublicKey: string; hsm: { kind: string; tokenLabel: string; pinEnv: string } });
    assert.equal(new Set(realms.map((r) => r.realmPublicKey)).size, 1, 'one realm');
    assert.deepEqual(realms.map((r) => [r.hsm.kind, r.hsm.tokenLabel, r.hsm.pinEnv]), [1, 2, 3].map((n) => ['pkcs11', `coffer-${n}`, 'COFFER_VAULT_HSM_PIN']));
    const db = new pg.Client({ connectionString: pgServer.url.replace(/\/postgres$/, '/coffer_vault') });
    await db.connect();
    try {
      assert.deepEqual((await db.query<{ realm: string }>('SELECT realm FROM vault_realm')).rows, [{ realm: realms[0]!.realmId }]);
    } finally {
      await db.end();
    }
    // A user registers through node 1 and recovers through node 3, with a token of the app's key.
    const f = fetchTrusting(ca);
    const account = 'guide-user';
    const token = issueToken({ alg: 'EdDSA', privateKey: createPrivateKey(readFileSync(join(vaultRoot, 'app-auth.key.pem'))) }, { account, audience: audienceFor(realms[0]!.realmId), ttlSeconds: 600 });
    const conn = (n: number): VaultConnection => ({ vaultUrl: `https://127.0.0.1:${basePort + n - 1}`, realmPublicKey: realms[0]!.realmPublicKey, token, keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, fetch: f });
    const K = new Uint8Array(protocol.randomBytes(32));
    await registerBackupKey({ ...conn(1), password: 'the guide works', backupKey: K });
    assert.deepEqual(await recoverBackupKey({ ...conn(3), password: 'the guide works' }), K);
    assert.equal((await vaultStatus(conn(2))).guessesRemaining, 10);
    for (const n of [1, 2, 3]) {
      const metrics = await (await f(`https://127.0.0.1:${basePort + n - 1}/metrics`)).text();
      assert.match(metrics, /^coffer_vault_ready 1$/m, `node ${n} reports ready in its metrics`);
    }
  });
});
