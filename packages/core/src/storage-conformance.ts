/**
 * The conformance suite every Storage backend runs (spec/format.md §7). Framework-free so it runs
 * under node:test and in browsers: each case throws on failure.
 */
import { ObjectExistsError, ObjectNotFoundError } from './errors.js';
import type { Storage } from './storage.js';

/** One case of the storage conformance suite: run it against a fresh, empty store. */
export interface StorageCase {
  name: string;
  run(storage: Storage): Promise<void>;
}

function ok(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`storage conformance: ${what}`);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

async function rejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, what: string) {
  try {
    await p;
  } catch (e) {
    ok(e instanceof cls, `${what}: expected ${cls.name}, got ${String(e)}`);
    return;
  }
  ok(false, `${what}: expected ${cls.name}, resolved instead`);
}

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

/** The storage conformance suite (spec/format.md §7): every Storage implementation must pass each case. */
export const storageConformance: StorageCase[] = [
  {
    name: 'put then get returns the same bytes, including an empty object and a 3 MiB one',
    async run(s) {
      const cases: [string, Uint8Array][] = [
        ['a/empty', new Uint8Array(0)],
        ['a/small', bytes(100)],
        ['a/big', bytes(3 * 1024 * 1024 + 7)],
      ];
      for (const [n, d] of cases) await s.put(n, d);
      for (const [n, d] of cases) ok(same(await s.get(n), d), `get ${n}`);
    },
  },
  {
    name: 'get with a byte range returns exactly that range, clipped at the end',
    async run(s) {
      const d = bytes(1000);
      await s.put('r/x', d);
      ok(same(await s.get('r/x', { offset: 10, length: 20 }), d.subarray(10, 30)), 'middle range');
      ok(same(await s.get('r/x', { offset: 990, length: 100 }), d.subarray(990)), 'range past the end');
      ok(same(await s.get('r/x', { offset: 0, length: 1000 }), d), 'whole range');
    },
  },
  {
    name: 'objects are write-once: a second put fails and keeps the first content',
    async run(s) {
      await s.put('w/once', bytes(10, 1));
      await rejects(s.put('w/once', bytes(10, 2)), ObjectExistsError, 'second put');
      ok(same(await s.get('w/once'), bytes(10, 1)), 'first content kept');
    },
  },
  {
    name: 'concurrent puts of one name: exactly one wins and the object is whole',
    async run(s) {
      const results = await Promise.allSettled([1, 2, 3, 4].map((i) => s.put('c/race', bytes(200_000, i))));
      ok(results.filter((r) => r.status === 'fulfilled').length === 1, 'exactly one put wins');
      const got = await s.get('c/race');
      ok([1, 2, 3, 4].some((i) => same(got, bytes(200_000, i))), 'object is one whole version');
    },
  },
  {
    name: 'missing objects: get throws ObjectNotFoundError, stat is null, delete is quiet',
    async run(s) {
      await rejects(s.get('m/none'), ObjectNotFoundError, 'get missing');
      ok((await s.stat('m/none')) === null, 'stat missing');
      await s.delete('m/none');
    },
  },
  {
    name: 'stat reports the size; delete removes; list finds by prefix only complete objects',
    async run(s) {
      await s.put('l/one', bytes(5));
      await s.put('l/two', bytes(7));
      await s.put('lx/three', bytes(1));
      ok((await s.stat('l/two'))?.size === 7, 'stat size');
      const listed = (await s.list('l/')).sort();
      ok(JSON.stringify(listed) === JSON.stringify(['l/one', 'l/two']), `list l/ gave ${JSON.stringify(listed)}`);
      await s.delete('l/one');
      ok((await s.stat('l/one')) === null, 'deleted');
      ok(JSON.stringify(await s.list('l/')) === JSON.stringify(['l/two']), 'list after delete');
      await s.flush();
    },
  },
  {
    name: 'names with several levels and many objects list completely',
    async run(s) {
      const names = Array.from({ length: 300 }, (_, i) => `data/${(i % 16).toString(16)}${i.toString(16).padStart(3, '0')}`);
      await Promise.all(names.map((n) => s.put(n, bytes(3, n.length))));
      const listed = new Set(await s.list('data/'));
      ok(listed.size === 300 && names.every((n) => listed.has(n)), `listed ${listed.size} of 300`);
    },
  },
  {
    name: 'invalid names are refused before anything is written',
    async run(s) {
      for (const bad of ['', '/abs', 'a/../b', 'a//b', 'a/./b', 'sp ace', 'x\u0000y']) {
        let threw = false;
        try {
          await s.put(bad, bytes(1));
        } catch {
          threw = true;
        }
        ok(threw, `put ${JSON.stringify(bad)} must be refused`);
      }
    },
  },
];
