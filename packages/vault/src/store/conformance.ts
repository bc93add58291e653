// One conformance suite for every RecordStore (SQLite here, PostgreSQL later). Uses node:test.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { RecordStore } from './types.js';

export interface RecordStoreFixture {
  /** Opens a new connection to the same database (call as often as needed). */
  open(): Promise<RecordStore>;
  cleanup(): Promise<void>;
}

export function recordStoreConformance(name: string, setup: () => Promise<RecordStoreFixture>): void {
  describe(`RecordStore conformance: ${name}`, () => {
    let fx: RecordStoreFixture;
    let store: RecordStore;
    const opened: RecordStore[] = [];
    const acct = () => `acct-${randomBytes(6).toString('hex')}`;
    const blob = (n = 64) => new Uint8Array(randomBytes(n));
    before(async () => {
      fx = await setup();
      store = await fx.open();
      opened.push(store);
    });
    after(async () => {
      for (const s of opened) await s.close();
      await fx.cleanup();
    });

    it('returns null for an unknown account', async () => {
      assert.equal(await store.get(acct()), null);
    });

    it('creates with expectedVersion null, only once', async () => {
      const a = acct();
      const s1 = blob();
      assert.equal(await store.compareAndSet(a, null, 1, s1), true);
      assert.equal(await store.compareAndSet(a, null, 1, blob()), false);
      const got = await store.get(a);
      assert.deepEqual(got && { version: got.version, sealed: Buffer.from(got.sealed) }, { version: 1, sealed: Buffer.from(s1) });
    });

    it('updates only from the expected version', async () => {
      const a = acct();
      await store.compareAndSet(a, null, 1, blob());
      const s2 = blob(100);
      assert.equal(await store.compareAndSet(a, 1, 2, s2), true);
      assert.equal(await store.compareAndSet(a, 1, 3, blob()), false, 'stale expected version');
      assert.equal(await store.compareAndSet(a, 5, 6, blob()), false, 'future expected version');
      const got = await store.get(a);
      assert.equal(got?.version, 2);
      assert.deepEqual(Buffer.from(got!.sealed), Buffer.from(s2));
      assert.equal(await store.compareAndSet(acct(), 1, 2, blob()), false, 'update of a missing record');
    });

    it('rejects versions that do not grow', async () => {
      const a = acct();
      await store.compareAndSet(a, null, 1, blob());
      await assert.rejects(store.compareAndSet(a, 1, 1, blob()), RangeError);
      await assert.rejects(store.compareAndSet(a, null, 0, blob()), RangeError);
      assert.equal((await store.get(a))?.version, 1);
    });

    it('deletes only at the expected version', async () => {
      const a = acct();
      await store.compareAndSet(a, null, 1, blob());
      await store.compareAndSet(a, 1, 2, blob());
      assert.equal(await store.delete(a, 1), false);
      assert.notEqual(await store.get(a), null);
      assert.equal(await store.delete(a, 2), true);
      assert.equal(await store.get(a), null);
      assert.equal(await store.delete(a, 2), false);
      assert.equal(await store.compareAndSet(a, null, 3, blob()), true, 'a deleted account can be created again');
    });

    it('keeps accounts apart', async () => {
      const a = acct();
      const b = acct();
      await store.compareAndSet(a, null, 1, blob());
      assert.equal(await store.get(b), null);
      assert.equal(await store.delete(b, 1), false);
      assert.equal((await store.get(a))?.version, 1);
    });

    it('stores binary data exactly, up to 64 KiB', async () => {
      const a = acct();
      const s = new Uint8Array(65536);
      for (let i = 0; i < s.length; i++) s[i] = i & 0xff;
      await store.compareAndSet(a, null, 1, s);
      assert.deepEqual(Buffer.from((await store.get(a))!.sealed), Buffer.from(s));
    });

    it('serialises concurrent compare-and-set across connections: no lost or doubled update', async () => {
      const a = acct();
      await store.compareAndSet(a, null, 1, blob());
      const conns = [store, await fx.open(), await fx.open()];
      opened.push(conns[1]!, conns[2]!);
      const writers = 30;
      let wins = 0;
      let conflicts = 0;
      await Promise.all(
        Array.from({ length: writers }, async (_, i) => {
          const s = conns[i % conns.length]!;
          for (;;) {
            const cur = await s.get(a);
            await new Promise((r) => setImmediate(r));
            if (await s.compareAndSet(a, cur!.version, cur!.version + 1, blob())) {
              wins++;
              return;
            }
            conflicts++;
          }
        }),
      );
      assert.equal(wins, writers);
      assert.equal((await store.get(a))?.version, 1 + writers, 'every win is exactly one increment');
      assert.ok(conflicts > 0, 'the test did produce conflicts');
    });

    it('lets exactly one of many racing creators win', async () => {
      const a = acct();
      const conns = [store, await fx.open()];
      opened.push(conns[1]!);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => conns[i % 2]!.compareAndSet(a, null, 1, blob())));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('answers ping', async () => {
      await store.ping();
    });
  });
}
