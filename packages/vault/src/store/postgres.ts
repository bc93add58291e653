// PostgreSQL record store (`pg` 8): several vault nodes share one database (ARCHITECTURE.md,
// "Scaling past one machine"). Every write is one conditional statement inside an explicit
// transaction with `synchronous_commit = on` forced for that transaction, so a compare-and-set
// that returned true has been flushed to the server's WAL before the vault answers. Concurrent
// writers on one account serialise on the row lock; the loser's conditional UPDATE matches no
// row and returns false (READ COMMITTED re-checks the WHERE clause on the new row version).
//
// Schema changes are versioned migrations (MIGRATIONS), applied by `coffer vault migrate` under
// an advisory lock; `open` refuses a database whose schema is older or newer than this code.

import pg from 'pg';
import { DatabaseRealmMismatchError, RecordStoreError } from '../errors.js';
import { checkChange, type CommitOptions, type CommitResult, type RecordChange, type RecordStore, type StoredRecord } from './types.js';

/** Ordered schema migrations. Never edit a released one; append a new version. */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'vault_records',
    sql: `CREATE TABLE vault_records (
      account TEXT PRIMARY KEY NOT NULL CHECK (length(account) BETWEEN 1 AND 128),
      version BIGINT NOT NULL CHECK (version >= 1),
      sealed  BYTEA NOT NULL
    )`,
  },
  {
    version: 2,
    name: 'vault_realm and vault_request_ids',
    // The realm the database belongs to (set by the first `serve`), and the request ids claimed
    // in the last minutes, shared by every node (a request is accepted once per realm).
    sql: `CREATE TABLE vault_realm (
      one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
      realm TEXT NOT NULL
    );
    CREATE TABLE vault_request_ids (
      id         TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
      expires_at BIGINT NOT NULL
    );
    CREATE INDEX vault_request_ids_expiry ON vault_request_ids (expires_at);
    ALTER TABLE vault_records SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100)`,
  },
];
/** The PostgreSQL schema version this code needs (`coffer vault migrate` applies it). */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
const MIGRATION_LOCK = 0x636f6666; // "coff": advisory lock id held while migrating

export class DatabaseSchemaError extends RecordStoreError {
  constructor(message: string) {
    super(message, { hint: 'run `coffer vault migrate --database URL` with the same vault version as the nodes' });
    this.name = 'DatabaseSchemaError';
  }
}

/** Removes the password from a connection URL, for messages and logs. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = 'redacted';
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/**
 * A RecordStoreError that says what went wrong with a connection, from the server's SQLSTATE or
 * the socket error: wrong password, unknown role or database, no server, missing privileges.
 */
export function postgresError(what: string, url: string, cause: unknown): RecordStoreError {
  const where = redactDatabaseUrl(url);
  const code = String((cause as { code?: unknown } | null)?.code ?? '');
  let user = 'the user in the URL';
  let db = 'the database in the URL';
  try {
    const u = new URL(url);
    user = `role "${decodeURIComponent(u.username)}"`;
    db = `database "${decodeURIComponent(u.pathname.slice(1))}"`;
  } catch {
    /* keep the generic words */
  }
  const known: Record<string, [string, string]> = {
    '28P01': [`PostgreSQL refused the password of ${user}`, 'check the password in the URL ($COFFER_VAULT_DATABASE); percent-encode special characters (@ : / ? #)'],
    '28000': [`PostgreSQL refused ${user} (no such role, or pg_hba.conf has no entry for this host and user)`, 'create the role (docs/operating.md §1.1) or add a pg_hba.conf line for this host'],
    '3D000': [`${db} does not exist`, 'create it (CREATE DATABASE ... OWNER ...; docs/operating.md §1.1), or fix the URL'],
    '42501': [`${user} lacks a privilege the vault needs`, 'the vault role must own its database (CREATE DATABASE ... OWNER role) or at least its tables'],
    '53300': ['PostgreSQL has no free connection slot', 'raise max_connections, or lower the number of nodes (each opens up to 10 connections)'],
    '57P03': ['PostgreSQL is starting up or shutting down', 'try again in a moment'],
    ECONNREFUSED: ['no PostgreSQL server answers at that host and port', 'check host and port in the URL, and that PostgreSQL runs and listens there (listen_addresses)'],
    ENOTFOUND: ['the database host name does not resolve', 'check the host in the URL'],
  };
  const k = known[code];
  if (k) return new RecordStoreError(`${what} at ${where}: ${k[0]}`, { cause, hint: k[1] });
  return new RecordStoreError(`${what} at ${where}`, { cause, hint: 'check that PostgreSQL runs and the URL (host, port, role, password, database) is right; the cause below says more' });
}

export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//.test(s);
}

export interface PostgresOptions {
  /** postgres://user:password@host:port/db */
  url: string;
  /** Pool size per node (default 10). */
  maxConnections?: number;
  /** Fail a query that waits longer for a connection or an answer (default 5000 ms). */
  timeoutMs?: number;
}

function pool(o: PostgresOptions): pg.Pool {
  const timeout = o.timeoutMs ?? 5000;
  const p = new pg.Pool({
    connectionString: o.url,
    max: o.maxConnections ?? 10,
    connectionTimeoutMillis: timeout,
    query_timeout: timeout,
    statement_timeout: timeout,
    idleTimeoutMillis: 10_000,
    application_name: 'coffer-vault',
  });
  // An idle connection dropped by the server (restart, failover) emits 'error' on the pool;
  // the pool replaces it. Without a listener Node would crash the process.
  p.on('error', () => undefined);
  return p;
}

/** Applies every pending migration. Returns the versions applied now (empty if up to date). */
export async function migratePostgres(o: PostgresOptions): Promise<{ applied: number[]; schemaVersion: number }> {
  const p = pool(o);
  const applied: number[] = [];
  try {
    const c = await p.connect();
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query(`CREATE TABLE IF NOT EXISTS vault_schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
      const done = new Set((await c.query<{ version: number }>('SELECT version FROM vault_schema_migrations')).rows.map((r) => r.version));
      const newest = Math.max(0, ...done);
      if (newest > SCHEMA_VERSION) throw new DatabaseSchemaError(`the database schema (version ${newest}) is newer than this vault (version ${SCHEMA_VERSION})`);
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        await c.query(m.sql);
        await c.query('INSERT INTO vault_schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
        applied.push(m.version);
      }
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  } catch (cause) {
    if (cause instanceof RecordStoreError) throw cause;
    throw postgresError('migration failed (nothing was changed)', o.url, cause);
  } finally {
    await p.end();
  }
  return { applied, schemaVersion: SCHEMA_VERSION };
}

function statement(account: string, change: Exclude<RecordChange, { kind: 'none' }>): [string, unknown[]] {
  if (change.kind === 'delete') return ['DELETE FROM vault_records WHERE account = $1 AND version = $2', [account, change.expectedVersion]];
  const data = Buffer.from(change.sealed.buffer, change.sealed.byteOffset, change.sealed.byteLength);
  if (change.expectedVersion === null) return ['INSERT INTO vault_records (account, version, sealed) VALUES ($1, $2, $3) ON CONFLICT (account) DO NOTHING', [account, change.newVersion, data]];
  return ['UPDATE vault_records SET version = $2, sealed = $3 WHERE account = $1 AND version = $4', [account, change.newVersion, data, change.expectedVersion]];
}

/** The shared record store of a realm with several nodes: PostgreSQL, every change a compare-and-set transaction. */
export class PostgresRecordStore implements RecordStore {
  readonly description: string;
  readonly #pool: pg.Pool;
  #purgedAt = 0;

  private constructor(p: pg.Pool, description: string) {
    this.#pool = p;
    this.description = description;
  }

  /** Connects and checks that the schema is exactly the version this code expects. */
  static async open(o: PostgresOptions): Promise<PostgresRecordStore> {
    const p = pool(o);
    const description = `PostgreSQL ${redactDatabaseUrl(o.url)}`;
    try {
      const exists = await p.query<{ t: string | null }>("SELECT to_regclass('vault_schema_migrations')::text AS t");
      const v = exists.rows[0]?.t ? Number((await p.query<{ v: number | null }>('SELECT max(version) AS v FROM vault_schema_migrations')).rows[0]?.v ?? 0) : 0;
      if (v !== SCHEMA_VERSION) {
        throw new DatabaseSchemaError(
          v < SCHEMA_VERSION ? `the database schema is at version ${v}, this vault needs ${SCHEMA_VERSION}` : `the database schema (version ${v}) is newer than this vault (version ${SCHEMA_VERSION})`,
        );
      }
    } catch (cause) {
      await p.end().catch(() => undefined);
      if (cause instanceof RecordStoreError) throw cause;
      throw postgresError('cannot open the PostgreSQL record store', o.url, cause);
    }
    return new PostgresRecordStore(p, description);
  }

  /**
   * One transaction: claim the request id (if any), apply the change, commit (synchronous_commit
   * on for a change). A claimed id or a changed version rolls everything back.
   */
  async commit(accountId: string, change: RecordChange, o: CommitOptions = {}): Promise<CommitResult> {
    checkChange(change);
    if (change.kind === 'none' && !o.requestId) return 'ok';
    let c: pg.PoolClient;
    try {
      c = await this.#pool.connect();
    } catch (cause) {
      throw new RecordStoreError('the record store is unreachable (nothing was written)', { cause });
    }
    // A checked-out client has no pool error listener: a connection lost mid-transaction (server
    // restart) would otherwise be an unhandled 'error' event and end the process. The failing
    // query rejects as well, which is what we act on.
    let broken = false;
    const onError = () => {
      broken = true;
    };
    c.on('error', onError);
    try {
      await c.query('BEGIN');
      // A record change is flushed to the server's WAL before the vault answers. A request that
      // changes nothing only claims its id: visible to every node at once, but not worth a flush
      // (a database crash in the next moment could forget it; replaying it changes nothing).
      await c.query(change.kind === 'none' ? 'SET LOCAL synchronous_commit = off' : 'SET LOCAL synchronous_commit = on');
      if (o.requestId) {
        // A concurrent claim of the same id waits here for the other transaction, then finds it.
        const claimed = await c.query('INSERT INTO vault_request_ids (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [o.requestId.id, o.requestId.expiresAt]);
        if (claimed.rowCount !== 1) {
          await c.query('ROLLBACK');
          return 'replayed';
        }
      }
      if (change.kind !== 'none') {
        const r = await c.query(...statement(accountId, change));
        if (r.rowCount !== 1) {
          await c.query('ROLLBACK');
          return 'conflict';
        }
      }
      await c.query('COMMIT');
    } catch (cause) {
      broken = true;
      await c.query('ROLLBACK').catch(() => undefined);
      // If COMMIT itself failed on a lost connection the outcome is unknown; the caller answers
      // 503 and the client retries, which re-reads the record (compare-and-set stays correct).
      throw new RecordStoreError('the record store could not commit (the change may or may not be durable; the vault did not answer with it)', { cause });
    } finally {
      c.off('error', onError);
      c.release(broken);
    }
    this.#purgeSometimes();
    return 'ok';
  }

  /** Drops expired request ids, at most once a minute per node, off the request's path. */
  #purgeSometimes(): void {
    const now = Date.now();
    if (now - this.#purgedAt < 60_000) return;
    this.#purgedAt = now;
    this.#pool.query('DELETE FROM vault_request_ids WHERE expires_at < $1', [now]).catch(() => undefined);
  }

  async get(accountId: string): Promise<StoredRecord | null> {
    let r: pg.QueryResult<{ version: string; sealed: Buffer }>;
    try {
      r = await this.#pool.query<{ version: string; sealed: Buffer }>('SELECT version::text AS version, sealed FROM vault_records WHERE account = $1', [accountId]);
    } catch (cause) {
      throw new RecordStoreError('the record store is unreachable', { cause });
    }
    const row = r.rows[0];
    return row ? { version: Number(row.version), sealed: new Uint8Array(row.sealed) } : null;
  }

  async bindRealm(realmIdText: string): Promise<void> {
    let bound: string | undefined;
    try {
      await this.#pool.query('INSERT INTO vault_realm (one, realm) VALUES (true, $1) ON CONFLICT (one) DO NOTHING', [realmIdText]);
      bound = (await this.#pool.query<{ realm: string }>('SELECT realm FROM vault_realm')).rows[0]?.realm;
    } catch (cause) {
      throw new RecordStoreError('the record store is unreachable', { cause });
    }
    if (bound !== realmIdText) throw new DatabaseRealmMismatchError(String(bound), realmIdText);
  }

  async ping(): Promise<void> {
    try {
      await this.#pool.query('SELECT 1 FROM vault_records LIMIT 0');
    } catch (cause) {
      throw new RecordStoreError('the record store is unreachable', { cause });
    }
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => undefined);
  }
}
