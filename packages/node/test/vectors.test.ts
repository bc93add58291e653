/** Runs every vector in spec/vectors (spec/format.md §8), and checks the generator reproduces them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DamagedBackupError, parseRecoveryKey, Repository, restore, WrongKeyError } from '@coffer/core';
import { FolderTarget, LocalStorage, nodeCryptoProvider as crypto } from '@coffer/node';
import { generateVectors, listVectors, type Vector } from './vectors-gen.js';

const VECTORS = new URL('../../../../spec/vectors/', import.meta.url).pathname;

async function files(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    const full = join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    if (e.isFile()) out[relative(root, full)] = createHash('sha256').update(await readFile(full)).digest('hex');
  }
  return out;
}

const names = await listVectors(VECTORS);
const V1 = join(VECTORS, 'v1');
const v1Names = await listVectors(V1);

test('there is a valid vector and one per failure class, in version 2 and in version 1', () => {
  for (const n of ['valid', 'wrong-key', 'altered-key-check', 'altered-chunk-size', 'truncated-pack', 'flipped-bit', 'swapped-indexes', 'rolled-back-manifest', 'missing-pack']) assert.ok(names.includes(n), n);
  for (const n of ['valid', 'wrong-key', 'truncated-object', 'flipped-bit', 'swapped-objects', 'rolled-back-manifest', 'missing-object']) assert.ok(v1Names.includes(n), `v1/${n}`);
});

for (const [root, name] of [...names.map((n) => [VECTORS, n]), ...v1Names.map((n) => [V1, n])] as [string, string][]) {
  test(`vector ${root === V1 ? 'v1/' : ''}${name}`, async (t) => {
    const v = JSON.parse(await readFile(join(root, name, 'vector.json'), 'utf8')) as Vector;
    const dir = await mkdtemp(join(tmpdir(), 'coffer-vector-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await cp(join(root, name, 'repo'), join(dir, 'repo'), { recursive: true });
    const run = async () => {
      const repo = await Repository.open(await LocalStorage.open(join(dir, 'repo')), crypto, parseRecoveryKey(v.recoveryKey));
      await restore(repo, new FolderTarget(join(dir, 'out')), { lastSeenSeq: v.lastSeenSeq });
    };
    if (v.expect === 'ok') {
      await run();
      assert.deepEqual(await files(join(dir, 'out')), v.files);
    } else if (v.expect === 'wrong-key') {
      await assert.rejects(run, WrongKeyError);
    } else {
      await assert.rejects(run, (e: unknown) => e instanceof DamagedBackupError && e.reason === v.expect);
      await assert.rejects(stat(join(dir, 'out')), /ENOENT/, 'a failed restore creates nothing');
    }
  });
}

test('the generator reproduces the committed vectors byte for byte', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-vectors-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const made = await generateVectors(dir);
  assert.deepEqual(made, names);
  for (const n of made) assert.deepEqual(await files(join(dir, n)), await files(join(VECTORS, n)), n);
});
