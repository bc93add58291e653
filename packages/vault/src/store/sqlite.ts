// SQLite record store (better-sqlite3 12): WAL, synchronous=FULL, so a committed compare-and-set
// survives a crash or power loss before the vault answers. secure_delete=ON zeroes the space of
// every replaced or deleted record version, and a change marked `erase` is followed by a
// TRUNCATE checkpoint, so no earlier version of a destroyed record stays in records.sqlite or
// its -wal file (spec/vault-protocol.md §8).
//
// Group commit: writes issued in the same event-loop turn run as one transaction (each still a
// separate conditional statement with its own result), so one fsync covers them all. No promise
// resolves before that transaction has committed.

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseRealmMismatchError, RecordStoreError } from '../errors.js';
import { checkChange, type CommitOptions, type CommitResult, type RecordChange, type RecordStore, type StoredRecord } from './types.js';

type PendingWrite = { account: string; change: RecordChange; o: CommitOptions; resolve: (r: CommitResult) => void; reject: (e: unknown) => void };

// Expired request ids are dropped once a minute by a scan (a few minutes of ids): no index on
// expires_at, so a claim writes one b-tree, not two.
const PURGE_EVERY_MS = 60_000;

/** The embedded record store: one SQLite file (one node). */
export class SqliteRecordStore implements RecordStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[string], { version: number; sealed: Buffer }>;
  readonly #insert: Database.Statement<[string, number, Buffer]>;
  readonly #update: Database.Statement<[number, Buffer, string, number]>;
  readonly #delete: Database.Statement<[string, number]>;
  readonly #idSeen: Database.Statement<[string], { one: number }>;
  readonly #idClaim: Database.Statement<[string, number]>;
  readonly #idPurge: Database.Statement<[number]>;
  readonly #batch: Database.Transaction<(ops: PendingWrite[]) => CommitResult[]>;
  #pending: PendingWrite[] = [];
  #scheduled = false;
  #purgedAt = 0;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#get = db.prepare('SELECT version, sealed FROM vault_records WHERE account = ?');
    this.#insert = db.prepare('INSERT INTO vault_records (account, version, sealed) VALUES (?, ?, ?) ON CONFLICT (account) DO NOTHING');
    this.#update = db.prepare('UPDATE vault_records SET version = ?, sealed = ? WHERE account = ? AND version = ?');
    this.#delete = db.prepare('DELETE FROM vault_records WHERE account = ? AND version = ?');
    this.#idSeen = db.prepare('SELECT 1 AS one FROM vault_request_ids WHERE id = ?');
    this.#idClaim = db.prepare('INSERT INTO vault_request_ids (id, expires_at) VALUES (?, ?)');
    this.#idPurge = db.prepare('DELETE FROM vault_request_ids WHERE expires_at < ?');
    this.#batch = db.transaction((ops: PendingWrite[]) => {
      const now = Date.now();
      if (now - this.#purgedAt > PURGE_EVERY_MS) {
        this.#idPurge.run(now);
        this.#purgedAt = now;
      }
      return ops.map((op) => this.#apply(op));
    });
  }

  /** One write inside the batch transaction: the id check, the conditional change, the id claim. */
  #apply({ account, change, o }: PendingWrite): CommitResult {
    if (o.requestId && this.#idSeen.get(o.requestId.id)) return 'replayed';
    let applied: boolean;
    switch (change.kind) {
      case 'none':
        applied = true;
        break;
      case 'delete':
        applied = this.#delete.run(account, change.expectedVersion).changes === 1;
        break;
      case 'put':
        applied =
          (change.expectedVersion === null
            ? this.#insert.run(account, change.newVersion, Buffer.from(change.sealed))
            : this.#update.run(change.newVersion, Buffer.from(change.sealed), account, change.expectedVersion)
          ).changes === 1;
        break;
    }
    if (!applied) return 'conflict';
    if (o.requestId) this.#idClaim.run(o.requestId.id, o.requestId.expiresAt);
    return 'ok';
  }

  #enqueue(account: string, change: RecordChange, o: CommitOptions): Promise<CommitResult> {
    return new Promise<CommitResult>((resolve, reject) => {
      this.#pending.push({ account, change, o, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const ops = this.#pending;
    this.#pending = [];
    this.#scheduled = false;
    let results: CommitResult[];
    // A batch that only claims request ids (requests that change nothing) is written without an
    // fsync: it survives a crash of the process, and is lost only with the machine, when
    // replaying such a request changes nothing anyway. Any record change is fsynced.
    const claimsOnly = ops.every((op) => op.change.kind === 'none');
    try {
      if (claimsOnly) this.#db.pragma('synchronous = NORMAL');
      results = this.#batch.immediate(ops);
    } catch (cause) {
      const err = new RecordStoreError('the record store could not commit (nothing in this batch was written)', { cause });
      for (const op of ops) op.reject(err);
      return;
    } finally {
      if (claimsOnly) this.#db.pragma('synchronous = FULL');
    }
    if (ops.some((op, i) => op.o.erase && results[i] === 'ok')) {
      try {
        this.#eraseOldVersions();
      } catch (cause) {
        // Committed, but earlier versions may still sit in the WAL: say so rather than pretend.
        const err = new RecordStoreError('the change was committed, but the WAL could not be checkpointed to erase earlier record versions', { cause });
        ops.forEach((op, i) => (op.o.erase && results[i] === 'ok' ? op.reject(err) : op.resolve(results[i]!)));
        return;
      }
    }
    ops.forEach((op, i) => op.resolve(results[i]!));
  }

  /**
   * Copies every committed page into the database file and truncates the WAL to zero bytes.
   * With secure_delete the old cells in those pages were zeroed at update time, so the old
   * versions are gone from both files. Waits (busy_timeout) for readers of other processes.
   */
  #eraseOldVersions(): void {
    const r = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number; log: number; checkpointed: number }[];
    if (r[0]?.busy !== 0) throw new Error('another connection kept the WAL busy');
  }

  static open(path: string): SqliteRecordStore {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('secure_delete = ON');
      db.pragma('busy_timeout = 5000');
      db.exec(`CREATE TABLE IF NOT EXISTS vault_records (
        account TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        sealed  BLOB NOT NULL
      ) STRICT;
      CREATE TABLE IF NOT EXISTS vault_request_ids (
        id         TEXT PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS vault_realm (
        one   INTEGER PRIMARY KEY NOT NULL CHECK (one = 1),
        realm TEXT NOT NULL
      ) STRICT`);
      return new SqliteRecordStore(path, db);
    } catch (cause) {
      throw new RecordStoreError(`cannot open the SQLite record store at ${path}`, { cause });
    }
  }

  /** For tests: the effective pragmas. */
  pragmas(): { journalMode: string; synchronous: number; secureDelete: number } {
    return {
      journalMode: String(this.#db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.#db.pragma('synchronous', { simple: true })),
      secureDelete: Number(this.#db.pragma('secure_delete', { simple: true })),
    };
  }

  async get(accountId: string): Promise<StoredRecord | null> {
    const row = this.#get.get(accountId);
    return row ? { version: row.version, sealed: new Uint8Array(row.sealed) } : null;
  }

  async commit(accountId: string, change: RecordChange, o: CommitOptions = {}): Promise<CommitResult> {
    checkChange(change);
    if (change.kind === 'none' && !o.requestId) return 'ok';
    return this.#enqueue(accountId, change, o);
  }

  async bindRealm(realmIdText: string): Promise<void> {
    this.#db.prepare('INSERT INTO vault_realm (one, realm) VALUES (1, ?) ON CONFLICT (one) DO NOTHING').run(realmIdText);
    const bound = (this.#db.prepare('SELECT realm FROM vault_realm WHERE one = 1').get() as { realm: string }).realm;
    if (bound !== realmIdText) throw new DatabaseRealmMismatchError(bound, realmIdText);
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#pending.length > 0) this.#flush();
    if (this.#db.open) this.#db.close();
  }
}
