import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compareEntryPaths, DamagedBackupError, decodeManifest, encodeManifest, entryPathProblem, fromHex, type Manifest, type TreeEntry } from '@coffer/core';

const backupId = fromHex('00112233445566778899aabbccddeeff');
const header = (entries: number) => ({
  type: 'coffer-manifest' as const, version: 1 as const, backupId: '00112233445566778899aabbccddeeff', seq: 3, parentSeq: 2,
  createdAt: '2026-11-26T00:00:00.000Z', entries, files: 0, bytes: 0,
});

const segment = fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }).filter((s) => entryPathProblem(s) === null && !s.includes('/'));

test('manifests round-trip for any UTF-8 names and entries', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.array(segment, { minLength: 1, maxLength: 3 }).map((p) => p.join('/')), { maxLength: 20 }), (paths) => {
      const entries: TreeEntry[] = paths.sort(compareEntryPaths).map((path, i) => ({
        path, kind: 'file', mode: 0o644, mtimeNs: String(1_700_000_000_000_000_000n + BigInt(i)), size: 0, chunks: [],
      }));
      const m: Manifest = { header: header(entries.length), entries };
      assert.deepEqual(decodeManifest(encodeManifest(m), 'm', { backupId, seq: 3 }), m);
    }),
  );
});

test('paths that could escape the restore folder are refused', () => {
  for (const p of ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a/', 'a\u0000b']) {
    assert.ok(entryPathProblem(p), p);
    const e: TreeEntry = { path: p, kind: 'dir', mode: 0o755, mtimeNs: '0' };
    const bytes = encodeManifest({ header: header(1), entries: [e] });
    assert.throws(() => decodeManifest(bytes, 'm', { backupId, seq: 3 }), (x: unknown) => x instanceof DamagedBackupError && x.reason === 'corrupt');
  }
});

test('a backslash is an ordinary character of a name (legal on Linux)', () => {
  assert.equal(entryPathProblem('back\\slash.txt'), null);
});

test('a manifest from another backup or sequence is misplaced; a bad chunk id or order is corrupt', () => {
  const ok: Manifest = { header: header(0), entries: [] };
  assert.throws(() => decodeManifest(encodeManifest(ok), 'm', { backupId, seq: 4 }), (x: unknown) => x instanceof DamagedBackupError && x.reason === 'misplaced');
  assert.throws(() => decodeManifest(encodeManifest(ok), 'm', { backupId: new Uint8Array(16), seq: 3 }), (x: unknown) => x instanceof DamagedBackupError && x.reason === 'misplaced');
  const badChunk: Manifest = { header: header(1), entries: [{ path: 'a', kind: 'file', mode: 420, mtimeNs: '1', size: 1, chunks: ['xyz'] }] };
  assert.throws(() => decodeManifest(encodeManifest(badChunk), 'm', { backupId, seq: 3 }), /bad file entry/);
  const unordered: Manifest = { header: header(2), entries: [{ path: 'b', kind: 'dir', mode: 1, mtimeNs: '1' }, { path: 'a', kind: 'dir', mode: 1, mtimeNs: '1' }] };
  assert.throws(() => decodeManifest(encodeManifest(unordered), 'm', { backupId, seq: 3 }), /out of order/);
});

test('parents sort before children', () => {
  const paths = ['a-b', 'a/b', 'a', 'a/b/c', 'ab', 'a.txt'];
  assert.deepEqual(paths.sort(compareEntryPaths), ['a', 'a/b', 'a/b/c', 'a-b', 'a.txt', 'ab']);
});
