/**
 * The app's realms: `coffer-vault serve` on embedded defaults as child processes, each with its
 * own data folder (SQLite records, HSM token), reached by the browser through this server (same
 * origin, so no CORS). The first is the Backup Key Vault of the single-realm path (OPAQUE, `POST
 * /v1/vault`); all three are the Juicebox realms of the multi-realm path (`POST /req`). Each trusts
 * EdDSA tokens signed by this server's key (tokens.ts), so no realm holds a token secret.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readRealmFile } from '@coffer/vault';

const require = createRequire(import.meta.url);
/** packages/vault/bin/coffer-vault.js, found through the workspace link (main is dist/src/index.js). */
export const VAULT_BIN = join(dirname(require.resolve('@coffer/vault')), '..', '..', 'bin', 'coffer-vault.js');

export interface VaultChild {
  url: string;
  /** The OPAQUE realm's public key (`coffer-realm-v1:...`), pinned by the page. */
  realmPublicKey: string;
  /** The realm id as the OPAQUE path's token audience names it. */
  realmId: string;
  /** The Juicebox realm id (16 bytes, hex) and its X25519 key for the hardware-realm wire (hex). */
  juiceboxRealmId: string;
  juiceboxPublicKey: string;
  hsm: string;
  /** Forwards a request to `path` on the vault, without the `Cookie` header. */
  proxy(req: IncomingMessage, res: ServerResponse, path: string): void;
  stop(): Promise<void>;
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VAULT_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`coffer-vault ${args[0]} exited with ${code}: ${err.trim()}`))));
  });
}

/**
 * Makes the realm (trusting `tokenPublicKeyFile`) unless `dataDir` has one, and checks that an
 * existing realm trusts that key: a realm of an older coffer-web signs HS256 tokens itself.
 */
async function ensureRealm(dataDir: string, tokenPublicKeyFile: string): Promise<string> {
  const ours = (await readFile(tokenPublicKeyFile, 'utf8')).trim();
  let realm;
  try {
    realm = readRealmFile(dataDir);
  } catch {
    await run(['init', '--data-dir', dataDir, '--token-public-key', tokenPublicKeyFile, '--json']);
    realm = readRealmFile(dataDir);
  }
  if (realm.token.alg !== 'EdDSA' || realm.token.publicKeyPem.trim() !== ours) {
    throw new Error(
      `the vault realm in ${dataDir} does not trust this server's token key (it was made by an older coffer-web, before accounts); ` +
        'remove that data folder to start afresh, or choose another with --data-dir',
    );
  }
  return realm.realmId;
}

export async function startVault(dataDir: string, tokenPublicKeyFile: string, extraArgs: string[] = []): Promise<VaultChild> {
  const realmId = await ensureRealm(dataDir, tokenPublicKeyFile);
  const child: ChildProcess = spawn(process.execPath, [VAULT_BIN, 'serve', '--data-dir', dataDir, '--port', '0', '--json', '--log-level', 'warn', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const listening = await new Promise<{ url: string; realmPublicKey: string; realmId: string; juiceboxPublicKey: string; hsm: string }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the vault did not start in 30 s:\n${out}\n${err}`)), 30_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      for (const line of out.split('\n')) {
        if (!line.includes('"event":"listening"')) continue;
        clearTimeout(t);
        resolve(JSON.parse(line));
        return;
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`the vault exited with ${code}:\n${out}\n${err}`));
    });
  });
  const target = new URL(listening.url);
  return {
    url: listening.url,
    realmPublicKey: listening.realmPublicKey,
    hsm: listening.hsm,
    realmId,
    juiceboxRealmId: listening.realmId,
    juiceboxPublicKey: listening.juiceboxPublicKey,
    proxy(req, res, path) {
      const { cookie: _cookie, ...headers } = req.headers;
      const up = request(
        { hostname: target.hostname, port: target.port, path, method: req.method, headers: { ...headers, host: target.host } },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'vault-unavailable' }));
      });
      req.pipe(up);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
