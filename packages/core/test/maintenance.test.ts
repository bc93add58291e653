/**
 * Retention and prune (spec/format.md §9) with real components: the engine, the in-memory store and
 * Node's crypto. Kills are a Storage wrapper that fails every operation after the N-th (the process
 * state is lost: the next command opens the store afresh, and the dead command's lock stays behind);
 * interleavings with a backup of another device are forced at every storage operation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  backup, ConflictError, DamagedBackupError, forget, MemoryStorage, prune, Repository, restore, SecretKey, verify, type ByteRange,
  type LockInfo, type ObjectWriter, type RetentionPolicy, type Storage,
} from '@coffer/core';
import { listLocks } from '#src/journal.js';
import { applyRetention, isoWeek } from '#src/maintenance.js';
import { packLength } from '#src/pack.js';
import { readJournal } from '@coffer/core/testing';
import { MemorySource, MemoryTarget, providers, sameTree, type MemFile } from './helpers.js';

const crypto = providers[0]!;
const CHUNK = 4096;
const PACK = 64 * 1024; // the smallest pack size: many packs from small trees
const KEY = new SecretKey(new Uint8Array(32).fill(7));
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/* ------------------------------------------------------------------------------------------------
 * Stores that die, and stores that pause
 * --------------------------------------------------------------------------------------------- */

class Killed extends Error {
  override name = 'Killed';
}

/** Runs `before(n)` ahead of the n-th storage operation (from 0): where another device acts, or the process dies. */
class HookedStorage implements Storage {
  readonly label = 'hooked:';
  ops = 0;
  /** Objects written in pieces: each piece, the commit and an abort count as operations. */
  readonly writer?: (name: string) => Promise<ObjectWriter>;
  constructor(private readonly inner: Storage, private readonly before: (n: number) => Promise<void>) {
    const pieces = inner.writer?.bind(inner);
    if (pieces) {
      this.writer = (name) =>
        this.op(async () => {
          const w = await pieces(name);
          return { write: (d) => this.op(() => w.write(d)), commit: () => this.op(() => w.commit()), abort: () => this.op(() => w.abort()) };
        });
    }
  }
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    await this.before(this.ops++);
    return fn();
  }
  put(name: string, data: Uint8Array) {
    return this.op(() => this.inner.put(name, data));
  }
  get(name: string, range?: ByteRange) {
    return this.op(() => this.inner.get(name, range));
  }
  stat(name: string) {
    return this.op(() => this.inner.stat(name));
  }
  list(prefix: string) {
    return this.op(() => this.inner.list(prefix));
  }
  delete(name: string) {
    return this.op(() => this.inner.delete(name));
  }
  flush() {
    return this.op(() => this.inner.flush());
  }
}

/** Fails every operation from the `killAt`-th on, as a process killed there would stop. */
class KillableStorage extends HookedStorage {
  dead = false;
  constructor(inner: Storage, killAt: number | null) {
    super(inner, async (n) => {
      if (killAt !== null && n >= killAt) this.dead = true;
      if (this.dead) throw new Killed('killed');
    });
  }
}

/* ------------------------------------------------------------------------------------------------
 * Checks
 * --------------------------------------------------------------------------------------------- */

const file = (data: Uint8Array, mtimeNs = '1'): MemFile => ({ kind: 'file', data, mode: 0o644, mtimeNs });
const clone = (t: Map<string, MemFile>) => new Map([...t].map(([p, f]) => [p, { ...f }]));

/** Every manifest in the store restores to the tree `model` holds for it, and verify finds nothing. */
async function checkAll(storage: Storage, model: Map<string, Map<string, MemFile>>, what: string): Promise<void> {
  const repo = await Repository.open(storage, crypto, KEY);
  for (const ref of await repo.manifests()) {
    const tree = model.get(ref.name);
    assert.ok(tree, `${what}: ${ref.name} is a backup this test made`);
    const out = new MemoryTarget();
    await restore(repo, out, { seq: ref });
    assert.ok(sameTree(tree, out.committed!), `${what}: ${ref.name} restores byte for byte`);
  }
  assert.deepEqual((await verify(repo)).damaged, [], `${what}: verify finds nothing damaged`);
}

/** Every pack is indexed and every indexed pack exists; returns the store's blobs that kept backups reference. */
async function indexedPacks(storage: Storage, what: string) {
  const repo = await Repository.open(storage, crypto, KEY);
  const refs = new Set<string>();
  for (const ref of await repo.manifests()) for (const e of (await repo.readManifest(ref)).entries) for (const c of e.chunks ?? []) refs.add(c);
  const index = await repo.loadIndex();
  const packs = (await storage.list('packs/')).map((n) => n.slice(6)).sort();
  assert.deepEqual(packs, [...index.packs.keys()].sort(), `${what}: every pack is indexed, and every indexed pack exists`);
  return { repo, refs, index };
}

/** After a clean prune with maxUnused 0: every pack is indexed, and holds only referenced blobs, each once. */
async function checkClean(storage: Storage, what: string): Promise<void> {
  const { repo, refs, index } = await indexedPacks(storage, what);
  const seen = new Set<string>();
  for (const p of index.packs.values()) {
    for (const b of p.blobs) {
      assert.ok(refs.has(b.id), `${what}: packs/${p.id} holds an unreferenced blob`);
      assert.ok(!seen.has(b.id), `${what}: a blob is stored twice`);
      seen.add(b.id);
    }
  }
  assert.equal(seen.size, refs.size, `${what}: every referenced blob is stored`);
  assert.equal((await readJournal(repo)).records.filter((r) => r.record.kind === 'prune').length, 0, `${what}: no prune record is left`);
  assert.equal((await storage.list('index/')).length <= 1, true, `${what}: one index object`);
}

/* ------------------------------------------------------------------------------------------------
 * Forget's policy
 * --------------------------------------------------------------------------------------------- */

test('ISO weeks: the Thursday names the year', () => {
  assert.equal(isoWeek(new Date('2021-01-03T12:00:00Z')), '2020-W53');
  assert.equal(isoWeek(new Date('2021-01-04T00:00:00Z')), '2021-W01');
  assert.equal(isoWeek(new Date('2024-12-30T23:59:59Z')), '2025-W01');
  assert.equal(isoWeek(new Date('2026-11-29T00:00:00Z')), '2026-W48');
});

test('retention keeps the union of the newest N and the newest of each recent day, week and month (§9.1)', () => {
  // Two backups a day from 2026-01-01 to 2026-03-31, seq in time order.
  const backups: { name: string; seq: number; createdAt: string }[] = [];
  for (let t = Date.parse('2026-01-01T06:00:00Z'), seq = 1; t < Date.parse('2026-04-01T00:00:00Z'); t += 12 * HOUR, seq++) {
    backups.push({ name: `manifests/${String(seq).padStart(20, '0')}-00000000000000aa`, seq, createdAt: new Date(t).toISOString() });
  }
  const kept = (p: RetentionPolicy) => [...applyRetention(backups, p).keys()].map((n) => backups.find((b) => b.name === n)!.createdAt).sort();
  assert.deepEqual(kept({ keepLast: 3 }), ['2026-03-30T18:00:00.000Z', '2026-03-31T06:00:00.000Z', '2026-03-31T18:00:00.000Z']);
  assert.deepEqual(kept({ keepDaily: 2 }), ['2026-03-30T18:00:00.000Z', '2026-03-31T18:00:00.000Z']);
  // 2026-03-29 is a Sunday: the newest of its ISO week is that evening's backup.
  assert.deepEqual(kept({ keepWeekly: 2 }), ['2026-03-29T18:00:00.000Z', '2026-03-31T18:00:00.000Z']);
  assert.deepEqual(kept({ keepMonthly: 3 }), ['2026-01-31T18:00:00.000Z', '2026-02-28T18:00:00.000Z', '2026-03-31T18:00:00.000Z']);
  assert.deepEqual(kept({ keepLast: 1, keepMonthly: 2 }), ['2026-02-28T18:00:00.000Z', '2026-03-31T18:00:00.000Z']);
  // The newest is always kept, whatever the policy.
  assert.deepEqual(kept({ keepLast: 0 }), ['2026-03-31T18:00:00.000Z']);
  assert.deepEqual(applyRetention(backups, { keepLast: 1, keepDaily: 1 }).get(backups.at(-1)!.name), ['newest', 'last', 'daily']);
  assert.throws(() => applyRetention(backups, {}), /say which backups to keep/);
  assert.throws(() => applyRetention(backups, { keepLast: -1 }), /whole number/);
});

/* ------------------------------------------------------------------------------------------------
 * One history, step by step
 * --------------------------------------------------------------------------------------------- */

test('forget, then prune: unreferenced packs go, mostly unused ones are repacked, every kept backup restores; dry runs change nothing', async () => {
  const storage = new MemoryStorage();
  const repo = await Repository.init(storage, crypto, KEY, { chunkSize: CHUNK, packSize: PACK });
  const model = new Map<string, Map<string, MemFile>>();
  let clock = Date.parse('2026-11-01T10:00:00Z');
  const now = () => new Date(clock);
  const tree = new Map<string, MemFile>([
    ['keep.bin', file(crypto.randomBytes(12 * CHUNK))],
    ['gone.bin', file(crypto.randomBytes(40 * CHUNK))],
  ]);
  for (let i = 0; i < 3; i++) {
    const r = await backup(repo, new MemorySource(tree), { now });
    model.set(r.name, clone(tree));
    clock += DAY;
    tree.delete('gone.bin');
    tree.set(`new${i}.bin`, file(crypto.randomBytes(20 * CHUNK), String(i)));
  }
  await checkAll(storage, model, 'before');
  const snapshot = () => [...storage.objects.keys()].sort().join('\n');
  const before = snapshot();

  const dryForget = await forget(repo, { keepLast: 1 }, { dryRun: true, now });
  assert.equal(dryForget.forgotten.length, 2);
  assert.equal(snapshot(), before, 'forget --dry-run changes nothing');
  const f = await forget(repo, { keepLast: 1 }, { now });
  assert.deepEqual(f.forgotten.map((b) => b.seq), [2, 1]);
  assert.deepEqual(f.kept.map((b) => [b.seq, b.reasons]), [[3, ['newest', 'last']]]);
  assert.ok(f.journal);
  const journal = await readJournal(repo);
  assert.deepEqual(journal.records.map((r) => r.record), [{ kind: 'forget', time: now().toISOString(), manifests: f.forgotten.map((b) => b.name) }]);
  for (const b of f.forgotten) model.delete(b.name);
  await checkAll(storage, model, 'after forget');

  const afterForget = snapshot();
  const plan = await prune(repo, { dryRun: true, now, maxUnused: 0 });
  assert.equal(snapshot(), afterForget, 'prune --dry-run changes nothing');
  assert.ok(plan.packsDeleted > 0 && plan.bytesDeleted > 0);
  const bytesOf = () => [...storage.objects].filter(([n]) => n.startsWith('packs/')).reduce((n, [, o]) => n + o.length, 0);
  const packBytes = bytesOf();
  const r = await prune(repo, { now, maxUnused: 0, host: 'here', pid: 1 });
  assert.equal(r.waitingFor.length, 0);
  assert.equal(r.packsDeleted, plan.packsDeleted, 'the dry run said how many packs would go');
  assert.equal(r.bytesDeleted, plan.bytesDeleted, 'and how many bytes');
  assert.equal(r.bytesWritten, plan.bytesWritten, 'and what the repack would write');
  assert.equal(packBytes - bytesOf(), r.bytesFreed, 'bytes freed are the bytes of packs gone, less the new ones');
  assert.ok(r.bytesFreed >= 40 * CHUNK, `gone.bin's ${40 * CHUNK} bytes and more are freed (${r.bytesFreed})`);
  await checkAll(storage, model, 'after prune');
  await checkClean(storage, 'after prune');
  assert.deepEqual((await listLocks(repo)).length, 0, 'the prune lock is gone');
  // Pack lengths computed from the index are the stored lengths.
  for (const p of (await repo.loadIndex()).packs.values()) assert.equal(packLength(p.blobs, repo.config.segmentSize), storage.objects.get(`packs/${p.id}`)!.length);

  const again = await prune(repo, { now, maxUnused: 0 });
  assert.deepEqual([again.packsDeleted, again.packsWritten, again.indexesReplaced], [0, 0, 0], 'a second prune finds nothing to do');
});

test('a manifest that does not open stops a prune before it deletes anything', async () => {
  const storage = new MemoryStorage();
  const repo = await Repository.init(storage, crypto, KEY, { chunkSize: CHUNK, packSize: PACK });
  await backup(repo, new MemorySource(new Map([['a', file(crypto.randomBytes(30 * CHUNK))]])));
  await backup(repo, new MemorySource(new Map([['b', file(crypto.randomBytes(30 * CHUNK))]])));
  await forget(repo, { keepLast: 1 });
  // Junk under a manifest name (damage, or planted by whoever controls the store).
  await storage.put('manifests/00000000000000000009-0123456789abcdef', crypto.randomBytes(500));
  const before = [...storage.objects.keys()].sort();
  await assert.rejects(prune(repo), (e) => e instanceof DamagedBackupError && /prune stops/.test(e.message));
  assert.deepEqual([...storage.objects.keys()].sort(), before, 'nothing deleted (and the lock is gone)');
});

test('a second prune refuses to run beside a live one; a dead one does not hold it up', async () => {
  const storage = new MemoryStorage();
  const repo = await Repository.init(storage, crypto, KEY, { chunkSize: CHUNK, packSize: PACK });
  await backup(repo, new MemorySource(new Map([['a', file(crypto.randomBytes(30 * CHUNK))]])));
  // A prune killed after taking its lock.
  await assert.rejects(prune(await Repository.open(new KillableStorage(storage, 3), crypto, KEY), { host: 'h', pid: 41 }));
  assert.equal((await listLocks(repo)).filter((l) => l.kind === 'prune').length, 1);
  await assert.rejects(prune(repo, { host: 'h', pid: 42 }), /another prune of this store is running \(on h, process 41/);
  const gone = (l: LockInfo) => l.host === 'h' && l.pid === 41;
  const r = await prune(repo, { host: 'h', pid: 42, holderGone: gone });
  assert.equal(r.staleLocksRemoved, 1);
  assert.equal((await listLocks(repo)).length, 0);
  // A lock not refreshed for 30 minutes is stale, whoever holds it.
  await assert.rejects(prune(await Repository.open(new KillableStorage(storage, 3), crypto, KEY), { host: 'elsewhere', pid: 7 }));
  await assert.rejects(prune(repo), /another prune/);
  const r2 = await prune(repo, { now: () => new Date(Date.now() + 31 * 60_000) });
  assert.equal(r2.staleLocksRemoved, 1);
});

/* ------------------------------------------------------------------------------------------------
 * Random histories of backups, forgets, prunes and kills
 * --------------------------------------------------------------------------------------------- */

/** Deterministic bytes from a seed (xorshift32): content that repeats only when the test means it to. */
function bytesFrom(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

type Change = { op: 'add' | 'edit' | 'remove' | 'copy'; name: number; size: number; seed: number; from: number };
type Step =
  | { kind: 'backup'; device: number; changes: Change[]; kill: number | null; advance: number }
  | { kind: 'forget'; policy: RetentionPolicy; kill: number | null; advance: number }
  | { kind: 'prune'; maxUnused: number; kill: number | null; advance: number };

const DEVICES = 3;
const killArb = fc.option(fc.nat({ max: 60 }), { freq: 2 });
const advanceArb = fc.integer({ min: 0, max: 3 * DAY });
const changeArb: fc.Arbitrary<Change> = fc.record({
  op: fc.constantFrom('add', 'add', 'edit', 'remove', 'copy'),
  name: fc.nat({ max: 5 }),
  size: fc.oneof(fc.nat({ max: 3 * CHUNK }), fc.integer({ min: 8 * CHUNK, max: 24 * CHUNK })),
  seed: fc.integer(),
  from: fc.nat({ max: DEVICES - 1 }),
});
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('backup' as const), device: fc.nat({ max: DEVICES - 1 }), changes: fc.array(changeArb, { minLength: 1, maxLength: 3 }), kill: killArb, advance: advanceArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('forget' as const),
      policy: fc.record({ keepLast: fc.nat({ max: 2 }), keepDaily: fc.option(fc.nat({ max: 1 }), { nil: undefined, freq: 3 }), keepWeekly: fc.option(fc.nat({ max: 2 }), { nil: undefined, freq: 4 }) }),
      kill: killArb,
      advance: advanceArb,
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('prune' as const), maxUnused: fc.constantFrom(0, 0, 0.1, 0.1, 0.5, 1), kill: killArb, advance: advanceArb }) },
);

/** Histories start with a few backups that nobody kills, so that forgets and prunes find work. */
const firstBackupArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant('backup' as const), device: fc.nat({ max: DEVICES - 1 }), changes: fc.array(changeArb, { minLength: 2, maxLength: 4 }), kill: fc.constant(null), advance: advanceArb,
});

function applyChange(trees: Map<string, MemFile>[], device: number, c: Change, stamp: number): void {
  const tree = trees[device]!;
  const name = `f${c.name}.bin`;
  const existing = tree.get(name);
  if (c.op === 'add' || (c.op === 'edit' && !existing)) tree.set(name, file(bytesFrom(c.seed, c.size), String(stamp)));
  else if (c.op === 'edit') {
    const data = existing!.data!.slice();
    if (data.length) data[Math.abs(c.seed) % data.length]! ^= 0xff;
    tree.set(name, file(data, String(stamp)));
  } else if (c.op === 'remove') tree.delete(name);
  else {
    const other = [...trees[c.from]!.values()][c.name % Math.max(1, trees[c.from]!.size)];
    if (other) tree.set(name, file(other.data!.slice(), String(stamp)));
  }
}

/** The store's newest backup (§6 order), by name. */
async function newestName(storage: Storage): Promise<string | undefined> {
  const repo = await Repository.open(storage, crypto, KEY);
  return (await repo.newestReadable())?.ref.name;
}

/** What the histories exercised (so the property cannot pass by testing nothing). */
const seen = { steps: 0, kills: 0, prunesDeleting: 0, prunesRepacking: 0, killedWithRecord: 0, earlierFinished: 0, forgets: 0 };

test('property: after any history of backups from several devices, forgets, prunes and kills, every kept backup restores byte for byte and verify finds nothing; a clean prune then leaves no unreferenced pack', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(firstBackupArb, { minLength: 2, maxLength: 4 }), fc.array(stepArb, { minLength: 6, maxLength: 12 }), async (first, rest) => {
      const steps = [...first, ...rest];
      const storage = new MemoryStorage();
      await Repository.init(storage, crypto, KEY, { chunkSize: CHUNK, packSize: PACK });
      const trees = Array.from({ length: DEVICES }, () => new Map<string, MemFile>());
      const model = new Map<string, Map<string, MemFile>>();
      let clock = Date.parse('2026-01-01T00:00:00Z');
      const now = () => new Date(clock);
      let pid = 100;
      for (const [i, step] of steps.entries()) {
        clock += step.advance;
        const me = ++pid;
        // Every earlier command is a process that is gone: its lock no longer counts (§9.3).
        const holderGone = (l: LockInfo) => l.pid !== me;
        const killable = new KillableStorage(storage, step.kill);
        const what = `step ${i} (${step.kind}${step.kill === null ? '' : `, killed at operation ${step.kill}`})`;
        const newestBefore = await newestName(storage);
        let snapshot: Map<string, MemFile> | null = null;
        try {
          const repo = await Repository.open(killable, crypto, KEY);
          if (step.kind === 'backup') {
            for (const c of step.changes) applyChange(trees, step.device, c, clock);
            snapshot = clone(trees[step.device]!);
            const r = await backup(repo, new MemorySource(snapshot), { now, host: `device${step.device}`, pid: me });
            model.set(r.name, snapshot);
          } else if (step.kind === 'forget') {
            if ((await forget(repo, step.policy, { now })).forgotten.length) seen.forgets++;
          } else {
            const r = await prune(repo, { maxUnused: step.maxUnused, now, host: 'pruner', pid: me, holderGone });
            assert.deepEqual(r.waitingFor, [], `${what}: no backup runs, so the sweep does not wait`);
            if (r.packsDeleted) seen.prunesDeleting++;
            if (r.packsWritten) seen.prunesRepacking++;
            if (r.earlierFinished) seen.earlierFinished++;
            await checkNoGarbage(storage, step.maxUnused, what);
          }
        } catch (e) {
          if (!killable.dead) throw e;
          seen.kills++;
          if (step.kind === 'prune' && [...storage.objects.keys()].some((n) => n.startsWith('journal/'))) {
            if ((await readJournal(await Repository.open(storage, crypto, KEY))).records.some((r) => r.record.kind === 'prune')) seen.killedWithRecord++;
          }
        }
        seen.steps++;
        // A killed backup may have written its manifest before it died.
        for (const ref of await (await Repository.open(storage, crypto, KEY)).manifests()) {
          if (!model.has(ref.name)) {
            assert.ok(step.kind === 'backup' && killable.dead && snapshot, `${what}: ${ref.name} appeared`);
            model.set(ref.name, snapshot);
          }
        }
        if (newestBefore) assert.ok(storage.objects.has(newestBefore) || (await newestName(storage)) !== newestBefore, `${what}: the newest backup is never forgotten`);
        const present = new Set(storage.objects.keys());
        for (const name of [...model.keys()]) if (!present.has(name)) model.delete(name);
        await checkAll(storage, model, what);
      }
      // A clean prune finishes whatever a killed one left.
      const repo = await Repository.open(storage, crypto, KEY);
      const r = await prune(repo, { maxUnused: 0, now, host: 'pruner', pid: ++pid, holderGone: () => true });
      assert.deepEqual(r.waitingFor, []);
      if (r.packsDeleted) seen.prunesDeleting++;
      if (r.packsWritten) seen.prunesRepacking++;
      if (r.earlierFinished) seen.earlierFinished++;
      await checkAll(storage, model, 'final prune');
      await checkClean(storage, 'final prune');
    }),
    { numRuns: 35 },
  );
  // (Killed prunes that left their record, and re-runs that finished one, are counted too, but they
  // vary too much to assert on: the test below kills a prune at every operation.)
  const enough = seen.steps >= 300 && seen.kills >= 40 && seen.prunesDeleting >= 10 && seen.prunesRepacking >= 2 && seen.forgets >= 10;
  assert.ok(enough, JSON.stringify(seen));
  console.log(JSON.stringify(seen));
});

/** After a prune that finished: no pack without a referenced blob, none unindexed, no prune record left. */
async function checkNoGarbage(storage: Storage, maxUnused: number, what: string): Promise<void> {
  if (maxUnused === 0) return checkClean(storage, what);
  const { repo, refs, index } = await indexedPacks(storage, what);
  for (const p of index.packs.values()) assert.ok(p.blobs.some((b) => refs.has(b.id)), `${what}: packs/${p.id} holds no referenced blob`);
  assert.equal((await readJournal(repo)).records.filter((r) => r.record.kind === 'prune').length, 0, `${what}: no prune record is left`);
}

/* ------------------------------------------------------------------------------------------------
 * A prune racing a backup of another device
 * --------------------------------------------------------------------------------------------- */

/**
 * A store where backup #1 (a.bin, b.bin) was forgotten and #2 (b.bin, c.bin) kept: a.bin's packs
 * are garbage to a prune. The other device's tree holds a.bin again (a backup reuses its blobs from
 * packs a prune wants gone) and d.bin, new and larger than a pack.
 */
async function raceSetup(start: number) {
  const storage = new MemoryStorage();
  const repo = await Repository.init(storage, crypto, KEY, { chunkSize: CHUNK, packSize: PACK });
  const now = () => new Date(start);
  const a = file(bytesFrom(1, 30 * CHUNK + 5));
  const b = file(bytesFrom(2, 6 * CHUNK));
  await backup(repo, new MemorySource(new Map([['a.bin', a], ['b.bin', b]])), { now, host: 'phone', pid: 1 });
  const kept = new Map([['b.bin', b], ['c.bin', file(bytesFrom(3, 20 * CHUNK))]]);
  const r2 = await backup(repo, new MemorySource(clone(kept)), { now, host: 'phone', pid: 1 });
  await forget(repo, { keepLast: 1 }, { now });
  const other = new Map([['a.bin', a], ['b.bin', b], ['d.bin', file(bytesFrom(4, 20 * CHUNK))]]);
  return { storage, model: new Map([[r2.name, kept]]), other };
}

const START = Date.parse('2026-11-30T12:00:00Z');
const MINUTE = 60_000;

/** Counts the storage operations of `run` on a fresh setup. */
async function countOps(run: (storage: Storage, other: Map<string, MemFile>) => Promise<unknown>): Promise<number> {
  const { storage, other } = await raceSetup(START);
  const counting = new HookedStorage(storage, async () => {});
  await run(counting, other);
  return counting.ops;
}

/** The end of every race: all backups restore, verify is clean, and a final prune leaves no garbage. */
async function settle(storage: MemoryStorage, model: Map<string, Map<string, MemFile>>, what: string) {
  await checkAll(storage, model, what);
  const r = await prune(await Repository.open(storage, crypto, KEY), { maxUnused: 0, now: () => new Date(START + 2 * HOUR), holderGone: () => true });
  assert.deepEqual(r.waitingFor, [], what);
  await checkAll(storage, model, `${what}, after a final prune`);
  await checkClean(storage, `${what}, after a final prune`);
}

for (const pause of [1, 31]) {
  test(`a whole prune at every storage operation of another device's backup (the backup's lock ${pause < 30 ? 'live' : 'stale: paused for 31 minutes'}): no blob the backup references is deleted`, async () => {
    // The backup's clock: its process was paused while the prune ran, and reads the later time after.
    let woke = false;
    const backupOf = (storage: Storage, other: Map<string, MemFile>) =>
      Repository.open(storage, crypto, KEY).then((repo) => backup(repo, new MemorySource(clone(other)), { now: () => new Date(woke ? START + pause * MINUTE : START), host: 'laptop', pid: 2 }));
    const total = await countOps(backupOf);
    const outcomes = { ok: 0, conflict: 0, waited: 0 };
    for (let k = 0; k < total; k++) {
      const { storage, model, other } = await raceSetup(START);
      woke = false;
      const pruned: { waitingFor?: unknown[] } = {};
      const paused = new HookedStorage(storage, async (n) => {
        if (n !== k) return;
        const repo = await Repository.open(storage, crypto, KEY);
        pruned.waitingFor = (await prune(repo, { maxUnused: 0, now: () => new Date(START + pause * MINUTE), host: 'phone', pid: 3, holderGone: (l) => l.pid === 1 })).waitingFor;
        woke = true;
      });
      const what = `prune before operation ${k} of ${total}`;
      try {
        const r = await backupOf(paused, other);
        model.set(r.name, other);
        outcomes.ok++;
      } catch (e) {
        assert.ok(e instanceof ConflictError, `${what}: ${(e as Error).stack}`);
        assert.ok(pause > 30, `${what}: a backup with a live lock never fails`);
        outcomes.conflict++;
        woke = false;
        const again = await backupOf(storage, other);
        model.set(again.name, other);
      }
      assert.ok(pruned.waitingFor, `${what}: the prune ran`);
      if (pruned.waitingFor.length) outcomes.waited++;
      await settle(storage, model, what);
    }
    if (pause < 30) assert.ok(outcomes.waited > total / 2 && outcomes.conflict === 0, JSON.stringify(outcomes));
    else assert.ok(outcomes.conflict >= 3 && outcomes.waited === 0, JSON.stringify(outcomes));
  });
}

test("a whole backup of another device at every storage operation of a prune: the backup succeeds, and the sweep keeps what the backup reused", async () => {
  const pruneOf = (storage: Storage) =>
    Repository.open(storage, crypto, KEY).then((repo) => prune(repo, { maxUnused: 0, now: () => new Date(START), host: 'phone', pid: 3 }));
  const total = await countOps(pruneOf);
  const alone = await raceSetup(START);
  const deletedAlone = (await pruneOf(alone.storage)).packsDeleted;
  let kept = 0;
  for (let k = 0; k < total; k++) {
    const { storage, model, other } = await raceSetup(START);
    const paused = new HookedStorage(storage, async (n) => {
      if (n !== k) return;
      const r = await backup(await Repository.open(storage, crypto, KEY), new MemorySource(clone(other)), { now: () => new Date(START), host: 'laptop', pid: 2 });
      model.set(r.name, other);
    });
    const r = await pruneOf(paused);
    assert.deepEqual(r.waitingFor, [], `operation ${k}: the backup was done before the prune went on`);
    // A backup between the mark and the record reused a.bin's blobs from condemned packs: the sweep keeps them.
    if (r.packsDeleted < deletedAlone) kept++;
    await settle(storage, model, `backup before operation ${k} of ${total} of the prune`);
  }
  assert.ok(kept >= 3, `the sweep kept condemned packs that a backup reused (${kept} times)`);
});

test('a prune killed at any storage operation leaves every kept backup restorable, and the next prune finishes the job', async () => {
  const pruneOf = (storage: Storage, pid: number) =>
    Repository.open(storage, crypto, KEY).then((repo) => prune(repo, { maxUnused: 0, now: () => new Date(START), host: 'phone', pid, holderGone: (l) => l.pid !== pid }));
  const total = await countOps((storage) => pruneOf(storage, 3));
  let finished = 0;
  for (let k = 0; k < total; k++) {
    const { storage, model } = await raceSetup(START);
    const killable = new KillableStorage(storage, k);
    // (Killed at its last operation, the removal of its lock, a prune has done its work and says so.)
    await pruneOf(killable, 3).catch((e) => assert.ok(killable.dead, (e as Error).stack));
    assert.ok(killable.dead);
    await checkAll(storage, model, `prune killed at operation ${k} of ${total}`);
    const r = await pruneOf(storage, 4);
    finished += r.earlierFinished;
    await checkAll(storage, model, `the prune after one killed at operation ${k}`);
    await checkClean(storage, `the prune after one killed at operation ${k}`);
  }
  assert.ok(finished >= 5, `${finished} re-runs finished a record the killed prune left`);
});
