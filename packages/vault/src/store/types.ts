// Record storage (spec/vault-protocol.md §8). Stores only sealed records; compare-and-set by version
// serialises concurrent attempts on one account.

export interface StoredRecord {
  /** 1 for a new record, +1 on every change. */
  version: number;
  /** The record sealed by the boundary (opaque to the store). */
  sealed: Uint8Array;
}

export interface RecordStore {
  /** The current record of an account, or null. */
  get(accountId: string): Promise<StoredRecord | null>;
  /**
   * Writes `sealed` at `newVersion` if the current version is `expectedVersion` (null: no record).
   * Returns false, changing nothing, if another writer got there first. Durable when it returns true.
   * Requires newVersion > expectedVersion (or >= 1).
   */
  compareAndSet(accountId: string, expectedVersion: number | null, newVersion: number, sealed: Uint8Array): Promise<boolean>;
  /** Deletes the record if its version is `expectedVersion`. Returns false if it changed or is gone. */
  delete(accountId: string, expectedVersion: number): Promise<boolean>;
  /** Quick health check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function checkVersions(expectedVersion: number | null, newVersion: number): void {
  if (!Number.isSafeInteger(newVersion) || newVersion < 1) throw new RangeError('newVersion must be a positive integer');
  if (expectedVersion !== null && (!Number.isSafeInteger(expectedVersion) || expectedVersion < 1 || newVersion <= expectedVersion)) {
    throw new RangeError('newVersion must be greater than expectedVersion');
  }
}
