/**
 * Hostile and changing inputs, end to end through the real `coffer` command (spec/format.md §4.4,
 * §5.1, §6.1, §6.2): backups crafted by someone holding K, stores changed by whoever controls
 * them, folders that change under a backup, and local disks that refuse writes. Each case checks
 * the exact error and exit code, and that nothing is left behind or written outside the target.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Repository, SecretKey, fromHex, type TreeEntry } from '@coffer/core';
import { ObjectType, sealObject, utf8, manifestName } from '@coffer/core/testing';
import { LocalStorage, nodeCryptoProvider } from '@coffer/node';
import {
  box, coffer, exits, jsonOut, manifestFile, manifestSeqs, objectFile, objectNames, quote, readProfile, seqName, sh, show, smallTree, tree,
  writeRandomFile, MiB, type Box,
} from './helpers.js';

/** A box with a profile, a store and backup #1 of `smallTree`. */
async function ready(t: TestContext): Promise<Box> {
  const b = await box(t);
  await smallTree(b.src);
  exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  return b;
}

/** The repository of a box, opened with its profile's key: what someone holding K can do. */
async function openRepo(b: Box): Promise<Repository> {
  const profile = await readProfile(b.home);
  return Repository.open(await LocalStorage.open(b.store), nodeCryptoProvider, new SecretKey(fromHex(profile.key)));
}

/** Writes a manifest with any entries at all, sealed under K, as backup `seq`. */
async function craftManifest(b: Box, seq: number, entries: unknown[]): Promise<void> {
  const repo = await openRepo(b);
  const files = entries.filter((e) => (e as TreeEntry).kind === 'file') as TreeEntry[];
  const header = {
    type: 'coffer-manifest', version: 2, backupId: repo.config.backupId, seq, writer: WRITER, parent: null, createdAt: new Date().toISOString(),
    entries: entries.length, files: files.length, bytes: files.reduce((n, f) => n + f.size!, 0),
  };
  const text = [header, ...entries].map((l) => JSON.stringify(l)).join('\n') + '\n';
  await repo.storage.put(manifestName(seq, WRITER), await sealObject(nodeCryptoProvider, repo.keys, { type: ObjectType.manifest, backupId: repo.backupId, seq, writer: WRITER }, utf8(text)));
}
const WRITER = 'c0ffee00c0ffee00';

/** Runs a shell script in a mount namespace of its own (mounts vanish with it); `coffer` is the real command. */
function inMountNamespace(b: Box, script: string): ReturnType<typeof sh> {
  return sh(`unshare -m bash -ec ${quote(`coffer() { node "$COFFER_BIN" "$@"; }\n${script}`)}`, { HOME: b.dir, COFFER_HOME: b.home });
}

/** Runs `coffer ARGS` as the unprivileged user nobody (root ignores file permissions). */
function asNobody(b: Box, args: string[]): ReturnType<typeof sh> {
  return sh(`setpriv --reuid=65534 --regid=65534 --clear-groups node "$COFFER_BIN" ${args.map(quote).join(' ')}`, { HOME: b.dir, COFFER_HOME: b.home });
}

async function chownTree(path: string, uid: number): Promise<void> {
  await chown(path, uid, uid);
  const st = await lstat(path);
  if (st.isDirectory()) for (const n of await readdir(path)) await chownTree(join(path, n), uid);
}

/* ------------------------------------------------------------------------------------------------
 * 1. A backup crafted by someone holding K
 * --------------------------------------------------------------------------------------------- */

test('a symlink followed by entries below it: restore refuses the backup (exit 4), writes nothing outside, falls back when not asked for it', async (t) => {
  const b = await ready(t);
  const victim = join(b.dir, 'victim');
  await mkdir(victim);
  const repo = await openRepo(b);
  const chunk = (await repo.readManifest(1)).entries.find((e) => e.path === 'docs/readme.txt')!;
  const planted = { kind: 'file', mode: 0o644, mtimeNs: '1', size: chunk.size, chunks: chunk.chunks };
  const cases: [string, unknown[]][] = [
    ['absolute', [{ path: 'link', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: victim }, { path: 'link/authorized_keys', ...planted }]],
    ['relative', [{ path: 'link', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: '../../../../../../../..' + victim }, { path: 'link/d', kind: 'dir', mode: 0o755, mtimeNs: '1' }]],
    ['up', [{ path: 'up', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: '..' }, { path: 'up/victim/s', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: '/etc' }]],
  ];
  let seq = 2;
  for (const [name, entries] of cases) {
    await craftManifest(b, seq, entries);
    const target = join(b.dir, 'target');
    const r = jsonOut(exits(await coffer(b, ['restore', target, '--backup', String(seq), '--json']), 4));
    assert.equal(r.error.code, 'damaged', name);
    assert.match(r.error.message, new RegExp(`manifests/${seqName(seq)}-${WRITER} is damaged .*: entry 2 lies below a symlink, not a folder`), name);
    assert.deepEqual(await readdir(victim), [], `${name}: nothing planted`);
    assert.deepEqual((await readdir(b.dir)).sort(), ['home', 'src', 'store', 'victim'], `${name}: no target, no temporary folder`);
    seq++;
  }
  // The newest backup is hostile: a plain restore skips it, says so, and restores #1.
  const target = join(b.dir, 'target');
  const r = exits(await coffer(b, ['restore', target]), 0);
  assert.match(r.stdout, /^Warning: backup #4 does not open \(object manifests\/0+4-c0ffee00c0ffee00 is damaged/);
  assert.match(r.stdout, /Warning: backup #3 does not open/);
  assert.match(r.stdout, /restored #1 instead/);
  assert.deepEqual(await readdir(victim), []);
});

test('setuid and setgid bits are dropped by default and counted; --keep-special-modes keeps them', async (t) => {
  const b = await box(t);
  await mkdir(b.src);
  await writeFile(join(b.src, 'tool'), '#!/bin/sh\n');
  await chmod(join(b.src, 'tool'), 0o6755);
  exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  const r = exits(await coffer(b, ['restore', join(b.dir, 'a')]), 0);
  assert.match(r.stdout, /Dropped the setuid, setgid or sticky bits of 1 files \(--keep-special-modes keeps them\)/);
  assert.equal((await stat(join(b.dir, 'a', 'tool'))).mode & 0o7777, 0o755);
  const j = jsonOut(exits(await coffer(b, ['restore', join(b.dir, 'b'), '--keep-special-modes', '--json']), 0));
  assert.equal(j.specialModesDropped, 0);
  assert.equal((await stat(join(b.dir, 'b', 'tool'))).mode & 0o7777, 0o6755);
});

/* ------------------------------------------------------------------------------------------------
 * 2. A folder that changes under the backup
 * --------------------------------------------------------------------------------------------- */

test('files that cannot be read are skipped with a warning: the backup completes with exit 8 and --json lists them', async (t) => {
  const b = await box(t);
  await mkdir(join(b.src, 'locked'), { recursive: true });
  await writeFile(join(b.src, 'ok.txt'), 'fine');
  await writeFile(join(b.src, 'secret.txt'), 'not for nobody');
  await writeFile(join(b.src, 'locked', 'inside.txt'), 'x');
  await mkdir(b.home);
  await chownTree(b.dir, 65534);
  await chown(join(b.src, 'secret.txt'), 0, 0);
  await chmod(join(b.src, 'secret.txt'), 0o600);
  await chown(join(b.src, 'locked'), 0, 0);
  await chmod(join(b.src, 'locked'), 0o700);
  exits(await asNobody(b, ['init', '--storage', b.store, '--json']), 0);
  const human = exits(await asNobody(b, ['backup', b.src]), 8);
  assert.match(human.stdout, /^Backup #1 completed with warnings/);
  assert.match(human.stdout, /Warning: 2 files skipped \(they vanished or could not be read during the backup\):\n {2}locked \(unreadable\)\n {2}secret.txt \(unreadable\)\n/);
  const j = jsonOut(exits(await asNobody(b, ['backup', b.src, '--json']), 8));
  assert.equal(j.incomplete, true);
  assert.deepEqual(j.skipped, [{ path: 'locked', reason: 'unreadable' }, { path: 'secret.txt', reason: 'unreadable' }]);
  const out = join(b.dir, 'out');
  exits(await asNobody(b, ['restore', out]), 0);
  assert.deepEqual((await readdir(out)).sort(), ['ok.txt']);
});

test('a file that keeps changing while it is read is stored marked "changed while read" (exit 8), and restore says so', async (t) => {
  const b = await box(t);
  await mkdir(b.src);
  await writeRandomFile(join(b.src, 'growing.log'), 48 * MiB);
  await writeFile(join(b.src, 'calm.txt'), 'calm');
  exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  // A writer appends to the file all through the backup.
  const writer = spawn('bash', ['-c', `while :; do head -c 4096 /dev/zero >> ${quote(join(b.src, 'growing.log'))}; done`], { stdio: 'ignore' });
  t.after(() => writer.kill('SIGKILL'));
  const j = jsonOut(exits(await coffer(b, ['backup', b.src, '--json']), 8));
  writer.kill('SIGKILL');
  assert.deepEqual(j.changed, ['growing.log']);
  assert.equal(j.incomplete, true);
  const r = exits(await coffer(b, ['restore', join(b.dir, 'out')]), 0);
  assert.match(r.stdout, /Warning: 1 files were changing while they were backed up and may be inconsistent:\n {2}growing.log\n/);
});

test('a live SQLite database in WAL mode is backed up from a consistent snapshot while a writer inserts rows', async (t) => {
  const b = await box(t);
  await mkdir(b.src);
  exits(await coffer(b, ['init', '--storage', b.store, '--json']), 0);
  const db = join(b.src, 'msgstore.db');
  // The writer commits rows 1, 2, 3, ... one transaction each, and says how many it committed.
  const writerCode = `
    const Database = require('better-sqlite3');
    const db = new Database(process.argv[1]);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
    const insert = db.prepare('INSERT INTO messages (id, body) VALUES (?, randomblob(2000))');
    let n = 0;
    process.on('SIGTERM', () => { process.stdout.write('committed ' + n + '\\n', () => process.exit(0)); });
    const step = () => { for (let i = 0; i < 50; i++) insert.run(++n); if (n === 2000) process.stdout.write('ready\\n'); setImmediate(step); };
    step();`;
  const writer = spawn(process.execPath, ['-e', writerCode, db], { stdio: ['ignore', 'pipe', 'inherit'], cwd: b.dir, env: { ...process.env, NODE_PATH: join(process.cwd(), 'node_modules') } });
  t.after(() => writer.kill('SIGKILL'));
  let said = '';
  writer.stdout.on('data', (d: Buffer) => (said += d.toString()));
  while (!said.includes('ready')) await new Promise((r) => setTimeout(r, 20));
  const files = await readdir(b.src);
  assert.ok(files.includes('msgstore.db-wal'), `the database is live in WAL mode: ${files}`);
  const j = jsonOut(exits(await coffer(b, ['backup', b.src, '--json']), 0));
  writer.kill('SIGTERM');
  await new Promise((r) => writer.on('close', r));
  const committed = Number(/committed (\d+)/.exec(said)![1]);
  assert.deepEqual(j.snapshots, ['msgstore.db']);
  assert.deepEqual(j.changed, []);
  const out = join(b.dir, 'out');
  exits(await coffer(b, ['restore', out]), 0);
  assert.deepEqual(await readdir(out), ['msgstore.db'], 'no -wal or -shm beside the snapshot');
  const { default: Database } = await import('better-sqlite3');
  const restored = new Database(join(out, 'msgstore.db'), { readonly: true });
  try {
    assert.equal(restored.pragma('integrity_check', { simple: true }), 'ok');
    const { n, lo, hi } = restored.prepare('SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM messages').get() as { n: number; lo: number; hi: number };
    assert.equal(lo, 1);
    assert.equal(hi, n, 'a prefix of the committed rows: 1..n without a gap');
    assert.ok(n >= 2000 && n <= committed, `${n} rows, between 2000 and ${committed}`);
  } finally {
    restored.close();
  }
});

/* ------------------------------------------------------------------------------------------------
 * 3. A store changed by whoever controls it (no K needed)
 * --------------------------------------------------------------------------------------------- */

test('3 GiB objects in the store (no K needed) are found before anything is allocated for them', async (t) => {
  const b = await ready(t);
  const timed = async (args: string[], code: number) => {
    const started = Date.now();
    const r = exits(await coffer(b, args), code);
    assert.ok(Date.now() - started < 20_000, 'no 3 GiB read');
    return r;
  };
  // A pack made 3 GiB: blobs are read by range, so the restore is unharmed; verify finds its header gone.
  const [pack] = objectNames(b.store);
  await truncate(objectFile(b.store, pack!), 3 * 1024 ** 3);
  await timed(['restore', join(b.dir, 'out0'), '--quiet'], 0);
  const v = jsonOut(await timed(['verify', '--json'], 4));
  assert.deepEqual(v.damaged.map((d: { object: string }) => d.object), [pack]);
  await rm(join(b.dir, 'out0'), { recursive: true });
  // An index object made 3 GiB: damage (exit 4), reported before anything is allocated.
  const [index] = await readdir(join(b.store, 'index'));
  await truncate(join(b.store, 'index', index!), 3 * 1024 ** 3);
  // (This device has a copy in its profile's cache; a new device reads the store's.)
  const profile = await readProfile(b.home);
  const key = profile.key.toUpperCase().match(/.{4}/g)!.join(' ');
  const started = Date.now();
  const r = jsonOut(exits(await coffer(b, ['restore', join(b.dir, 'out'), '--storage', b.store, '--recovery-key-stdin', '--json'], { home: join(b.dir, 'fresh'), input: `${key}\n` }), 4));
  assert.ok(Date.now() - started < 20_000, 'no 3 GiB read');
  assert.match(r.error.message, /index\/[0-9a-f]{64} is damaged .*larger than the format allows/);
  assert.deepEqual((await readdir(b.dir)).sort(), ['home', 'src', 'store']);
  await rm(join(b.store, 'index', index!));
  await rm(join(b.store, 'packs'), { recursive: true });
  // The same under the newest manifest's name: restore falls back, backup goes on past it.
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  await truncate(await manifestFile(b.store, 2), 3 * 1024 ** 3);
  // This device made #2: falling back to #1 would be a rollback, which it refuses unless told.
  const own = exits(await coffer(b, ['restore', join(b.dir, 'out2')]), 4);
  assert.match(own.stderr, /rolled back\): backup #2 does not open \(corrupt\), and #1 is older than #2, which this device has seen\n/);
  // A new device has seen nothing: it falls back and says why.
  const fresh = join(b.dir, 'fresh2');
  const fell = exits(await coffer(b, ['restore', join(b.dir, 'out3'), '--storage', b.store, '--recovery-key-stdin'], { home: fresh, input: `${key}\n` }), 0);
  assert.match(fell.stdout, /^Warning: backup #2 does not open \(.*larger than the format allows\); restored #1 instead/);
});

test('a junk file under a newer manifest name: restore falls back and says why, backups go on past it, verify reports it', async (t) => {
  const b = await ready(t);
  const junk = `${seqName(7)}-0123456789abcdef`;
  await writeFile(join(b.store, 'manifests', junk), 'junk, no key needed. '.repeat(10));
  const r = exits(await coffer(b, ['restore', join(b.dir, 'out')]), 0);
  assert.match(r.stdout, /^Warning: backup #7 does not open \(object manifests\/0+7-0123456789abcdef is damaged \(its contents do not authenticate\): bad header\); restored #1 instead\.\n/);
  assert.deepEqual(await tree(join(b.dir, 'out')), await tree(b.src));
  const j = jsonOut(exits(await coffer(b, ['backup', b.src, '--json']), 0));
  assert.equal(j.seq, 8, 'numbered past the junk');
  exits(await coffer(b, ['backup', b.src, '--quiet']), 0);
  assert.deepEqual(await manifestSeqs(b.store), [1, 7, 8, 9]);
  const v = jsonOut(exits(await coffer(b, ['verify', '--json']), 4));
  assert.deepEqual(v.damaged.map((d: { object: string; reason: string }) => [d.object, d.reason]), [[`manifests/${junk}`, 'corrupt']]);
  // A newer good backup restores as usual; junk that is not even a manifest name is reported too.
  assert.equal(jsonOut(exits(await coffer(b, ['restore', join(b.dir, 'out2'), '--json']), 0)).seq, 9);
  await writeFile(join(b.store, 'manifests', seqName(99)), 'a version 1 name in a version 2 store');
  const v2 = jsonOut(exits(await coffer(b, ['verify', '--json']), 4));
  assert.ok(v2.damaged.some((d: { object: string }) => d.object === `manifests/${seqName(99)}`));
});

/* ------------------------------------------------------------------------------------------------
 * 4. Local disks that refuse writes: named errors, exit 9 (target) or 5 (store), nothing left
 * --------------------------------------------------------------------------------------------- */

test('a full disk under the target: exit 9 "the disk is full", and nothing half-restored is left', async (t) => {
  const b = await ready(t);
  const mnt = join(b.dir, 'small');
  await mkdir(mnt);
  const r = await inMountNamespace(b, `mount -t tmpfs -o size=1m tmpfs ${quote(mnt)}\ncode=0; coffer restore ${quote(join(mnt, 'out'))} --json || code=$?\necho "left: $(ls -A ${quote(mnt)})" >&2\nexit $code`);
  assert.equal(r.code, 9, show(r));
  const j = JSON.parse(r.stdout);
  assert.equal(j.error.code, 'local-full');
  assert.match(j.error.message, /the disk is full/);
  assert.match(j.error.hint, /free some space/);
  assert.match(r.stderr, /^left: $/m);
});

test('a read-only target file system: exit 9 "read-only"; a target folder nobody may write: exit 9 "permission denied"', async (t) => {
  const b = await ready(t);
  const mnt = join(b.dir, 'ro');
  await mkdir(mnt);
  const r = await inMountNamespace(b, `mount -t tmpfs -o ro tmpfs ${quote(mnt)}\ncoffer restore ${quote(join(mnt, 'out'))}`);
  assert.equal(r.code, 9, show(r));
  assert.match(r.stderr, /^coffer: cannot write .*: the file system is read-only\n {2}hint: restore into a folder on a writable disk\n$/);

  await chownTree(b.dir, 65534);
  const locked = join(b.dir, 'locked');
  await mkdir(locked, { mode: 0o755 });
  const p = await asNobody(b, ['restore', join(locked, 'out')]);
  assert.equal(p.code, 9, show(p));
  assert.match(p.stderr, /^coffer: cannot write .*: permission denied\n {2}hint: restore into a folder you can write to/);
  assert.deepEqual(await readdir(locked), []);
});

test('a read-only store: backup exits 5 naming it, earlier backups intact; restore from it works', async (t) => {
  const b = await ready(t);
  await writeFile(join(b.src, 'new.txt'), 'new');
  const r = await inMountNamespace(
    b,
    `mount --bind ${quote(b.store)} ${quote(b.store)}\nmount -o remount,ro,bind ${quote(b.store)}\n` +
      `code=0; coffer backup ${quote(b.src)} || code=$?\ncoffer restore ${quote(join(b.dir, 'out'))} --quiet\nexit $code`,
  );
  assert.equal(r.code, 5, show(r));
  assert.match(r.stderr, /^coffer: .*writing .* failed: the store is on a read-only file system\n {2}hint: back up to a writable store; earlier backups are intact\n/);
  assert.deepEqual(await manifestSeqs(b.store), [1]);
  assert.deepEqual((await readdir(join(b.dir, 'out'))).sort(), (await readdir(b.src)).filter((n) => n !== 'new.txt').sort());
  assert.ok((await readFile(join(b.dir, 'out', 'docs', 'readme.txt'), 'utf8')).startsWith('hello'));
});
