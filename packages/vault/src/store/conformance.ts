// One conformance suite for every RecordStore (SQLite, PostgreSQL). Uses node:test.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DatabaseRealmMismatchError } from '../errors.js';
import type { RecordStore } from './types.js';

/** What the RecordStore conformance suite runs against: a store and how to dispose of it. */
export interface RecordStoreFixture {
  /** Opens a new connection to the same database (call as often as needed). */
  open(): Promise<RecordStore>;
  cleanup(): Promise<void>;
}

/** Registers the RecordStore conformance suite (node:test) for the implementation `setup` makes. */
export function recordStoreConformance(name: string, setup: () => Promise<RecordStoreFixture>): void {
  describe(`RecordStore conformance: ${name}`, () => {
    let fx: RecordStoreFixture;
    let store: RecordStore;
    const opened: RecordStore[] = [];
    const acct = () => `acct-${randomBytes(6).toString('hex')}`;
    const blob = (n = 64) => new Uint8Array(randomBytes(n));
    const reqId = () => ({ id: randomBytes(16).toString('base64url'), expiresAt: Date.now() + 60_000 });
    // compare-and-set and delete, as the server uses them (through commit)
    const cas = (s: RecordStore, a: string, e: number | null, n: number, sealed: Uint8Array) => s.commit(a, { kind: 'put', expectedVersion: e, newVersion: n, sealed }).then((r) => r === 'ok');
    const del = (s: RecordStore, a: string, e: number) => s.commit(a, { kind: 'delete', expectedVersion: e }).then((r) => r === 'ok');
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
      assert.equal(await cas(store, a, null, 1, s1), true);
      assert.equal(await cas(store, a, null, 1, blob()), false);
      const got = await store.get(a);
      assert.deepEqual(got && { version: got.version, sealed: Buffer.from(got.sealed) }, { version: 1, sealed: Buffer.from(s1) });
    });

    it('updates only from the expected version', async () => {
      const a = acct();
      await cas(store, a, null, 1, blob());
      const s2 = blob(100);
      assert.equal(await cas(store, a, 1, 2, s2), true);
      assert.equal(await cas(store, a, 1, 3, blob()), false, 'stale expected version');
      assert.equal(await cas(store, a, 5, 6, blob()), false, 'future expected version');
      const got = await store.get(a);
      assert.equal(got?.version, 2);
      assert.deepEqual(Buffer.from(got!.sealed), Buffer.from(s2));
      assert.equal(await cas(store, acct(), 1, 2, blob()), false, 'update of a missing record');
    });

    it('rejects versions that do not grow', async () => {
      const a = acct();
      await cas(store, a, null, 1, blob());
      await assert.rejects(cas(store, a, 1, 1, blob()), RangeError);
      await assert.rejects(cas(store, a, null, 0, blob()), RangeError);
      assert.equal((await store.get(a))?.version, 1);
    });

    it('deletes only at the expected version', async () => {
      const a = acct();
      await cas(store, a, null, 1, blob());
      await cas(store, a, 1, 2, blob());
      assert.equal(await del(store, a, 1), false);
      assert.notEqual(await store.get(a), null);
      assert.equal(await del(store, a, 2), true);
      assert.equal(await store.get(a), null);
      assert.equal(await del(store, a, 2), false);
      assert.equal(await cas(store, a, null, 3, blob()), true, 'a deleted account can be created again');
    });

    it('keeps accounts apart', async () => {
      const a = acct();
      const b = acct();
      await cas(store, a, null, 1, blob());
      assert.equal(await store.get(b), null);
      assert.equal(await del(store, b, 1), false);
      assert.equal((await store.get(a))?.version, 1);
    });

    it('stores binary data exactly, up to 64 KiB', async () => {
      const a = acct();
      const s = new Uint8Array(65536);
      for (let i = 0; i < s.length; i++) s[i] = i & 0xff;
      await cas(store, a, null, 1, s);
      assert.deepEqual(Buffer.from((await store.get(a))!.sealed), Buffer.from(s));
    });

    it('serialises concurrent compare-and-set across connections: no lost or doubled update', async () => {
      const a = acct();
      await cas(store, a, null, 1, blob());
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
            if (await cas(s, a, cur!.version, cur!.version + 1, blob())) {
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
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => cas(conns[i % 2]!, a, null, 1, blob())));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('claims a request id once, in the same transaction as the change', async () => {
      const a = acct();
      const id = reqId();
      assert.equal(await store.commit(a, { kind: 'put', expectedVersion: null, newVersion: 1, sealed: blob() }, { requestId: id }), 'ok');
      assert.equal(await store.commit(a, { kind: 'put', expectedVersion: 1, newVersion: 2, sealed: blob() }, { requestId: id }), 'replayed', 'the same id again');
      assert.equal((await store.get(a))?.version, 1, 'a replay changes nothing');
      const other = await fx.open();
      opened.push(other);
      assert.equal(await other.commit(a, { kind: 'none' }, { requestId: id }), 'replayed', 'on another connection too');
      // A conflict claims nothing: the same id may be used by the retry.
      const id2 = reqId();
      assert.equal(await store.commit(a, { kind: 'put', expectedVersion: 7, newVersion: 8, sealed: blob() }, { requestId: id2 }), 'conflict');
      assert.equal(await store.commit(a, { kind: 'put', expectedVersion: 1, newVersion: 2, sealed: blob() }, { requestId: id2 }), 'ok');
      const id3 = reqId();
      assert.equal(await store.commit(a, { kind: 'none' }, { requestId: id3 }), 'ok', 'a request without a change is claimed too');
      assert.equal(await store.commit(acct(), { kind: 'delete', expectedVersion: 1 }, { requestId: id3 }), 'replayed');
    });

    it('lets exactly one of many racing claims of one id win', async () => {
      const id = reqId();
      const conns = [store, await fx.open()];
      opened.push(conns[1]!);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => conns[i % 2]!.commit(acct(), { kind: 'put', expectedVersion: null, newVersion: 1, sealed: blob() }, { requestId: id })));
      assert.deepEqual([results.filter((r) => r === 'ok').length, results.filter((r) => r === 'replayed').length], [1, 19]);
    });

    it('belongs to the first realm bound to it', async () => {
      await store.bindRealm('realm-A');
      await store.bindRealm('realm-A');
      const other = await fx.open();
      opened.push(other);
      await assert.rejects(other.bindRealm('realm-B'), (e: unknown) => e instanceof DatabaseRealmMismatchError && /belongs to realm realm-A/.test(e.message));
    });

    it('answers ping', async () => {
      await store.ping();
    });
  });
}
