import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { recordStoreConformance } from '../src/store/conformance.js';
import { SqliteRecordStore } from '../src/store/sqlite.js';

recordStoreConformance('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-store-'));
  const path = join(dir, 'records.sqlite');
  return {
    async open() {
      return SqliteRecordStore.open(path);
    },
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite record store', () => {
  it('uses WAL, synchronous=FULL and secure_delete', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-store-'));
    const s = SqliteRecordStore.open(join(dir, 'r.sqlite'));
    try {
      assert.deepEqual(s.pragmas(), { journalMode: 'wal', synchronous: 2, secureDelete: 1 });
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps committed writes after close and reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-store-'));
    const path = join(dir, 'r.sqlite');
    const s = SqliteRecordStore.open(path);
    await s.commit('a', { kind: 'put', expectedVersion: null, newVersion: 1, sealed: new Uint8Array([1, 2, 3]) });
    await s.close();
    const t = SqliteRecordStore.open(path);
    assert.equal((await t.get('a'))?.version, 1);
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
