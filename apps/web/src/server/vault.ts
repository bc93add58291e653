/**
 * The app's Backup Key Vault: `coffer-vault serve` on embedded defaults as a child process, reached
 * by the browser through this server (same origin, so no CORS), and development account tokens for
 * the demo accounts (`coffer-vault token`), cached until shortly before they expire.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
/** packages/vault/bin/coffer-vault.js, found through the workspace link (main is dist/src/index.js). */
export const VAULT_BIN = join(dirname(require.resolve('@coffer/vault')), '..', '..', 'bin', 'coffer-vault.js');

export interface VaultChild {
  url: string;
  realmPublicKey: string;
  hsm: string;
  token(account: string): Promise<string>;
  proxy(req: IncomingMessage, res: ServerResponse): void;
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

export async function startVault(dataDir: string, extraArgs: string[] = []): Promise<VaultChild> {
  const child: ChildProcess = spawn(process.execPath, [VAULT_BIN, 'serve', '--data-dir', dataDir, '--port', '0', '--json', '--log-level', 'warn', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const listening = await new Promise<{ url: string; realmPublicKey: string; hsm: string }>((resolve, reject) => {
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
  const tokens = new Map<string, { token: string; until: number }>();
  return {
    ...listening,
    async token(account) {
      const cached = tokens.get(account);
      if (cached && cached.until > Date.now()) return cached.token;
      const j = JSON.parse(await run(['token', '--account', account, '--data-dir', dataDir, '--ttl', '3600', '--json'])) as { token: string };
      tokens.set(account, { token: j.token, until: Date.now() + 3000_000 });
      return j.token;
    },
    proxy(req, res) {
      const up = request(
        { hostname: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
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
