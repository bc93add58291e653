// SQLite record store (better-sqlite3 12): WAL, synchronous=FULL, so a committed compare-and-set
// survives a crash or power loss before the vault answers.
//
// Group commit: writes issued in the same event-loop turn run as one transaction (each still a
// separate conditional statement with its own result), so one fsync covers them all. No promise
// resolves before that transaction has committed.

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { RecordStoreError } from '../errors.js';
import { checkVersions, type RecordStore, type StoredRecord } from './types.js';

type WriteOp =
  | { kind: 'put'; account: string; expectedVersion: number | null; newVersion: number; sealed: Buffer }
  | { kind: 'delete'; account: string; expectedVersion: number };
type PendingWrite = WriteOp & { resolve: (ok: boolean) => void; reject: (e: unknown) => void };

export class SqliteRecordStore implements RecordStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[string], { version: number; sealed: Buffer }>;
  readonly #insert: Database.Statement<[string, number, Buffer]>;
  readonly #update: Database.Statement<[number, Buffer, string, number]>;
  readonly #delete: Database.Statement<[string, number]>;
  readonly #batch: Database.Transaction<(ops: PendingWrite[]) => boolean[]>;
  #pending: PendingWrite[] = [];
  #scheduled = false;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#get = db.prepare('SELECT version, sealed FROM vault_records WHERE account = ?');
    this.#insert = db.prepare('INSERT INTO vault_records (account, version, sealed) VALUES (?, ?, ?) ON CONFLICT (account) DO NOTHING');
    this.#update = db.prepare('UPDATE vault_records SET version = ?, sealed = ? WHERE account = ? AND version = ?');
    this.#delete = db.prepare('DELETE FROM vault_records WHERE account = ? AND version = ?');
    this.#batch = db.transaction((ops: PendingWrite[]) =>
      ops.map((op) => {
        if (op.kind === 'delete') return this.#delete.run(op.account, op.expectedVersion).changes === 1;
        const r = op.expectedVersion === null ? this.#insert.run(op.account, op.newVersion, op.sealed) : this.#update.run(op.newVersion, op.sealed, op.account, op.expectedVersion);
        return r.changes === 1;
      }),
    );
  }

  #enqueue(op: WriteOp): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#pending.push({ ...op, resolve, reject });
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
    let results: boolean[];
    try {
      results = this.#batch.immediate(ops);
    } catch (cause) {
      const err = new RecordStoreError('the record store could not commit (nothing in this batch was written)', { cause });
      for (const op of ops) op.reject(err);
      return;
    }
    ops.forEach((op, i) => op.resolve(results[i] === true));
  }

  static open(path: string): SqliteRecordStore {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.exec(`CREATE TABLE IF NOT EXISTS vault_records (
        account TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        sealed  BLOB NOT NULL
      ) STRICT`);
      return new SqliteRecordStore(path, db);
    } catch (cause) {
      throw new RecordStoreError(`cannot open the SQLite record store at ${path}`, { cause });
    }
  }

  /** For tests: the effective pragmas. */
  pragmas(): { journalMode: string; synchronous: number } {
    return {
      journalMode: String(this.#db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.#db.pragma('synchronous', { simple: true })),
    };
  }

  async get(accountId: string): Promise<StoredRecord | null> {
    const row = this.#get.get(accountId);
    return row ? { version: row.version, sealed: new Uint8Array(row.sealed) } : null;
  }

  async compareAndSet(accountId: string, expectedVersion: number | null, newVersion: number, sealed: Uint8Array): Promise<boolean> {
    checkVersions(expectedVersion, newVersion);
    return this.#enqueue({ kind: 'put', account: accountId, expectedVersion, newVersion, sealed: Buffer.from(sealed) });
  }

  async delete(accountId: string, expectedVersion: number): Promise<boolean> {
    return this.#enqueue({ kind: 'delete', account: accountId, expectedVersion });
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#pending.length > 0) this.#flush();
    if (this.#db.open) this.#db.close();
  }
}
