import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DamagedBackupError, fromHex, type TreeEntry } from '@coffer/core';
import { compareEntryPaths, decodeManifest, encodeManifest, entryPathProblem, type Manifest } from '#src/manifest.js';

const backupId = fromHex('00112233445566778899aabbccddeeff');
const header = (entries: number) => ({
  type: 'coffer-manifest' as const, version: 1 as const, backupId: '00112233445566778899aabbccddeeff', seq: 3, parentSeq: 2,
  createdAt: '2026-11-26T00:00:00.000Z', entries, files: 0, bytes: 0,
});

const segment = fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }).filter((s) => entryPathProblem(s) === null && !s.includes('/'));

test('manifests round-trip for any UTF-8 names and entries', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.array(segment, { minLength: 1, maxLength: 3 }).map((p) => p.join('/')), { maxLength: 20 }), (paths) => {
      // A path with entries below it is a folder (§5.1: nothing lies below a file or a symlink).
      const entries: TreeEntry[] = paths.sort(compareEntryPaths).map((path, i): TreeEntry => {
        const base = { path, mode: 0o644, mtimeNs: String(1_700_000_000_000_000_000n + BigInt(i)) };
        return paths.some((q) => q.startsWith(path + '/')) ? { ...base, kind: 'dir' } : { ...base, kind: 'file', size: 0, chunks: [] };
      });
      const m: Manifest = { header: { ...header(entries.length), files: entries.filter((e) => e.kind === 'file').length }, entries };
      assert.deepEqual(decodeManifest(encodeManifest(m), 'm', { backupId, seq: 3, chunkSize: 1 << 20 }), m);
    }),
  );
});

test('paths that could escape the restore folder are refused', () => {
  for (const p of ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a/', 'a\u0000b']) {
    assert.ok(entryPathProblem(p), p);
    const e: TreeEntry = { path: p, kind: 'dir', mode: 0o755, mtimeNs: '0' };
    const bytes = encodeManifest({ header: header(1), entries: [e] });
    assert.throws(() => decodeManifest(bytes, 'm', { backupId, seq: 3, chunkSize: 1 << 20 }), (x: unknown) => x instanceof DamagedBackupError && x.reason === 'corrupt');
  }
});

test('a backslash is an ordinary character of a name (legal on Linux)', () => {
  assert.equal(entryPathProblem('back\\slash.txt'), null);
});

test('a manifest from another backup or sequence is misplaced; a bad chunk id or order is corrupt', () => {
  const ok: Manifest = { header: header(0), entries: [] };
  assert.throws(() => decodeManifest(encodeManifest(ok), 'm', { backupId, seq: 4, chunkSize: 1 << 20 }), (x: unknown) => x instanceof DamagedBackupError && x.reason === 'misplaced');
  assert.throws(() => decodeManifest(encodeManifest(ok), 'm', { backupId: new Uint8Array(16), seq: 3, chunkSize: 1 << 20 }), (x: unknown) => x instanceof DamagedBackupError && x.reason === 'misplaced');
  const badChunk: Manifest = { header: header(1), entries: [{ path: 'a', kind: 'file', mode: 420, mtimeNs: '1', size: 1, chunks: ['xyz'] }] };
  assert.throws(() => decodeManifest(encodeManifest(badChunk), 'm', { backupId, seq: 3, chunkSize: 1 << 20 }), /bad file entry/);
  const unordered: Manifest = { header: header(2), entries: [{ path: 'b', kind: 'dir', mode: 1, mtimeNs: '1' }, { path: 'a', kind: 'dir', mode: 1, mtimeNs: '1' }] };
  assert.throws(() => decodeManifest(encodeManifest(unordered), 'm', { backupId, seq: 3, chunkSize: 1 << 20 }), /out of order/);
});

test('parents sort before children', () => {
  const paths = ['a-b', 'a/b', 'a', 'a/b/c', 'ab', 'a.txt'];
  assert.deepEqual(paths.sort(compareEntryPaths), ['a', 'a/b', 'a/b/c', 'a-b', 'a.txt', 'ab']);
});

const manifestOf = (entries: TreeEntry[]): Manifest => ({
  header: { ...header(entries.length), files: entries.filter((e) => e.kind === 'file').length, bytes: entries.reduce((n, e) => n + (e.size ?? 0), 0) },
  entries,
});
const decodes = (entries: TreeEntry[]) => decodeManifest(encodeManifest(manifestOf(entries)), 'm', { backupId, seq: 3, chunkSize: 1 << 20 });
const corrupt = (detail: RegExp) => (x: unknown) => x instanceof DamagedBackupError && x.reason === 'corrupt' && detail.test(x.message);

test('§5.1: nothing may lie below a symlink or a file, whatever the symlink points at', () => {
  for (const target of ['/etc', '../../..', '..', 'sub']) {
    const link: TreeEntry = { path: 'link', kind: 'symlink', mode: 0o777, mtimeNs: '1', target };
    for (const below of [
      { path: 'link/x', kind: 'file', mode: 0o644, mtimeNs: '1', size: 0, chunks: [] },
      { path: 'link/d', kind: 'dir', mode: 0o755, mtimeNs: '1' },
      { path: 'link/d/s', kind: 'symlink', mode: 0o777, mtimeNs: '1', target: 'x' },
    ] as TreeEntry[]) {
      assert.throws(() => decodes([link, below]), corrupt(/below a symlink/), `${target} ${below.path}`);
    }
  }
  const file: TreeEntry = { path: 'f', kind: 'file', mode: 0o644, mtimeNs: '1', size: 0, chunks: [] };
  assert.throws(() => decodes([file, { path: 'f/x', kind: 'dir', mode: 0o755, mtimeNs: '1' }]), corrupt(/below a file/));
  // Below a folder, and below a parent the manifest does not list, is fine.
  assert.equal(decodes([{ path: 'd', kind: 'dir', mode: 0o755, mtimeNs: '1' }, { ...file, path: 'd/f' }, { ...file, path: 'e/f' }]).entries.length, 3);
});

test('§5.1: modes, sizes, chunk lists, symlink targets and counts are checked', () => {
  const f = (over: Partial<TreeEntry>): TreeEntry => ({ path: 'f', kind: 'file', mode: 0o644, mtimeNs: '1', size: 0, chunks: [], ...over });
  assert.throws(() => decodes([f({ mode: 0o10000 })]), corrupt(/bad mode/));
  assert.throws(() => decodes([f({ size: 5, chunks: [] })]), corrupt(/chunk list/));
  assert.throws(() => decodes([f({ size: 1, chunks: ['ab'.repeat(32), 'cd'.repeat(32)] })]), corrupt(/chunk list/));
  assert.throws(() => decodes([f({ size: 2 ** 60, chunks: [] })]), corrupt(/bad file entry/));
  assert.throws(() => decodes([f({ changed: 'yes' as unknown as true })]), corrupt(/changed/));
  const s = (target: string): TreeEntry => ({ path: 's', kind: 'symlink', mode: 0o777, mtimeNs: '1', target });
  assert.throws(() => decodes([s('x'.repeat(4096))]), corrupt(/bad symlink/));
  assert.throws(() => decodes([s('a\u0000b')]), corrupt(/bad symlink/));
  assert.throws(() => decodes([s('\ud800')]), corrupt(/bad symlink/));
  assert.ok(entryPathProblem('a\udc00b'));
  const m = manifestOf([f({ size: 3, chunks: ['ab'.repeat(32)] })]);
  m.header.bytes = 4;
  assert.throws(() => decodeManifest(encodeManifest(m), 'm', { backupId, seq: 3, chunkSize: 1 << 20 }), corrupt(/count or size/));
});
