/**
 * What every real server (real-servers.ts) must do with Coffer, as scenarios shared by
 * interop-webdav.test.ts (Apache, nginx, rclone) and ceph.interop.ts (Ceph's S3 gateway):
 *   - a backup, a change, a second backup, and a restore of each, on a new device;
 *   - two devices backing up to one store at the same moment, round after round: every backup that
 *     reports success restores to exactly the tree it backed up (spec/format.md §7.1);
 *   - the server stopped for 10 s in the middle of a `coffer backup`, which rides it out and
 *     completes without a re-run, saying meanwhile that it waits for the store (§7.2).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backup, ConflictError, generateBackupKey, Repository, restore, type Storage } from '@coffer/core';
import { FolderIndexCache, FolderSource, FolderTarget, nodeCryptoProvider as crypto } from '@coffer/node';
import type { RealServer } from './real-servers.js';
import { seeded } from './servers.js';
import { digest, makeTree } from './trees.js';

const MiB = 1024 * 1024;
const COFFER = fileURLToPath(new URL('../../../cli/bin/coffer.js', import.meta.url));

/** Opens one more client of the store at `path` (a device, or a reader). */
export type Opener = (path: string) => Promise<Storage>;

/** Backup, change, backup, then restore both backups on a new device (2 MiB of files). */
export async function roundTrip(open: Opener, path: string, work: string): Promise<void> {
  const src = join(work, 'src');
  await makeTree(src, 2 * MiB, 11);
  const first = await digest(src);
  const key = generateBackupKey(crypto);
  const storage = await open(path);
  try {
    const repo = await Repository.init(storage, crypto, key);
    const r1 = await backup(repo, new FolderSource(src));
    assert.ok(r1.chunksUploaded >= 3, `first backup uploaded ${r1.chunksUploaded} chunks`);
    // The change: one file rewritten, one added, one removed.
    await writeFile(join(src, 'media', 'video.mp4'), crypto.randomBytes(300_000));
    await writeFile(join(src, 'new.txt'), 'a new file\n');
    await rm(join(src, 'file-0.bin'));
    const second = await digest(src);
    const r2 = await backup(repo, new FolderSource(src));
    assert.equal(r2.filesRead, 2, 'only the changed and the new file are read');
    assert.equal(r2.chunksUploaded, 2);
    // A new device: another client, the same key.
    const reader = await open(path);
    try {
      const again = await Repository.open(reader, crypto, key);
      await restore(again, new FolderTarget(join(work, 'out2')));
      assert.deepEqual(await digest(join(work, 'out2')), second, 'the newest backup restores the changed tree');
      await restore(again, new FolderTarget(join(work, 'out1')), { seq: r1.seq });
      assert.deepEqual(await digest(join(work, 'out1')), first, 'the first backup restores the first tree');
    } finally {
      await reader.close?.();
    }
  } finally {
    await storage.close?.();
  }
}

/**
 * Stores whose manifest writes wait for each other (up to 2 s), so that the last and decisive write
 * of two racing backups leaves at the same moment in every round, not only when the timing happens
 * to line up. Everything else passes straight through to the real store.
 */
function aligned(stores: Storage[]): Storage[] {
  let waiting: (() => void) | null = null;
  const meet = () =>
    new Promise<void>((resolve) => {
      if (waiting) {
        waiting();
        waiting = null;
        return resolve();
      }
      const t = setTimeout(() => ((waiting = null), resolve()), 2000);
      waiting = () => (clearTimeout(t), resolve());
    });
  return stores.map((s) => ({
    label: s.label,
    put: async (name, data) => {
      if (name.startsWith('manifests/')) await meet();
      return s.put(name, data);
    },
    get: (name, range, alloc) => s.get(name, range, alloc),
    stat: (name) => s.stat(name),
    list: (prefix) => s.list(prefix),
    delete: (name) => s.delete(name),
    flush: () => s.flush(),
  }));
}

/**
 * Two devices back up to one store at the same moment, `rounds` times, their manifest writes
 * aligned (above). Each round each device backs up a tree of its own (a file only it has, and a
 * file both have, whose chunks both upload under one name at once). Every backup that reports
 * success must restore, on a third client, to exactly the tree that device backed up; a backup
 * that fails must fail with ConflictError (it lost a race and says so), never silently.
 */
export async function racingDevices(open: Opener, path: string, work: string, rounds = 20): Promise<{ succeeded: number; conflicts: number }> {
  const key = generateBackupKey(crypto);
  const stores = [await open(path), await open(path)];
  const reader = await open(path);
  try {
    await Repository.init(stores[0]!, crypto, key);
    const repos = await Promise.all(aligned(stores).map((s) => Repository.open(s, crypto, key)));
    // Each device keeps copies of the index objects it has read, as the CLI does in its profile.
    const caches = ['a', 'b'].map((d) => new FolderIndexCache(join(work, `index-cache-${d}`)));
    const done: { name: string; tree: string[]; who: string }[] = [];
    let conflicts = 0;
    for (let round = 0; round < rounds; round++) {
      const rnd = seeded(round + 1);
      const shared = Buffer.from(Array.from({ length: 1500 }, () => Math.floor(rnd() * 256)));
      const trees = await Promise.all(
        ['a', 'b'].map(async (device) => {
          const src = join(work, `device-${device}`);
          await rm(src, { recursive: true, force: true });
          await mkdir(src, { recursive: true });
          await writeFile(join(src, 'shared.bin'), shared);
          await writeFile(join(src, `only-${device}.txt`), `device ${device}, round ${round}\n`);
          return { src, tree: await digest(src), who: `device ${device}, round ${round}` };
        }),
      );
      const results = await Promise.allSettled(repos.map((repo, i) => backup(repo, new FolderSource(trees[i]!.src), { indexCache: caches[i] })));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') done.push({ name: r.value.name, tree: trees[i]!.tree, who: trees[i]!.who });
        else if (r.reason instanceof ConflictError) conflicts++;
        else throw new Error(`${trees[i]!.who}: the backup failed with ${String(r.reason)}`, { cause: r.reason });
      });
    }
    assert.ok(done.length >= rounds, `at least one backup per round succeeds (${done.length} of ${2 * rounds})`);
    const repo = await Repository.open(reader, crypto, key);
    const manifests = await repo.manifests();
    const readerCache = new FolderIndexCache(join(work, 'index-cache-reader'));
    for (const d of done) {
      const out = join(work, `out-${d.who.replace(/\W+/g, '-')}`);
      const ref = manifests.find((m) => m.name === d.name);
      assert.ok(ref, `${d.who} reported backup ${d.name}: the store lists it`);
      await restore(repo, new FolderTarget(out), { seq: ref, indexCache: readerCache });
      assert.deepEqual(await digest(out), d.tree, `${d.who} reported backup ${d.name}: it restores to what it backed up`);
      await rm(out, { recursive: true });
    }
    return { succeeded: done.length, conflicts };
  } finally {
    await Promise.all([...stores, reader].map((s) => s.close?.()));
  }
}

/** Runs `coffer ARGS` with the server's credentials; resolves with its exit code and output. */
function coffer(server: RealServer, home: string, args: string[], onStart?: (pid: number) => void) {
  const child = spawn(process.execPath, [COFFER, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: home, COFFER_HOME: home, ...server.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onStart?.(child.pid!);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => child.once('close', (code) => r({ code, stdout, stderr })));
  return { child, exited };
}

/**
 * `coffer backup` of `src` (32 MiB) while the server is stopped for `outageMs`: once the backup's
 * first object is in the store (its lock), the command is frozen (SIGSTOP) while the server stops,
 * so that the outage falls in the middle of the backup whatever the speed of the machine, then it
 * runs on against the stopped server, which comes back `outageMs` later. The backup must complete
 * in the same run, say it waited for the store, and restore byte for byte.
 */
export async function outage(server: RealServer, open: Opener, path: string, work: string, src: string, outageMs = 10_000): Promise<{ storedBeforeOutage: number; stored: number; waits: number }> {
  const home = join(work, 'home');
  const init = await coffer(server, home, ['init', '--storage', server.url(path), '--json']).exited;
  assert.equal(init.code, 0, init.stdout + init.stderr);
  const watcher = await open(path);
  // Objects in the store: the backup's lock (format v2 writes it first), packs, indexes, manifests (v1: data objects).
  const count = async (prefixes: string[]) => (await Promise.all(prefixes.map((p) => watcher.list(p)))).reduce((n, l) => n + l.length, 0);
  const payload = () => count(['data/', 'packs/']);
  const run = coffer(server, home, ['backup', src, '--json', '--retry-for', '60s']);
  try {
    while ((await count(['locks/', 'data/', 'packs/'])) === 0) {
      if (run.child.exitCode !== null) assert.fail('the backup ended before an object was seen');
      await new Promise((r) => setTimeout(r, 20));
    }
    run.child.kill('SIGSTOP');
    const stored = await payload();
    await server.stop();
    const stoppedAt = Date.now();
    run.child.kill('SIGCONT');
    await new Promise((r) => setTimeout(r, outageMs));
    await server.start();
    const r = await run.exited;
    assert.equal(r.code, 0, `the backup completes in the same run\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Warning/, 'no warning (such as the AWS SDK\'s NodeVersionSupportWarning) on stderr');
    const waits = r.stderr.split('\n').filter((l) => l.startsWith('{"waiting"')).map((l) => JSON.parse(l) as { reason: string; giveUpInSeconds: number });
    assert.ok(waits.length >= 2, `progress says, more than once, that it waits for the store (${waits.length} notices)\n${r.stderr}`);
    assert.match(waits[0]!.reason, /network error|answered 50[234]/);
    const total = await payload();
    assert.ok(total > stored, `the outage fell mid-backup: ${stored} of ${total} objects were stored before it`);
    assert.ok(Date.now() - stoppedAt >= outageMs);
    const out = join(work, 'restored');
    const restored = await coffer(server, home, ['restore', out, '--json']).exited;
    assert.equal(restored.code, 0, restored.stdout + restored.stderr);
    assert.deepEqual(await digest(out), await digest(src), 'the restore is byte-identical');
    return { storedBeforeOutage: stored, stored: total, waits: waits.length };
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
    await watcher.close?.();
  }
}
