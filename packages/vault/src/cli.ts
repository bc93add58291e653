// `coffer vault init | serve | token` (wired into the `coffer` dispatcher by packages/cli).

import { readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CofferError } from '@coffer/core';
import { VaultServerError, UsageError } from './errors.js';
import type { HsmChoice, RealmFile } from './realm.js';
import type { RecordStore } from './store/types.js';

// Heavy modules (fastify, better-sqlite3, pkcs11js, OPAQUE) load only when a command runs, so
// importing vaultCommand costs the `coffer` CLI nothing.
const realmModule = () => import('./realm.js');

/** The streams `coffer vault` writes to and reads from, and hooks for tests and embedding. */
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
  migrate apply the PostgreSQL schema migrations (--database URL or $COFFER_VAULT_DATABASE;
          safe to repeat)
  rotate-channel-key  new channel (HPKE) key; the old one still opens requests for
          --overlap-days D (default 30); --out FILE writes the realm file for the other nodes
  realm-update --in FILE   take that realm file on another node of the realm (then restart it)
  hsm     key ceremony for several nodes sharing one realm (docs/operating.md):
            hsm transport-key   [--hsm softhsm|pkcs11 ...] [--out FILE]   on the new node
            hsm export-wrapped  --to FILE --fingerprint FP [--lock] [--out FILE]    on a node with the realm
            hsm import-wrapped  --in FILE                                 on the new node
            hsm lock-export     on the first node after the last import (one-way)
            hsm status          whether this token's realm keys can still be exported

Common options:
  --data-dir DIR   where the realm lives (default $COFFER_VAULT_DIR or ~/.local/share/coffer/vault)
  --json           machine-readable output
  -h, --help       this help

init options:
  --hsm auto|softhsm|software|pkcs11   default auto: SoftHSM2 when installed, else the
                                       DEVELOPMENT-ONLY software key file (with a loud warning)
  --pkcs11-module PATH --pkcs11-token LABEL   for --hsm pkcs11: the token must exist; its user PIN
                   in $COFFER_VAULT_HSM_PIN (for SoftHSM2 also SOFTHSM2_CONF). With --hsm softhsm,
                   --pkcs11-token names the token made in DIR/softhsm/ (default coffer-vault)
  --token-public-key FILE   PEM Ed25519 public key of your app's auth server (EdDSA tokens);
                            without it the realm signs HS256 development tokens itself
  --multi-node     the realm keys may be copied, wrapped, to other nodes' tokens (PKCS#11 only)

serve options:
  --host HOST      default 127.0.0.1
  --port PORT      default 8787 (0 picks a free port)
  --log-level LVL  default info
  --hsm auto|softhsm|software|pkcs11   when serve makes the realm (as init does); an existing realm keeps its HSM
  --database URL   postgres://user:password@host:port/db to share records between several
                   nodes (run \`coffer vault migrate\` first; also $COFFER_VAULT_DATABASE);
                   default: the embedded SQLite file DIR/records.sqlite
  --account-rate N[/B]  requests per minute per account on this node, burst B (default 60/20; 0 off)
  --address-rate N[/B]  requests per minute per client address on this node (default 1200/200; 0 off)
  --shutdown-delay S    on SIGTERM, report not-ready for S seconds before closing (default 0);
                        requests in flight always finish
  --tls-cert FILE --tls-key FILE   serve HTTPS with this PEM certificate chain and key
  --trust-proxy ADDRS   comma-separated addresses or CIDR ranges of the reverse proxies in
                        front of this node: their X-Forwarded-For names the client address
                        (for --address-rate and logs); others' X-Forwarded-For is ignored
  Endpoints: POST /v1/vault (OPAQUE), POST /req (Juicebox realm, spec/juicebox.md),
             GET /healthz, /readyz (database + HSM), /metrics (Prometheus)

token options:
  --account ID     account id (the token's sub), required
  --audience coffer|juicebox   coffer (default): for POST /v1/vault; juicebox: for POST /req
                   (kid coffer:1, iss coffer, aud = the realm id in hex; spec/juicebox.md §7)
  --ttl SECONDS    default 3600 (juicebox: at most 86400)
`;

function defaultDataDir(): string {
  return process.env['COFFER_VAULT_DIR'] ?? join(process.env['XDG_DATA_HOME'] ?? join(homedir(), '.local', 'share'), 'coffer', 'vault');
}

/**
 * Reports an error as `coffer` does (packages/cli/src/output.ts): a message and a hint on stderr, or
 * with --json one object `{"ok": false, "error": {code, name, message, hint?, exitCode}}` on stdout;
 * returns the error's exit code (docs/operating.md "Exit codes").
 */
function fail(io: VaultCommandIo, e: unknown, json: boolean): number {
  const err = e instanceof CofferError ? e : new CofferError('error', e instanceof Error ? e.message : String(e), { cause: e });
  const hint = err.hint ?? (err instanceof UsageError ? 'run `coffer vault --help`' : undefined);
  if (json) io.stdout.write(JSON.stringify({ ok: false, error: { code: err.code, name: err.name, message: err.message, ...(hint ? { hint } : {}), exitCode: err.exitCode } }) + '\n');
  else io.stderr.write(`coffer vault: ${err.message}\n${hint ? `hint: ${hint}\n` : ''}`);
  return err.exitCode;
}

/** Runs one `coffer vault` command line and returns its exit code (docs/operating.md "Exit codes"). */
export async function vaultCommand(argv: string[], io: VaultCommandIo): Promise<number> {
  const [cmd, ...rest] = argv;
  const sub = cmd === 'hsm' && rest[0] !== undefined && !rest[0].startsWith('-') ? rest.shift() : undefined;
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
        audience: { type: 'string' },
        database: { type: 'string' },
        'multi-node': { type: 'boolean', default: false },
        to: { type: 'string' },
        in: { type: 'string' },
        out: { type: 'string' },
        fingerprint: { type: 'string' },
        lock: { type: 'boolean', default: false },
        'account-rate': { type: 'string' },
        'address-rate': { type: 'string' },
        'shutdown-delay': { type: 'string' },
        'overlap-days': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'trust-proxy': { type: 'string' },
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
      case 'migrate':
        return await cmdMigrate(io, json, v);
      case 'hsm':
        return await cmdHsm(io, json, dataDir, sub, v);
      case 'rotate-channel-key': {
        const days = v['overlap-days'] === undefined ? 30 : Number(v['overlap-days']);
        if (!Number.isFinite(days) || days < 0 || days > 3650) throw new UsageError('--overlap-days must be 0 to 3650 (fractions allowed)');
        const { rotateChannelKey, realmForOtherNodes } = await realmModule();
        const file = await rotateChannelKey({ dataDir, overlapMs: Math.round(days * 86_400_000), warn: (m) => io.stderr.write(m + '\n') });
        if (typeof v['out'] === 'string') writeFileSync(v['out'], JSON.stringify(realmForOtherNodes(file), null, 2) + '\n', { mode: 0o600 });
        const retire = file.previousRealmPublicKeys?.[0]?.retireAt;
        io.stdout.write(
          json
            ? JSON.stringify({ event: 'channel-key-rotated', realmPublicKey: file.realmPublicKey, previousRetireAt: retire }) + '\n'
            : `New realm public key (ship it to clients):\n  ${file.realmPublicKey}\nThe previous key opens requests until ${retire}.\nNext: realm-update on the other nodes, then restart every node.\n`,
        );
        return 0;
      }
      case 'realm-update': {
        const { updateRealm } = await realmModule();
        const file = await updateRealm({ dataDir, from: readJsonFile(v['in'], '--in'), warn: (m) => io.stderr.write(m + '\n') });
        io.stdout.write(json ? JSON.stringify({ event: 'realm-updated', realmPublicKey: file.realmPublicKey }) + '\n' : `Realm file updated; restart this node. Realm public key: ${file.realmPublicKey}\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${cmd}"`, 'commands are init, serve, token, migrate, hsm, rotate-channel-key and realm-update; run `coffer vault --help`');
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
    multiNode: v['multi-node'] === true,
    warn: (m) => io.stderr.write(m + '\n'),
  });
  printRealm(io, json, dataDir, file, hsmDescription, 'created', v['multi-node'] === true);
  return 0;
}

/** The realm id in hex, as Juicebox configurations name it (spec/juicebox.md §1). */
function realmIdHex(file: RealmFile): string {
  return Buffer.from(file.realmId, 'base64url').toString('hex');
}

function printRealm(io: VaultCommandIo, json: boolean, dataDir: string, file: RealmFile, hsm: string, what: string, multiNode = false): void {
  const { realmPublicKey } = file;
  const tokenAlg = file.token.alg;
  const juicebox = { realmId: realmIdHex(file), ...(file.juiceboxPublicKey ? { juiceboxPublicKey: file.juiceboxPublicKey } : {}) };
  if (json) {
    io.stdout.write(JSON.stringify({ event: `realm-${what}`, dataDir, realmPublicKey, ...juicebox, hsm, tokenAlg }) + '\n');
    return;
  }
  const next = multiNode
    ? `Next: on each further node \`coffer vault hsm transport-key\`, then \`hsm export-wrapped\` here (docs/operating.md);\n` +
      `then on every node: COFFER_VAULT_DATABASE=postgres://... coffer vault serve --data-dir ${dataDir}\n`
    : `Next: coffer vault serve --data-dir ${dataDir}\n`;
  io.stdout.write(
    `Realm ${what} in ${dataDir}\n` +
      `HSM: ${hsm}\n` +
      `Token algorithm: ${tokenAlg}\n\n` +
      `Realm public key (give it to clients; they pin it):\n  ${realmPublicKey}\n\n` +
      `Juicebox realm (POST /req): id ${juicebox.realmId}${juicebox.juiceboxPublicKey ? `, public_key ${juicebox.juiceboxPublicKey}` : ''}\n\n` +
      next,
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
  const { buildVaultServer } = await import('./server.js');
  const databaseUrl = databaseOption(v);
  const rateLimits = { perAccount: rateOption(v, 'account-rate'), perAddress: rateOption(v, 'address-rate') };
  const shutdownDelayMs = secondsOption(v, 'shutdown-delay', 0) * 1000;
  const tls = tlsOption(v);
  const trustProxy = trustProxyOption(v);
  try {
    readRealmFile(dataDir);
    if (v['hsm'] !== undefined) warn(`coffer vault: --hsm is ignored: the realm in ${dataDir} exists and keeps the HSM it was made with`);
  } catch (e) {
    // A node of a shared database never makes a realm of its own: its records would belong to another realm.
    if (databaseUrl) throw e;
    const { file, hsmDescription } = await initRealm({
      dataDir,
      hsm: hsmChoice(v['hsm']),
      ...(typeof v['pkcs11-module'] === 'string' ? { pkcs11Module: v['pkcs11-module'] } : {}),
      ...(typeof v['pkcs11-token'] === 'string' ? { pkcs11Token: v['pkcs11-token'] } : {}),
      warn,
    });
    printRealm(io, false, dataDir, file, hsmDescription, 'created');
  }

  const { file, hsm, boundary } = await openRealm(dataDir, { warn });
  let store: RecordStore | undefined;
  let server: Awaited<ReturnType<typeof buildVaultServer>>;
  let juicebox: import('./juicebox/index.js').JuiceboxRealm;
  try {
    const { JuiceboxRealm, juiceboxProtocol } = await import('./juicebox/index.js');
    juicebox = await JuiceboxRealm.start({ file, hsm, policy: boundary.policy });
    store = await openStore(dataDir, RECORDS_FILE, databaseUrl);
    server = await buildVaultServer({
      boundary,
      store,
      realmPublicKey: file.realmPublicKey,
      protocols: [juiceboxProtocol(juicebox)],
      logStream: { write: (s: string) => io.stdout.write(s) },
      logger: { level: typeof v['log-level'] === 'string' ? v['log-level'] : 'info' },
      rateLimits,
      ...(tls ? { tls } : {}),
      ...(trustProxy ? { trustProxy } : {}),
    });
  } catch (e) {
    await store?.close();
    await hsm.close();
    throw e;
  }
  const openedStore = store;
  const app = server.app;
  let closing = false;
  const done = new Promise<void>((resolveDone) => {
    // Graceful shutdown: report not-ready and refuse new vault requests, give load balancers
    // --shutdown-delay to notice, then close: fastify waits for the requests already running.
    const stop = async () => {
      if (closing) return;
      closing = true;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      server.drain();
      app.log.info({ shutdownDelayMs }, 'draining: not ready, finishing requests in flight');
      if (shutdownDelayMs > 0) await new Promise((r) => setTimeout(r, shutdownDelayMs));
      await app.close();
      await openedStore.close();
      await hsm.close();
      resolveDone();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (io.signal?.aborted) void stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  const address = await app.listen({ host, port });
  app.log.info({ url: address, realmPublicKey: file.realmPublicKey, hsm: hsm.kind, store: databaseUrl ? 'postgresql' : 'sqlite' }, 'coffer vault listening');
  if (hsm.kind === 'software-development-only') app.log.warn('SOFTWARE HSM IN USE: development only, not for real data');
  const jb = { realmId: juicebox.realmIdHex, juiceboxPublicKey: Buffer.from(juicebox.noisePublicKey).toString('hex') };
  if (json) io.stdout.write(JSON.stringify({ event: 'listening', url: address, realmPublicKey: file.realmPublicKey, ...jb, hsm: hsm.kind }) + '\n');
  if (!json) io.stderr.write(`coffer vault listening on ${address}\nrealm public key: ${file.realmPublicKey}\nJuicebox realm: ${address}/ id ${jb.realmId} public_key ${jb.juiceboxPublicKey}\nHSM: ${hsm.description}\n`);
  io.onListening?.(address);
  await done;
  return 0;
}

function rateOption(v: Values, name: string): { perMinute: number; burst: number } | false | undefined {
  const x = v[name];
  if (x === undefined) return undefined;
  const m = /^(\d+)(?:\/(\d+))?$/.exec(String(x));
  if (!m) throw new UsageError(`--${name} must be PER_MINUTE or PER_MINUTE/BURST (0 turns it off), got "${String(x)}"`);
  const perMinute = Number(m[1]);
  if (perMinute === 0) return false;
  const burst = m[2] !== undefined ? Number(m[2]) : Math.max(1, Math.ceil(perMinute / 3));
  if (burst < 1) throw new UsageError(`--${name}: burst must be at least 1`);
  return { perMinute, burst };
}

function tlsOption(v: Values): { cert: Buffer; key: Buffer } | undefined {
  const cert = v['tls-cert'];
  const key = v['tls-key'];
  if (cert === undefined && key === undefined) return undefined;
  if (typeof cert !== 'string' || typeof key !== 'string') throw new UsageError('--tls-cert FILE and --tls-key FILE go together', 'give both PEM files (the certificate chain and its private key)');
  const read = (path: string, flag: string) => {
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new UsageError(`${flag} ${path}: cannot read it (${(cause as Error).message})`);
    }
  };
  return { cert: read(cert, '--tls-cert'), key: read(key, '--tls-key') };
}

function trustProxyOption(v: Values): string[] | undefined {
  const x = v['trust-proxy'];
  if (x === undefined) return undefined;
  const list = String(x)
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  for (const a of list) {
    const [addr, bits, extra] = a.split('/');
    const family = isIP(addr ?? '');
    const max = family === 4 ? 32 : 128;
    if (!family || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
      throw new UsageError(`--trust-proxy takes addresses or CIDR ranges of your proxies, separated by commas (got "${a}")`, 'for example --trust-proxy 10.0.0.5,10.1.0.0/16; trust only the proxies in front of this node');
    }
  }
  if (list.length === 0) throw new UsageError('--trust-proxy needs at least one address');
  return list;
}

function secondsOption(v: Values, name: string, dflt: number): number {
  const x = v[name];
  if (x === undefined) return dflt;
  const n = Number(x);
  if (!Number.isFinite(n) || n < 0 || n > 3600) throw new UsageError(`--${name} must be 0 to 3600 seconds`);
  return n;
}

function databaseOption(v: Values): string | undefined {
  const url = typeof v['database'] === 'string' ? v['database'] : process.env['COFFER_VAULT_DATABASE'];
  if (url === undefined || url === '') return undefined;
  if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError('--database must be a postgres:// or postgresql:// URL', 'omit --database to use the embedded SQLite file');
  return url;
}

async function openStore(dataDir: string, recordsFile: string, databaseUrl: string | undefined): Promise<RecordStore> {
  if (databaseUrl) {
    const { PostgresRecordStore } = await import('./store/postgres.js');
    return PostgresRecordStore.open({ url: databaseUrl });
  }
  const { SqliteRecordStore } = await import('./store/sqlite.js');
  return SqliteRecordStore.open(join(dataDir, recordsFile));
}

async function cmdMigrate(io: VaultCommandIo, json: boolean, v: Values): Promise<number> {
  const url = databaseOption(v);
  if (!url) throw new UsageError('migrate needs a database: set COFFER_VAULT_DATABASE=postgres://... or give --database (the embedded SQLite store needs no migration)');
  const { migratePostgres, redactDatabaseUrl } = await import('./store/postgres.js');
  const r = await migratePostgres({ url });
  if (json) io.stdout.write(JSON.stringify({ event: 'migrated', applied: r.applied, schemaVersion: r.schemaVersion }) + '\n');
  else io.stdout.write(r.applied.length ? `Applied migrations ${r.applied.join(', ')} to ${redactDatabaseUrl(url)}; schema version ${r.schemaVersion}\n` : `${redactDatabaseUrl(url)} is up to date (schema version ${r.schemaVersion})\n`);
  return 0;
}

function readJsonFile(path: unknown, flag: string): unknown {
  if (typeof path !== 'string') throw new UsageError(`${flag} FILE is required`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (cause) {
    throw new UsageError(`${flag} ${path}: cannot read it as JSON (${(cause as Error).message})`);
  }
}

function writeOut(io: VaultCommandIo, v: Values, data: unknown): void {
  const text = JSON.stringify(data, null, 2) + '\n';
  if (typeof v['out'] === 'string') writeFileSync(v['out'], text, { mode: 0o600 });
  else io.stdout.write(text);
}

async function cmdHsm(io: VaultCommandIo, json: boolean, dataDir: string, sub: string | undefined, v: Values): Promise<number> {
  const c = await import('./ceremony.js');
  const warn = (m: string) => io.stderr.write(m + '\n');
  switch (sub) {
    case 'transport-key': {
      const t = await c.createTransportKey({
        dataDir,
        hsm: v['hsm'] === undefined ? 'softhsm' : hsmChoice(v['hsm']),
        ...(typeof v['pkcs11-module'] === 'string' ? { pkcs11Module: v['pkcs11-module'] } : {}),
        ...(typeof v['pkcs11-token'] === 'string' ? { pkcs11Token: v['pkcs11-token'] } : {}),
        warn,
      });
      writeOut(io, v, t);
      // With --out the fingerprint also goes to stdout, so a script can hand it on.
      if (typeof v['out'] === 'string') io.stdout.write(json ? JSON.stringify({ event: 'transport-key', out: v['out'], fingerprint: t.fingerprint }) + '\n' : `Transport key fingerprint: ${t.fingerprint}\n`);
      if (!json) io.stderr.write(`Transport key fingerprint: ${t.fingerprint}\nRead it to the operator of the exporting node; they pass it as --fingerprint.\n`);
      return 0;
    }
    case 'export-wrapped': {
      if (typeof v['fingerprint'] !== 'string') {
        throw new UsageError(
          '--fingerprint FP is required: the transport key fingerprint that the receiving node printed, read to you by its operator',
          'compare it out of band (phone, in person), never from the file you were sent: whoever swaps the file would receive the realm keys',
        );
      }
      const bundle = await c.exportWrapped({
        dataDir,
        transport: readJsonFile(v['to'], '--to'),
        expectFingerprint: v['fingerprint'],
        lock: v['lock'] === true,
        warn,
      });
      writeOut(io, v, bundle);
      if (!json) io.stderr.write(`Realm keys wrapped for transport key ${bundle.transportFingerprint}${v['lock'] === true ? '; this token can no longer export them' : ''}.\n`);
      return 0;
    }
    case 'import-wrapped': {
      const file = await c.importWrapped({ dataDir, bundle: readJsonFile(v['in'], '--in'), warn });
      if (json) io.stdout.write(JSON.stringify({ event: 'realm-imported', dataDir, realmPublicKey: file.realmPublicKey }) + '\n');
      else io.stdout.write(`Realm imported into ${dataDir}\nRealm public key: ${file.realmPublicKey}\nNext: COFFER_VAULT_DATABASE=postgres://... coffer vault serve --data-dir ${dataDir}\n`);
      return 0;
    }
    case 'lock-export':
      await c.lockExport({ dataDir, warn });
      io.stdout.write(json ? JSON.stringify({ event: 'export-locked' }) + '\n' : 'The realm keys on this token can no longer be exported.\n');
      return 0;
    case 'status': {
      const keys = await c.keyStatus({ dataDir, warn });
      io.stdout.write(json ? JSON.stringify({ keys }) + '\n' : keys.map((k) => `${k.label}: ${k.extractable ? 'exportable (wrapped only)' : 'not exportable'}\n`).join(''));
      return 0;
    }
    default:
      throw new UsageError(`unknown hsm command "${String(sub)}"`, 'hsm commands are transport-key, export-wrapped, import-wrapped, lock-export and status');
  }
}

async function cmdToken(io: VaultCommandIo, json: boolean, dataDir: string, v: Values): Promise<number> {
  const account = v['account'];
  if (typeof account !== 'string') throw new UsageError('--account ID is required');
  const { protocol } = await import('@coffer/core/vault');
  if (!protocol.isValidAccountId(account)) throw new UsageError('--account must be 1-128 characters of [A-Za-z0-9._:@-]');
  const audience = v['audience'] ?? 'coffer';
  if (audience !== 'coffer' && audience !== 'juicebox') throw new UsageError('--audience must be coffer (POST /v1/vault, the default) or juicebox (POST /req)');
  const maxTtl = audience === 'juicebox' ? 86400 : 30 * 86400;
  const ttl = v['ttl'] === undefined ? 3600 : Number(v['ttl']);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > maxTtl) throw new UsageError(`--ttl must be 1 to ${maxTtl} seconds${audience === 'juicebox' ? ' (Juicebox tokens live at most 24 hours)' : ''}`);
  const { openRealm } = await realmModule();
  const { file, hsm, boundary } = await openRealm(dataDir, { warn: (m) => io.stderr.write(m + '\n') });
  try {
    const token =
      audience === 'juicebox' ? (await (await import('./juicebox/index.js')).JuiceboxRealm.start({ file, hsm })).issueDevelopmentToken(account, ttl) : boundary.issueDevelopmentToken(account, ttl);
    io.stdout.write(json ? JSON.stringify({ account, audience, ...(audience === 'juicebox' ? { realmId: realmIdHex(file) } : {}), token, expiresInSeconds: ttl }) + '\n' : token + '\n');
    return 0;
  } catch (e) {
    if (e instanceof TypeError) throw new VaultServerError(e.message, 'issue tokens with your app auth server\'s Ed25519 key', { cause: e });
    throw e;
  } finally {
    await hsm.close();
  }
}
