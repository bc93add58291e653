/**
 * End-to-end tests of `coffer migrate` (spec/format.md §10.2): the real command on version 1
 * stores in real folders, written by the test-only version 1 writer of core's tests from real
 * source folders, and killed with SIGKILL at several points.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { SecretKey, type BackupSource, type CryptoProvider, type Storage } from '@coffer/core';
import { FolderSource, LocalStorage, nodeCryptoProvider } from '@coffer/node';
import { BIN, box, coffer, exits, formatKey, jsonOut, MiB, progressLines, readProfile, smallTree, tree, writeRandomFile, type Box, type Entry } from './helpers.js';

/** The test-only version 1 writer (packages/core/test/v1-store.ts), as built by `tsc -b`. */
interface V1Writer {
  initV1(storage: Storage, crypto: CryptoProvider, key: SecretKey, options?: { chunkSize?: number }): Promise<void>;
  backupV1(storage: Storage, crypto: CryptoProvider, key: SecretKey, source: BackupSource): Promise<{ seq: number }>;
}
const v1: V1Writer = await import(new URL('../../../core/dist/test/v1-store.js', import.meta.url).href);

interface V1Box extends Box {
  key: Buffer;
  /** The source tree as each version 1 backup saw it, by seq. */
  snaps: Map<number, Entry[]>;
}

/**
 * A version 1 store with one backup per `versions` step (each changes the source folder first), and
 * a profile connected to it with the recovery key, as a device that made those backups would have.
 */
async function v1Box(t: TestContext, chunkSize: number, versions: ((src: string) => Promise<void>)[]): Promise<V1Box> {
  const b = await box(t);
  const key = randomBytes(32);
  const storage = await LocalStorage.open(b.store, { create: true });
  await v1.initV1(storage, nodeCryptoProvider, new SecretKey(key), { chunkSize });
  const snaps = new Map<number, Entry[]>();
  await mkdir(b.src, { recursive: true });
  for (const change of versions) {
    await change(b.src);
    const source = new FolderSource(b.src);
    const r = await v1.backupV1(storage, nodeCryptoProvider, new SecretKey(key), source);
    await source.close();
    snaps.set(r.seq, await tree(b.src));
  }
  exits(await coffer(b, ['init', '--storage', b.store, '--recovery-key-stdin'], { input: formatKey(key) + '\n' }), 0);
  return { ...b, key, snaps };
}

/** Every file of the store, by path, with the SHA-256 of its bytes (tmp/ aside). */
async function storeFiles(store: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(store, { recursive: true, withFileTypes: true })) {
    const full = join(e.parentPath, e.name);
    const rel = relative(store, full);
    if (e.isFile() && !rel.startsWith('tmp/')) out[rel] = createHash('sha256').update(await readFile(full)).digest('hex');
  }
  return out;
}

const filesUnder = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name) : []);
const v1Manifests = (store: string) => filesUnder(join(store, 'manifests')).filter((n) => /^\d{20}$/.test(n));
const configVersion = async (store: string, name = 'config'): Promise<number | null> =>
  existsSync(join(store, name)) ? (JSON.parse(await readFile(join(store, name), 'utf8')) as { version: number }).version : null;

/** Backup `seq` restores into a new folder exactly as its source was. */
async function restoresAs(b: V1Box, seq: number, snap: Entry[], label: string): Promise<void> {
  const out = join(b.dir, `out-${seq}-${randomBytes(4).toString('hex')}`);
  const r = jsonOut(exits(await coffer(b, ['restore', out, '--backup', String(seq), '--json', '--quiet']), 0));
  assert.equal(r.seq, seq);
  assert.deepEqual(await tree(out), snap, `${label}: backup #${seq} restores byte for byte`);
  await rm(out, { recursive: true });
}

async function assertMigrated(b: V1Box): Promise<void> {
  assert.equal(await configVersion(b.store), 2);
  assert.equal(existsSync(join(b.store, 'config.v2')), false, 'config.v2 is gone');
  assert.deepEqual(filesUnder(join(b.store, 'data')), [], 'no version 1 data object is left');
  assert.deepEqual(v1Manifests(b.store), [], 'no version 1 manifest is left');
  assert.deepEqual(filesUnder(join(b.store, 'locks')), [], 'no lock is left');
  const config = JSON.parse(await readFile(join(b.store, 'config'), 'utf8'));
  assert.equal(((await readProfile(b.home)) as unknown as { configMac: string }).configMac, config.mac, 'the profile pins the new config');
  for (const [seq, snap] of b.snaps) await restoresAs(b, seq, snap, 'migrated');
  exits(await coffer(b, ['verify', '--quiet']), 0);
}

test('coffer migrate: backup says to migrate, --dry-run changes nothing, migrate, every backup restores, verify, backups go on, a second run has nothing to do', async (t) => {
  const b = await v1Box(t, MiB, [
    async (src) => {
      await smallTree(src);
      await writeRandomFile(join(src, 'video.bin'), 3 * MiB + 777);
    },
    async (src) => {
      await writeFile(join(src, 'docs', 'new.txt'), 'a new file\n');
      await unlink(join(src, 'a.bin'));
    },
  ]);
  const dataObjects = filesUnder(join(b.store, 'data')).length;
  assert.equal(dataObjects, 3 + 4 + 2, 'a.bin (3 chunks), video.bin (4), readme.txt and new.txt (1 each)');

  // A version 1 store: readable, not writable.
  const refused = exits(await coffer(b, ['backup', b.src]), 2);
  assert.match(refused.stderr, /format version 1.*\n.*coffer migrate/);
  assert.equal(jsonOut(exits(await coffer(b, ['status', '--json']), 0)).format, 1);
  await restoresAs(b, 2, b.snaps.get(2)!, 'version 1');

  // --dry-run: what it would do, and not one byte changed.
  const before = await storeFiles(b.store);
  const dry = jsonOut(exits(await coffer(b, ['migrate', '--dry-run', '--json']), 0));
  assert.equal(dry.ok, true);
  assert.equal(dry.dryRun, true);
  assert.equal(dry.objectsPacked, dataObjects);
  assert.equal(dry.manifestsWritten, 2);
  assert.equal(dry.switched, true);
  const human = exits(await coffer(b, ['migrate', '--dry-run']), 0);
  assert.match(human.stdout, /^Dry run: nothing was changed\. A migration would:\n {2}copy 9 chunks \([0-9.]+ MiB\) into packs\n {2}re-encode 2 backups as version 2\n {2}switch the store to version 2\n {2}remove 9 version 1 chunks and 2 version 1 backup lists\n$/);
  assert.deepEqual(await storeFiles(b.store), before, 'the dry runs changed nothing in the store');
  assert.equal(((await readProfile(b.home)) as unknown as { configMac?: string }).configMac, undefined, 'nor the profile');

  // The migration, with JSON progress on stderr.
  const run = exits(await coffer(b, ['migrate', '--json']), 0);
  const r = jsonOut(run);
  assert.equal(r.ok, true);
  assert.equal(r.fromVersion, 1);
  assert.equal(r.objectsPacked, dataObjects);
  assert.equal(r.bytesPacked, dry.bytesPacked, 'the dry run measured the bytes moved');
  assert.equal(r.packsWritten, 1);
  assert.equal(r.manifestsWritten, 2);
  assert.equal(r.objectsDeleted, dataObjects);
  assert.equal(r.manifestsDeleted, 2);
  assert.deepEqual(r.damaged, []);
  const progress = progressLines(run, 'migrate');
  assert.equal(progress.at(-1)!.phase, 'done');
  assert.deepEqual(jsonOut(exits(await coffer(b, ['status', '--json']), 0)).format, 2);
  await assertMigrated(b);

  // Backups go on, incrementally: the files the version 1 backups stored are not read or uploaded again.
  await writeFile(join(b.src, 'docs', 'later.txt'), 'after the migration\n');
  const b3 = jsonOut(exits(await coffer(b, ['backup', b.src, '--json', '--quiet']), 0));
  assert.equal(b3.seq, 3);
  assert.equal(b3.chunksUploaded, 1, 'only the new file is uploaded');
  b.snaps.set(3, await tree(b.src));
  await restoresAs(b, 3, b.snaps.get(3)!, 'after migration');

  // Nothing more to do, said plainly (and as JSON), with nothing changed.
  const settled = await storeFiles(b.store);
  const again = exits(await coffer(b, ['migrate']), 0);
  assert.equal(again.stdout, 'This store already uses backup format version 2: there is nothing to migrate.\n');
  assert.equal(jsonOut(exits(await coffer(b, ['migrate', '--json']), 0)).nothingToDo, true);
  assert.deepEqual(await storeFiles(b.store), settled);
});

test('coffer migrate: bad usage exits 2; no profile exits 2; a damaged object exits 4, is named, and everything else migrates', async (t) => {
  const b = await v1Box(t, MiB, [(src) => smallTree(src)]);
  assert.match(exits(await coffer(b, ['migrate', '--bogus']), 2).stderr, /--bogus/);
  assert.match(exits(await coffer(b, ['migrate', 'extra']), 2).stderr, /unexpected argument "extra"/);
  assert.match(exits(await coffer(b, ['migrate'], { home: join(b.dir, 'nobody') }), 2).stderr, /no Coffer profile/);
  assert.match(exits(await coffer(b, ['migrate', '--help']), 0).stdout, /^Usage: coffer migrate \[--dry-run\]/);
  assert.match(exits(await coffer(b, ['--help']), 0).stdout, /migrate \[--dry-run\]/);

  // The one chunk of docs/readme.txt, cut short of a header: it cannot migrate.
  const objects = readdirSync(join(b.store, 'data'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  const small = objects.map((e) => join(e.parentPath, e.name)).find((p) => statSync(p).size < 200)!;
  await writeFile(small, (await readFile(small)).subarray(0, 30));
  const r = exits(await coffer(b, ['migrate']), 4);
  assert.match(r.stdout, /^Migrated the store to backup format version 2 in [0-9.]+ s: 3 chunks/);
  assert.match(r.stdout, new RegExp(`Warning: 1 objects were already damaged and did not migrate; they stay in the store as they were:\\n {2}data/${relative(join(b.store, 'data'), small).split('/')[1]}: truncated\\n`));
  assert.equal(await configVersion(b.store), 2);
  const j = jsonOut(exits(await coffer(b, ['migrate', '--json']), 4));
  assert.equal(j.ok, false);
  assert.equal(j.damaged.length, 1);
  const v = exits(await coffer(b, ['verify']), 4);
  assert.match(v.stdout, /data\/[0-9a-f]{64}: missing/);
});

/* ------------------------------------------------------------------------------------------------
 * Killed with SIGKILL
 * --------------------------------------------------------------------------------------------- */

interface Child {
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
  exited: () => boolean;
  kill: (signal?: NodeJS.Signals) => void;
}

/** `coffer migrate` as a process of its own (no shell in between, so a signal reaches it). */
function startMigrate(b: Box, args: string[] = []): Child {
  const child = spawn(process.execPath, [BIN, 'migrate', '--quiet', ...args], { env: { PATH: process.env.PATH ?? '', HOME: b.dir, COFFER_HOME: b.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let exited = false;
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>((resolve) =>
    child.on('exit', (code, signal) => {
      exited = true;
      resolve({ code, signal, output });
    }),
  );
  return { done, exited: () => exited, kill: (signal = 'SIGKILL') => child.kill(signal) };
}

/** Waits (polling every millisecond) until `condition` holds or the process ends; true if it held. */
async function when(child: Child, condition: () => boolean): Promise<boolean> {
  const started = Date.now();
  while (!child.exited() && Date.now() - started < 60_000) {
    if (condition()) return true;
    await new Promise((r) => setTimeout(r, 1));
  }
  return false;
}

test('coffer migrate killed with SIGKILL at several points: every backup restores after each kill, a second migration is refused while one runs, and a re-run completes', async (t) => {
  // ~400 chunks of 32 KiB in ~12 MiB: hundreds of objects to copy, and to delete at the end.
  const b = await v1Box(t, 32 * 1024, [
    async (src) => {
      await smallTree(src);
      for (let i = 0; i < 4; i++) await writeRandomFile(join(src, `photo-${i}.bin`), 1.5 * MiB + i * 1001);
    },
    async (src) => {
      await mkdir(join(src, 'more'));
      for (let i = 0; i < 4; i++) await writeRandomFile(join(src, 'more', `video-${i}.bin`), 1.5 * MiB - i * 999);
    },
  ]);
  const packs = () => filesUnder(join(b.store, 'packs')).length;
  const dataCount = () => filesUnder(join(b.store, 'data')).length;
  const start = dataCount();
  assert.ok(start > 300, `${start} data objects`);
  const newest = Math.max(...b.snaps.keys());

  const kills: { name: string; condition: () => boolean; check: () => Promise<void> }[] = [
    {
      name: 'once a pack is written, with a second migration started meanwhile',
      condition: () => packs() > 0,
      check: async () => assert.equal(await configVersion(b.store), 1, 'killed before the switch: still version 1'),
    },
    {
      name: 'after it wrote config.v2',
      condition: () => existsSync(join(b.store, 'config.v2')),
      check: async () => assert.ok(existsSync(join(b.store, 'config.v2')), 'mid-switch: config.v2 is there'),
    },
    {
      name: 'while it deletes the version 1 objects',
      condition: () => dataCount() < start,
      check: async () => {
        assert.equal(await configVersion(b.store), 2, 'killed after the switch: version 2');
        assert.ok(dataCount() > 0, 'with version 1 objects left');
      },
    },
  ];
  for (const [i, k] of kills.entries()) {
    const child = startMigrate(b);
    if (i === 0) {
      // A second migration while this one holds its lock (same host, live process: paused here) is refused.
      assert.ok(await when(child, () => filesUnder(join(b.store, 'locks')).length > 0), 'the first migration took its lock');
      child.kill('SIGSTOP');
      const second = exits(await coffer(b, ['migrate', '--json']), 1);
      assert.match(jsonOut(second).error.message, /a migrate on .* \(process \d+, started .*\) is using the store/);
      child.kill('SIGCONT');
    }
    const hit = await when(child, k.condition);
    child.kill();
    const end = await child.done;
    assert.ok(hit, `the kill point "${k.name}" was reached before the migration ended\n${end.output}`);
    assert.equal(end.signal, 'SIGKILL', end.output);
    t.diagnostic(`killed ${k.name}: ${packs()} packs, ${dataCount()} of ${start} data objects, config version ${await configVersion(b.store)}`);
    await k.check();
    await restoresAs(b, newest, b.snaps.get(newest)!, `killed ${k.name}`);
  }
  // The run after the last kill finishes the job.
  const r = jsonOut(exits(await coffer(b, ['migrate', '--json']), 0));
  assert.equal(r.fromVersion, 2);
  assert.ok(r.objectsDeleted > 0 && r.objectsDeleted < start, `it deleted what was left (${r.objectsDeleted})`);
  await assertMigrated(b);
});
