/**
 * End-to-end tests of `coffer forget`, `coffer prune` and `coffer backup DIR --keep-*` (spec/format.md
 * §9): the real command in a real shell on a real folder store, and `coffer prune` killed with
 * SIGKILL at several points of its work.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { cp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatRecoveryKey, generateBackupKey, Repository, SecretKey } from '@coffer/core';
import { readJournal } from '@coffer/core/testing';
import { LocalStorage, nodeCryptoProvider } from '@coffer/node';
import { BIN, box, coffer, exits, jsonOut, MiB, progressLines, readProfile, show, tree, type Box, type Entry, writeRandomFile } from './helpers.js';

const sample: typeof import('@coffer/sample') = await import('@coffer/sample');

/** Every file of the store (but tmp/), with its size and mtime: what a --dry-run must leave as it is. */
async function storeState(store: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(store, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    if (p.startsWith(join(store, 'tmp'))) continue;
    const st = await stat(p);
    out.push(`${p.slice(store.length + 1)} ${st.size} ${st.mtimeMs}`);
  }
  return out.sort();
}

async function packBytes(store: string): Promise<number> {
  let n = 0;
  for (const line of await storeState(store)) if (line.startsWith('packs/')) n += Number(line.split(' ')[1]);
  return n;
}

/** Restores backup `seq` with the profile and compares it with `snap`. */
async function restoresAs(b: Box, seq: number, snap: Entry[]): Promise<void> {
  const target = join(b.dir, `restored-${seq}-${Math.random().toString(36).slice(2)}`);
  exits(await coffer(b, ['restore', target, '--backup', String(seq), '--quiet']), 0);
  assert.deepEqual(await tree(target), snap, `backup #${seq} restores byte for byte`);
  await rm(target, { recursive: true, force: true });
}

/** The store after a prune that finished: every pack indexed and needed, no prune record, no lock. */
async function checkClean(b: Box): Promise<void> {
  const profile = await readProfile(b.home);
  const storage = await LocalStorage.open(b.store);
  const repo = await Repository.open(storage, nodeCryptoProvider, new SecretKey(Buffer.from(profile.key, 'hex')));
  const refs = new Set<string>();
  for (const ref of await repo.manifests()) for (const e of (await repo.readManifest(ref)).entries) for (const c of e.chunks ?? []) refs.add(c);
  const index = await repo.loadIndex();
  const packs = (await storage.list('packs/')).map((n) => n.slice(6)).sort();
  assert.deepEqual(packs, [...index.packs.keys()].sort(), 'every pack is indexed, and every indexed pack exists');
  for (const p of index.packs.values()) assert.ok(p.blobs.some((x) => refs.has(x.id)), `packs/${p.id} holds a blob a backup needs`);
  const located = new Set([...index.packs.values()].flatMap((p) => p.blobs.map((x) => x.id)));
  for (const r of refs) assert.ok(located.has(r), 'every referenced blob is in a pack');
  assert.deepEqual((await readJournal(repo)).records.filter((r) => r.record.kind === 'prune'), [], 'no prune record is left');
  assert.deepEqual(await storage.list('locks/'), [], 'no lock is left');
}

/** Deletes every other file under media/ (the sample's photos, voice notes and videos). */
async function dropMedia(src: string, keep: (i: number) => boolean): Promise<void> {
  const files = (await readdir(join(src, 'media'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  files.sort((x, y) => (x.name < y.name ? -1 : 1));
  for (const [i, f] of files.entries()) if (!keep(i)) await unlink(join(f.parentPath ?? (f as unknown as { path: string }).path, f.name));
}

/**
 * Three backups of chat data: #1 with a big file, #2 without it and without half the media, #3
 * with a day of activity more. Returns the trees of #2 and #3.
 */
async function history(b: Box, options: { packSize?: number } = {}): Promise<{ snap2: Entry[]; snap3: Entry[] }> {
  await sample.generateChatData(b.src, { seed: 'coffer prune e2e', targetBytes: 8 * MiB });
  await writeRandomFile(join(b.src, 'big.bin'), 5 * MiB + 123);
  if (options.packSize) {
    // Smaller packs than `coffer init` makes: many packs, several files in each.
    const key = generateBackupKey(nodeCryptoProvider);
    await Repository.init(await LocalStorage.open(b.store, { create: true }), nodeCryptoProvider, key, { packSize: options.packSize });
    exits(await coffer(b, ['init', '--storage', b.store, '--recovery-key-stdin'], { input: `${formatRecoveryKey(key)}\n` }), 0);
  } else exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  await unlink(join(b.src, 'big.bin'));
  await dropMedia(b.src, (i) => i % 2 === 0);
  await sample.addActivity(b.src, { seed: 'day 2', messages: 40, photos: 2 });
  const snap2 = await tree(b.src);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  await sample.addActivity(b.src, { seed: 'day 3', messages: 40, photos: 1 });
  const snap3 = await tree(b.src);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  return { snap2, snap3 };
}

test('forget and prune: --dry-run changes nothing, --json, the bytes freed, and every kept backup restores', async (t) => {
  const b = await box(t);
  const { snap2, snap3 } = await history(b);
  const untouched = await storeState(b.store);

  const df = exits(await coffer(b, ['forget', '--keep-last', '2', '--dry-run']), 0);
  assert.match(df.stdout, /^Would forget 1 backup:\n {2}#1 {2}\S+\nWould keep 2:\n {2}#3 {2}\S+ {2}\(newest, last\)\n {2}#2 {2}\S+ {2}\(last\)\n$/, show(df));
  const dp = jsonOut(exits(await coffer(b, ['prune', '--dry-run', '--json']), 0));
  assert.equal(dp.ok, true);
  assert.equal(dp.dryRun, true);
  assert.equal(dp.packsDeleted, 0, 'nothing is forgotten yet, so nothing is garbage');
  assert.deepEqual(await storeState(b.store), untouched, 'the dry runs changed nothing');

  const f = jsonOut(exits(await coffer(b, ['forget', '--keep-last', '2', '--json']), 0));
  assert.deepEqual(f.forgotten.map((x: { seq: number }) => x.seq), [1]);
  assert.deepEqual(f.kept.map((x: { seq: number }) => x.seq), [3, 2]);
  assert.match(f.journal, /^journal\/\d{16}-[0-9a-f]{16}$/);
  assert.deepEqual((await readdir(join(b.store, 'manifests'))).map((n) => Number(n.split('-')[0])).sort(), [2, 3]);

  const forgotten = await storeState(b.store);
  const plan = jsonOut(exits(await coffer(b, ['prune', '--dry-run', '--json']), 0));
  assert.ok(plan.packsDeleted >= 1, JSON.stringify(plan));
  assert.deepEqual(await storeState(b.store), forgotten, 'prune --dry-run changed nothing');

  const before = await packBytes(b.store);
  const run = exits(await coffer(b, ['prune', '--json']), 0);
  const p = jsonOut(run);
  progressLines(run, 'prune');
  assert.equal(p.ok, true);
  assert.deepEqual([p.packsDeleted, p.bytesDeleted, p.bytesWritten], [plan.packsDeleted, plan.bytesDeleted, plan.bytesWritten], 'the dry run said what the prune did');
  assert.equal(before - (await packBytes(b.store)), p.bytesFreed, 'the bytes freed are what left the store');
  assert.ok(p.bytesFreed >= 5 * MiB, `big.bin and the dropped media are freed (${p.bytesFreed})`);
  assert.deepEqual(p.waitingFor, []);
  await checkClean(b);

  const again = exits(await coffer(b, ['prune']), 0);
  assert.match(again.stdout, /^Pruned in [0-9.]+ s: deleted 0 packs \(0 B\); freed 0 B\.\n$/, show(again));
  await restoresAs(b, 2, snap2);
  await restoresAs(b, 3, snap3);
  exits(await coffer(b, ['verify', '--quiet']), 0);
});

test('backup DIR --keep-last N forgets and prunes after each backup', async (t) => {
  const b = await box(t);
  await sample.generateChatData(b.src, { seed: 'keep last', targetBytes: 2 * MiB });
  exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  const snaps: Entry[][] = [];
  for (let i = 1; i <= 4; i++) {
    await writeRandomFile(join(b.src, `day${i}.bin`), MiB + i);
    if (i > 1) await unlink(join(b.src, `day${i - 1}.bin`));
    snaps[i] = await tree(b.src);
    const r = exits(await coffer(b, ['backup', b.src, '--keep-last', '2', ...(i === 3 ? ['--json'] : [])]), 0);
    const seqs = (await readdir(join(b.store, 'manifests'))).map((n) => Number(n.split('-')[0])).sort();
    assert.deepEqual(seqs, i === 1 ? [1] : [i - 1, i]);
    if (i === 3) {
      const out = jsonOut(r);
      assert.equal(out.seq, 3);
      assert.deepEqual(out.forget.forgotten.map((x: { seq: number }) => x.seq), [1]);
      assert.ok(out.prune.packsDeleted + out.prune.packsWritten >= 1, 'day1.bin left the store');
    } else if (i === 4) {
      assert.match(r.stdout, /^Backup #4 done in [0-9.]+ s: .*\nForgot 1 backup:\n {2}#2 .*\nKept 2:\n.*\n.*\nPruned: deleted \d+ packs? .*; freed [0-9.]+ (KiB|MiB)\.\n$/s, show(r));
    }
  }
  await restoresAs(b, 3, snaps[3]!);
  await restoresAs(b, 4, snaps[4]!);
  await checkClean(b);
});

test('forget and prune refuse bad input with a hint (exit 2), and a prune stops on a manifest that does not open (exit 4)', async (t) => {
  const b = await box(t);
  const noProfile = exits(await coffer(b, ['prune']), 2);
  assert.match(noProfile.stderr, /^coffer: no Coffer profile in .*\n {2}hint: run `coffer init/);
  await writeFile(join(b.dir, 'x'), '');
  await sample.generateChatData(b.src, { seed: 'bad input', targetBytes: 1 * MiB });
  exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  for (const [args, message] of [
    [['forget'], /^coffer: say which backups to keep\n {2}hint: for example `coffer forget --keep-last 3`/],
    [['forget', '--keep-last', 'two'], /^coffer: --keep-last takes a number of backups, not "two"\n {2}hint: for example --keep-last 3\n$/],
    [['forget', '--keep-weekly=-1'], /^coffer: --keep-weekly takes a number of backups, not "-1"/],
    [['prune', '--max-unused', '150%'], /^coffer: --max-unused takes a percentage between 0% and 100%, not "150%"\n {2}hint: for example --max-unused 10%\n$/],
    [['prune', '--keep-last', '1'], /^coffer: Unknown option '--keep-last'/],
    [['backup', b.src, '--keep-daily', '1.5'], /^coffer: --keep-daily takes a number of backups, not "1.5"/],
  ] as const) {
    const r = exits(await coffer(b, [...args]), 2);
    assert.match(r.stderr, message, show(r));
    assert.equal(r.stdout, '');
  }
  const j = jsonOut(exits(await coffer(b, ['prune', '--max-unused', 'lots', '--json']), 2));
  assert.deepEqual([j.ok, j.error.code, j.error.exitCode], [false, 'usage', 2]);
  assert.equal((await readdir(join(b.store, 'manifests'))).length, 1, 'a refused backup --keep-* did not back up');

  // Junk under a manifest name: prune cannot tell which packs that backup would need.
  await writeFile(join(b.store, 'manifests', '00000000000000000007-0123456789abcdef'), 'not a manifest, '.repeat(20));
  const before = await storeState(b.store);
  const r = exits(await coffer(b, ['prune']), 4);
  assert.match(r.stderr, /^coffer: object manifests\/00000000000000000007-0123456789abcdef is damaged .*prune stops/, show(r));
  assert.deepEqual(await storeState(b.store), before, 'nothing was deleted');
  const f = exits(await coffer(b, ['forget', '--keep-last', '1']), 0);
  assert.match(f.stdout, /Warning: manifests\/00000000000000000007-0123456789abcdef does not open \(corrupt\); it is kept, and a prune stops on it\.\n/, show(f));
});

/* ------------------------------------------------------------------------------------------------
 * SIGKILL
 * --------------------------------------------------------------------------------------------- */

interface Killed {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** What the store showed when the kill was sent. */
  trigger: string | null;
}

/**
 * Runs `coffer prune` and sends SIGKILL as soon as the store shows a change that `when` picks
 * (an object name and whether it now exists), watching the store's folder for changes.
 */
function pruneKilledWhen(b: Box, when: (name: string, exists: boolean) => boolean): Promise<Killed> {
  return new Promise((resolve, reject) => {
    let trigger: string | null = null;
    const child = spawn(process.execPath, [BIN, 'prune', '--json'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: b.dir, COFFER_HOME: b.home }, stdio: ['ignore', 'pipe', 'ignore'] });
    const watcher = watch(b.store, { recursive: true }, (_event, file) => {
      if (trigger || !file) return;
      // Packs live in shards (packs/ab/ab…); other objects under their name.
      const name = String(file).replace(/^(packs|data)\/[0-9a-f]{2}\//, '$1/');
      const exists = existsSync(join(b.store, String(file)));
      if (!name.startsWith('tmp/') && when(name, exists)) {
        trigger = `${exists ? 'created' : 'removed'} ${name}`;
        child.kill('SIGKILL');
      }
    });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      watcher.close();
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), trigger });
    });
  });
}

test('SIGKILL of `coffer prune` at several points: every kept backup restores, verify is clean, and a re-run finishes the job', async (t: TestContext) => {
  const template = await box(t);
  // 1 MiB packs: a prune with many packs to delete and several to repack.
  const { snap2, snap3 } = await history(template, { packSize: MiB });
  exits(await coffer(template, ['forget', '--keep-last', '2']), 0);
  const startIndex = new Set(await readdir(join(template.store, 'index')));
  const startJournal = new Set(await readdir(join(template.store, 'journal')));
  let recordSeen = false;
  const pack = /^packs\/[0-9a-f]{64}$/;
  const newRecord = (n: string) => /^journal\/\d{16}-[0-9a-f]{16}$/.test(n) && !startJournal.has(n.slice(8));
  const points: [string, (name: string, exists: boolean) => boolean][] = [
    ['its lock written (marking)', (n, e) => e && /^locks\/[0-9a-f]{64}$/.test(n)],
    ['a pack being repacked', (n, e) => e && pack.test(n)],
    ['its journal record written', (n, e) => e && newRecord(n)],
    ['the consolidated index written', (n, e) => {
      if (e && newRecord(n)) recordSeen = true;
      return e && recordSeen && /^index\/[0-9a-f]{64}$/.test(n) && !startIndex.has(n.slice(6));
    }],
    ['condemned packs being deleted', (n, e) => !e && pack.test(n)],
  ];
  let landed = 0;
  let recordsFinished = 0;
  const triggers: string[] = [];
  for (const [what, when] of points) {
    recordSeen = false;
    const b: Box = { ...template, dir: join(template.dir, `kill-${landed}-${Math.random().toString(36).slice(2)}`) };
    b.store = join(b.dir, 'store');
    b.home = join(b.dir, 'home');
    await cp(template.store, b.store, { recursive: true });
    await cp(template.home, b.home, { recursive: true });
    // The profile names the template's store: point it at this copy.
    const profile = JSON.parse(await readFile(join(b.home, 'profile.json'), 'utf8'));
    await writeFile(join(b.home, 'profile.json'), JSON.stringify({ ...profile, storage: b.store }));
    const k = await pruneKilledWhen(b, when);
    if (k.signal === 'SIGKILL') landed++;
    triggers.push(`${what}: ${k.trigger ?? 'none'} (${k.signal ?? `exit ${k.code}`})`);
    const where = `killed at ${what} (${k.trigger ?? 'no trigger'}; ${k.signal ?? `exit ${k.code}`})`;
    await restoresAs(b, 2, snap2);
    await restoresAs(b, 3, snap3);
    const v = await coffer(b, ['verify', '--quiet']);
    assert.equal(v.code, 0, `${where}: ${show(v)}`);
    const leftRecords = (await readdir(join(b.store, 'journal'))).filter((n) => !startJournal.has(n)).length;
    const again = jsonOut(exits(await coffer(b, ['prune', '--json']), 0));
    assert.deepEqual(again.waitingFor, [], `${where}: the killed prune's lock does not hold up the re-run`);
    assert.equal(again.earlierFinished, leftRecords, `${where}: the re-run finishes the record the killed prune left`);
    if (leftRecords) recordsFinished++;
    await checkClean(b);
    await restoresAs(b, 3, snap3);
    await rm(b.dir, { recursive: true, force: true });
  }
  assert.ok(landed >= 4, `${landed} of ${points.length} kills landed before the prune finished`);
  assert.ok(recordsFinished >= 2, `${recordsFinished} re-runs finished a killed prune's record`);
  t.diagnostic(`${landed} of ${points.length} kills landed: ${triggers.join('; ')}`);
});
