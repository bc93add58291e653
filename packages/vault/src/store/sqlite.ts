// SQLite record store (better-sqlite3 12): WAL, synchronous=FULL, so a committed compare-and-set
// survives a crash or power loss before the vault answers.

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { RecordStoreError } from '../errors.js';
import { checkVersions, type RecordStore, type StoredRecord } from './types.js';

export class SqliteRecordStore implements RecordStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[string], { version: number; sealed: Buffer }>;
  readonly #insert: Database.Statement<[string, number, Buffer]>;
  readonly #update: Database.Statement<[number, Buffer, string, number]>;
  readonly #delete: Database.Statement<[string, number]>;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#get = db.prepare('SELECT version, sealed FROM vault_records WHERE account = ?');
    this.#insert = db.prepare('INSERT INTO vault_records (account, version, sealed) VALUES (?, ?, ?) ON CONFLICT (account) DO NOTHING');
    this.#update = db.prepare('UPDATE vault_records SET version = ?, sealed = ? WHERE account = ? AND version = ?');
    this.#delete = db.prepare('DELETE FROM vault_records WHERE account = ? AND version = ?');
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
    const buf = Buffer.from(sealed);
    const r = expectedVersion === null ? this.#insert.run(accountId, newVersion, buf) : this.#update.run(newVersion, buf, accountId, expectedVersion);
    return r.changes === 1;
  }

  async delete(accountId: string, expectedVersion: number): Promise<boolean> {
    return this.#delete.run(accountId, expectedVersion).changes === 1;
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
