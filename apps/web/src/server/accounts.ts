/**
 * Accounts, passkeys and sessions, kept in SQLite (spec/web-app.md §2-§3). A session token is
 * 32 random bytes; only its SHA-256 is stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';

/** Account names (spec/web-app.md §2): also the account id of the vault and the object store. */
export const ACCOUNT = /^[a-z0-9][a-z0-9._@-]{0,63}$/;
export const ACCOUNT_HINT = '1-64 of a-z, 0-9 and . _ @ -, starting with a letter or digit';
export const SESSION_DAYS = 30;
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,                 -- the account name, lower-case
  user_handle BLOB NOT NULL UNIQUE,    -- WebAuthn user.id: 16 random bytes
  created_at INTEGER NOT NULL,
  key_stretching TEXT                  -- the preset recorded at vault registration (spec/web-app.md §5)
);
CREATE TABLE passkeys (
  id TEXT PRIMARY KEY,                 -- credential id, base64url
  account_id TEXT NOT NULL REFERENCES accounts(id),
  public_key BLOB NOT NULL,            -- COSE
  counter INTEGER NOT NULL,
  transports TEXT NOT NULL,            -- JSON array
  created_at INTEGER NOT NULL,
  last_used_at INTEGER
);
CREATE INDEX passkeys_by_account ON passkeys (account_id);
CREATE TABLE sessions (
  token_hash BLOB PRIMARY KEY,         -- SHA-256 of the cookie value
  account_id TEXT NOT NULL REFERENCES accounts(id),
  how TEXT NOT NULL CHECK (how IN ('passkey', 'code')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
`;

export interface Passkey {
  id: string;
  accountId: string;
  publicKey: Uint8Array;
  counter: number;
  transports: string[];
}

export class AccountTakenError extends Error {
  override name = 'AccountTakenError';
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export class Accounts {
  private readonly db: Database.Database;
  constructor(file: string, private readonly now: () => number = Date.now) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version === 0) {
      this.db.transaction(() => {
        this.db.exec(SCHEMA);
        this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } else if (version !== SCHEMA_VERSION) {
      this.db.close();
      throw new Error(`${file} has accounts schema version ${version}; this server knows ${SCHEMA_VERSION}`);
    }
  }

  exists(account: string): boolean {
    return this.db.prepare('SELECT 1 FROM accounts WHERE id = ?').get(account) !== undefined;
  }

  /** Creates the account with its first passkey; AccountTakenError if the name is in use. */
  create(account: string, userHandle: Uint8Array, passkey: Omit<Passkey, 'accountId'>): void {
    this.db.transaction(() => {
      if (this.exists(account)) throw new AccountTakenError(`${account} is taken`);
      this.db.prepare('INSERT INTO accounts (id, user_handle, created_at) VALUES (?, ?, ?)').run(account, userHandle, this.now());
      this.insertPasskey({ ...passkey, accountId: account });
    })();
  }

  addPasskey(passkey: Passkey): void {
    this.insertPasskey(passkey);
  }

  private insertPasskey(p: Passkey): void {
    this.db
      .prepare('INSERT INTO passkeys (id, account_id, public_key, counter, transports, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(p.id, p.accountId, p.publicKey, p.counter, JSON.stringify(p.transports), this.now());
  }

  passkey(id: string): Passkey | null {
    const r = this.db.prepare('SELECT id, account_id, public_key, counter, transports FROM passkeys WHERE id = ?').get(id) as
      | { id: string; account_id: string; public_key: Buffer; counter: number; transports: string }
      | undefined;
    return r ? { id: r.id, accountId: r.account_id, publicKey: new Uint8Array(r.public_key), counter: r.counter, transports: JSON.parse(r.transports) as string[] } : null;
  }

  userHandle(account: string): Uint8Array | null {
    const h = this.db.prepare('SELECT user_handle FROM accounts WHERE id = ?').pluck().get(account) as Buffer | undefined;
    return h ? new Uint8Array(h) : null;
  }

  passkeyIds(account: string): string[] {
    return this.db.prepare('SELECT id FROM passkeys WHERE account_id = ?').pluck().all(account) as string[];
  }

  usedPasskey(id: string, counter: number): void {
    this.db.prepare('UPDATE passkeys SET counter = ?, last_used_at = ? WHERE id = ?').run(counter, this.now(), id);
  }

  /** A new session for `account`: the cookie value (never stored). */
  newSession(account: string, how: 'passkey' | 'code'): string {
    const token = randomBytes(32).toString('base64url');
    const now = this.now();
    this.db.prepare('DELETE FROM sessions WHERE expires_at < ?').run(now);
    this.db.prepare('INSERT INTO sessions (token_hash, account_id, how, created_at, expires_at) VALUES (?, ?, ?, ?, ?)').run(sha256(token), account, how, now, now + SESSION_DAYS * 86_400_000);
    return token;
  }

  /** The account of a live session, or null. */
  session(token: string): string | null {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const r = this.db.prepare('SELECT account_id FROM sessions WHERE token_hash = ? AND expires_at > ?').get(sha256(token), this.now()) as { account_id: string } | undefined;
    return r?.account_id ?? null;
  }

  endSession(token: string): void {
    this.db.prepare('DELETE FROM sessions WHERE token_hash = ?').run(sha256(token));
  }

  recordKeyStretching(account: string, preset: string): void {
    this.db.prepare('UPDATE accounts SET key_stretching = ? WHERE id = ?').run(preset, account);
  }

  keyStretching(account: string): string | null {
    return (this.db.prepare('SELECT key_stretching FROM accounts WHERE id = ?').pluck().get(account) as string | null | undefined) ?? null;
  }

  close(): void {
    this.db.close();
  }
}
