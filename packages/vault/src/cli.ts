// `coffer vault init | serve | token` (wired into the `coffer` dispatcher by packages/cli).

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { VaultServerError, UsageError } from './errors.js';
import type { HsmChoice } from './realm.js';

// Heavy modules (fastify, better-sqlite3, pkcs11js, OPAQUE) load only when a command runs, so
// importing vaultCommand costs the `coffer` CLI nothing.
const realmModule = () => import('./realm.js');

export interface VaultCommandIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  stdin?: NodeJS.ReadableStream;
  /** For tests: resolves `serve`'s listening address. */
  onListening?: (url: string) => void;
  /** For tests and embedding: stop `serve` when this signal aborts (SIGINT/SIGTERM also do). */
  signal?: AbortSignal;
}

const USAGE = `Usage: coffer vault <command> [options]

Commands:
  init    create a realm: HSM keys, sealed realm secrets, realm public key
  serve   run the vault HTTP server (creates a realm first if none exists)
  token   issue a development account token (HS256 realms only)

Common options:
  --data-dir DIR   where the realm lives (default $COFFER_VAULT_DIR or ~/.local/share/coffer/vault)
  --json           machine-readable output
  -h, --help       this help

init options:
  --hsm auto|softhsm|software|pkcs11   default auto: SoftHSM2 when installed, else the
                                       DEVELOPMENT-ONLY software key file (with a loud warning)
  --pkcs11-module PATH --pkcs11-token LABEL   for --hsm pkcs11 (PIN in $COFFER_VAULT_HSM_PIN)
  --token-public-key FILE   PEM Ed25519 public key of your app's auth server (EdDSA tokens);
                            without it the realm signs HS256 development tokens itself

serve options:
  --host HOST      default 127.0.0.1
  --port PORT      default 8787 (0 picks a free port)
  --log-level LVL  default info

token options:
  --account ID     account id (the token's sub), required
  --ttl SECONDS    default 3600
`;

function defaultDataDir(): string {
  return process.env['COFFER_VAULT_DIR'] ?? join(process.env['XDG_DATA_HOME'] ?? join(homedir(), '.local', 'share'), 'coffer', 'vault');
}

function fail(io: VaultCommandIo, e: unknown, json: boolean): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const hint = (err as { hint?: unknown }).hint;
  if (json) io.stderr.write(JSON.stringify({ error: err.name, message: err.message, ...(typeof hint === 'string' ? { hint } : {}) }) + '\n');
  else io.stderr.write(`coffer vault: ${err.message}\n${typeof hint === 'string' ? `hint: ${hint}\n` : ''}`);
  return err instanceof UsageError ? 2 : 1;
}

export async function vaultCommand(argv: string[], io: VaultCommandIo): Promise<number> {
  const [cmd, ...rest] = argv;
  const wantsJson = rest.includes('--json');
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    (cmd === undefined ? io.stderr : io.stdout).write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: false,
      options: {
        'data-dir': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        hsm: { type: 'string' },
        'pkcs11-module': { type: 'string' },
        'pkcs11-token': { type: 'string' },
        'token-public-key': { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'log-level': { type: 'string' },
        account: { type: 'string' },
        ttl: { type: 'string' },
      },
    });
  } catch (e) {
    return fail(io, new UsageError((e as Error).message), wantsJson);
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  const json = v.json === true;
  const dataDir = resolve(v['data-dir'] ?? defaultDataDir());
  try {
    switch (cmd) {
      case 'init':
        return await cmdInit(io, json, dataDir, v);
      case 'serve':
        return await cmdServe(io, json, dataDir, v);
      case 'token':
        return await cmdToken(io, json, dataDir, v);
      default:
        throw new UsageError(`unknown command "${cmd}"`, 'commands are init, serve and token; run `coffer vault --help`');
    }
  } catch (e) {
    return fail(io, e, json);
  }
}

type Values = Record<string, string | boolean | undefined>;

function hsmChoice(x: unknown): HsmChoice {
  if (x === undefined) return 'auto';
  if (x === 'auto' || x === 'softhsm' || x === 'software' || x === 'pkcs11') return x;
  throw new UsageError(`--hsm must be auto, softhsm, software or pkcs11 (got "${String(x)}")`);
}

async function cmdInit(io: VaultCommandIo, json: boolean, dataDir: string, v: Values): Promise<number> {
  const pem = typeof v['token-public-key'] === 'string' ? readFileSync(v['token-public-key'], 'utf8') : undefined;
  const { initRealm } = await realmModule();
  const { file, hsmDescription } = await initRealm({
    dataDir,
    hsm: hsmChoice(v['hsm']),
    ...(typeof v['pkcs11-module'] === 'string' ? { pkcs11Module: v['pkcs11-module'] } : {}),
    ...(typeof v['pkcs11-token'] === 'string' ? { pkcs11Token: v['pkcs11-token'] } : {}),
    ...(pem ? { tokenPublicKeyPem: pem } : {}),
    warn: (m) => io.stderr.write(m + '\n'),
  });
  printRealm(io, json, dataDir, file.realmPublicKey, hsmDescription, file.token.alg, 'created');
  return 0;
}

function printRealm(io: VaultCommandIo, json: boolean, dataDir: string, realmPublicKey: string, hsm: string, tokenAlg: string, what: string): void {
  if (json) {
    io.stdout.write(JSON.stringify({ event: `realm-${what}`, dataDir, realmPublicKey, hsm, tokenAlg }) + '\n');
    return;
  }
  io.stdout.write(
    `Realm ${what} in ${dataDir}\n` +
      `HSM: ${hsm}\n` +
      `Token algorithm: ${tokenAlg}\n\n` +
      `Realm public key (give it to clients; they pin it):\n  ${realmPublicKey}\n\n` +
      `Next: coffer vault serve --data-dir ${dataDir}\n`,
  );
}

function parsePort(x: unknown): number {
  if (x === undefined) return 8787;
  const n = Number(x);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--port must be 0-65535 (got "${String(x)}")`);
  return n;
}

async function cmdServe(io: VaultCommandIo, json: boolean, dataDir: string, v: Values): Promise<number> {
  const host = typeof v['host'] === 'string' ? v['host'] : '127.0.0.1';
  const port = parsePort(v['port']);
  const warn = (m: string) => io.stderr.write(m + '\n');
  const { initRealm, openRealm, readRealmFile, RECORDS_FILE } = await realmModule();
  const { buildServer } = await import('./server.js');
  const { SqliteRecordStore } = await import('./store/sqlite.js');
  try {
    readRealmFile(dataDir);
  } catch {
    const { file, hsmDescription } = await initRealm({ dataDir, hsm: 'auto', warn });
    printRealm(io, false, dataDir, file.realmPublicKey, hsmDescription, file.token.alg, 'created');
  }
  const { file, hsm, boundary } = await openRealm(dataDir, { warn });
  const store = SqliteRecordStore.open(join(dataDir, RECORDS_FILE));
  const app = await buildServer({
    boundary,
    store,
    realmPublicKey: file.realmPublicKey,
    logStream: { write: (s: string) => io.stdout.write(s) },
    logger: { level: typeof v['log-level'] === 'string' ? v['log-level'] : 'info' },
  });
  let closing = false;
  const done = new Promise<void>((resolveDone) => {
    const stop = async () => {
      if (closing) return;
      closing = true;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await app.close();
      await store.close();
      await hsm.close();
      resolveDone();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (io.signal?.aborted) void stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  const address = await app.listen({ host, port });
  app.log.info({ url: address, realmPublicKey: file.realmPublicKey, hsm: hsm.kind, store: 'sqlite' }, 'coffer vault listening');
  if (hsm.kind === 'software-development-only') app.log.warn('SOFTWARE HSM IN USE: development only, not for real data');
  if (json) io.stdout.write(JSON.stringify({ event: 'listening', url: address, realmPublicKey: file.realmPublicKey, hsm: hsm.kind }) + '\n');
  if (!json) io.stderr.write(`coffer vault listening on ${address}\nrealm public key: ${file.realmPublicKey}\nHSM: ${hsm.description}\n`);
  io.onListening?.(address);
  await done;
  return 0;
}

async function cmdToken(io: VaultCommandIo, json: boolean, dataDir: string, v: Values): Promise<number> {
  const account = v['account'];
  if (typeof account !== 'string') throw new UsageError('--account ID is required');
  const { protocol } = await import('@coffer/core/vault');
  if (!protocol.isValidAccountId(account)) throw new UsageError('--account must be 1-128 characters of [A-Za-z0-9._:@-]');
  const ttl = v['ttl'] === undefined ? 3600 : Number(v['ttl']);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 30 * 86400) throw new UsageError('--ttl must be 1 to 2592000 seconds');
  const { openRealm } = await realmModule();
  const { hsm, boundary } = await openRealm(dataDir, { warn: (m) => io.stderr.write(m + '\n') });
  try {
    const token = boundary.issueDevelopmentToken(account, ttl);
    io.stdout.write(json ? JSON.stringify({ account, token, expiresInSeconds: ttl }) + '\n' : token + '\n');
    return 0;
  } catch (e) {
    if (e instanceof TypeError) throw new VaultServerError(e.message, 'issue tokens with your app auth server\'s Ed25519 key', { cause: e });
    throw e;
  } finally {
    await hsm.close();
  }
}
