// Record storage (spec/vault-protocol.md §8). Stores only sealed records; compare-and-set by version
// serialises concurrent attempts on one account, across processes and nodes.

/** A sealed record as the store holds it, with its version for compare-and-set. */
export interface StoredRecord {
  /** 1 for a new record, +1 on every change. */
  version: number;
  /** The record sealed by the boundary (opaque to the store). */
  sealed: Uint8Array;
}

/** One change to one account's record, applied only if the record is still at `expectedVersion`. */
export type RecordChange =
  | { kind: 'none' }
  /** Create (expectedVersion null: no record) or replace. newVersion > expectedVersion. */
  | { kind: 'put'; expectedVersion: number | null; newVersion: number; sealed: Uint8Array }
  | { kind: 'delete'; expectedVersion: number };

/** What one compare-and-set commit of a record store carries besides the change: the request id to claim. */
export interface CommitOptions {
  /**
   * A request id to claim in the same transaction as the change: a store (one realm) accepts
   * each id once until `expiresAt` (unix ms), so a replayed request changes nothing on any node,
   * even after a restart. Claimed for a `none` change too.
   */
  requestId?: { id: string; expiresAt: number };
  /**
   * The change destroys secrets (a tombstone, a delete): once commit returns, no earlier version
   * of this record may remain readable in the store's files (SQLite: secure_delete and a WAL
   * checkpoint; PostgreSQL: see docs/operating.md §2).
   */
  erase?: boolean;
}

/** `conflict`: another writer got there first (nothing written). `replayed`: the id was claimed before (nothing written). */
export type CommitResult = 'ok' | 'conflict' | 'replayed';

/** Where sealed vault records live (SQLite embedded, PostgreSQL shared): get, and compare-and-set by version. */
export interface RecordStore {
  /** The current record of an account, or null. */
  get(accountId: string): Promise<StoredRecord | null>;
  /** Applies `change` and claims the request id atomically; durable when it returns `ok`. */
  commit(accountId: string, change: RecordChange, o?: CommitOptions): Promise<CommitResult>;
  /**
   * Ties the store to one realm: the first call records `realmIdText`; a later call with another
   * realm throws DatabaseRealmMismatchError (the records would be unreadable to it, and its own
   * would be to the first realm).
   */
  bindRealm(realmIdText: string): Promise<void>;
  /** Quick health check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function checkChange(c: RecordChange): void {
  if (c.kind === 'none') return;
  const { expectedVersion } = c;
  if (c.kind === 'delete') {
    if (!Number.isSafeInteger(c.expectedVersion) || c.expectedVersion < 1) throw new RangeError('expectedVersion must be a positive integer');
    return;
  }
  if (!Number.isSafeInteger(c.newVersion) || c.newVersion < 1) throw new RangeError('newVersion must be a positive integer');
  if (expectedVersion !== null && (!Number.isSafeInteger(expectedVersion) || expectedVersion < 1 || c.newVersion <= expectedVersion)) {
    throw new RangeError('newVersion must be greater than expectedVersion');
  }
}

/** How long a request id stays claimed: the request timestamp window on both sides (spec §6.2). */
export const REQUEST_ID_TTL_MS = 240_000;
