/** Helpers shared by the CLI end-to-end suites: run the real command in a real shell, compare trees. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Repository, SecretKey } from '@coffer/core';
import { shardedPath } from '@coffer/core/adapters';
import { LocalStorage, nodeCryptoProvider } from '@coffer/node';
import { fileURLToPath } from 'node:url';

/* ------------------------------------------------------------------------------------------------
 * Running the command
 * --------------------------------------------------------------------------------------------- */

export const BIN = fileURLToPath(new URL('../../bin/coffer.js', import.meta.url));
export const MiB = 1024 * 1024;
/** spec/format.md §2 and §4.3: chunk and segment sizes written by `coffer init`. */
export const CHUNK = MiB;
export const SEGMENT = 65536;
export const sealedSize = (n: number): number => 40 + n + 16 * Math.max(1, Math.ceil(n / SEGMENT));

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs `script` with `bash -c`; inside it, `coffer` is the real command. */
export function sh(script: string, env: Record<string, string>, options: { input?: string; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `coffer() { node "$COFFER_BIN" "$@"; }\n${script}`], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', COFFER_BIN: BIN, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {}); // EPIPE when the command does not read its input
    child.stdin.end(options.input ?? '');
  });
}

/** A test's own folder: `store/` (the "cloud"), `home/` (COFFER_HOME), `src/` (what is backed up). */
export interface Box {
  dir: string;
  store: string;
  home: string;
  src: string;
}

export async function box(t: TestContext): Promise<Box> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { dir, store: join(dir, 'store'), home: join(dir, 'home'), src: join(dir, 'src') };
}

/** `coffer ARGS…` in a shell, with COFFER_HOME = the box's profile (or `home`). */
export function coffer(b: Box, args: string[], options: { home?: string; input?: string; cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return sh(`coffer ${args.map(quote).join(' ')}`, { HOME: b.dir, COFFER_HOME: options.home ?? b.home, ...options.env }, options);
}

export const show = (r: Run): string => `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout:\n${r.stdout}\n--- stderr:\n${r.stderr}`;

export function exits(r: Run, code: number): Run {
  assert.equal(r.code, code, show(r));
  return r;
}

/** stdout must be exactly one line of JSON. */
export function jsonOut(r: Run): any {
  assert.match(r.stdout, /^[^\n]+\n$/, `stdout is one line\n${show(r)}`);
  return JSON.parse(r.stdout);
}

/** With --json, every line on stderr is a JSON progress record for `verb`. */
export function progressLines(r: Run, verb: string): Record<string, unknown>[] {
  const lines = r.stderr.split('\n');
  assert.equal(lines.pop(), '', `stderr ends with a newline\n${show(r)}`);
  assert.ok(lines.length >= 1, `at least one progress line\n${show(r)}`);
  return lines.map((l) => {
    const p = JSON.parse(l) as Record<string, unknown>;
    assert.equal(p.progress, verb, l);
    for (const k of ['bytesDone', 'bytesTotal', 'filesDone', 'filesTotal']) assert.equal(typeof p[k], 'number', l);
    return p;
  });
}

/** The recovery key printed by `coffer init`: four indented lines of four groups of 4 digits. */
export function recoveryKeyFromInit(stdout: string): string {
  const lines = [...stdout.matchAll(/^ {4}([0-9A-F]{4}(?: [0-9A-F]{4}){3})$/gm)].map((m) => m[1]!);
  assert.equal(lines.length, 4, stdout);
  const key = lines.join(' ');
  assert.match(key, /^[0-9A-F]{4}(?: [0-9A-F]{4}){15}$/);
  return key;
}

export const re = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
export const formatKey = (k: Buffer): string => k.toString('hex').toUpperCase().match(/.{4}/g)!.join(' ');

export interface ProfileFile {
  version: number;
  storage: string;
  backupId: string;
  key: string;
  protection: string;
}
export const readProfile = async (home: string): Promise<ProfileFile> => JSON.parse(await readFile(join(home, 'profile.json'), 'utf8')) as ProfileFile;
export const readState = async (home: string): Promise<{ seen: Record<string, number> }> => JSON.parse(await readFile(join(home, 'state.json'), 'utf8'));

/* ------------------------------------------------------------------------------------------------
 * Trees, chunks and stored objects
 * --------------------------------------------------------------------------------------------- */

export interface Entry {
  path: string;
  kind: 'file' | 'dir' | 'symlink';
  /** mode & 0o7777, octal */
  mode: string;
  /** whole milliseconds since the epoch */
  mtimeMs: string;
  size?: number;
  sha256?: string;
  target?: string;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** Everything below `root` (not `root` itself), sorted by path: kind, mode, mtime (ms), content. */
export async function tree(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(dir, name);
      const st = await lstat(full, { bigint: true });
      const base = { path, mode: (st.mode & 0o7777n).toString(8), mtimeMs: (st.mtimeNs / 1_000_000n).toString() };
      if (st.isDirectory()) {
        out.push({ ...base, kind: 'dir' });
        await walk(full, path);
      } else if (st.isFile()) {
        out.push({ ...base, kind: 'file', size: Number(st.size), sha256: await sha256File(full) });
      } else if (st.isSymbolicLink()) {
        out.push({ ...base, kind: 'symlink', target: await readlink(full) });
      } else {
        throw new Error(`unexpected special file ${full}`);
      }
    }
  };
  await walk(root, '');
  return out;
}

/** The chunks files split into (spec/format.md §3), by SHA-256 of their plaintext, with lengths. */
export async function chunksOf(root: string, entries: Entry[]): Promise<{ total: number; distinct: Map<string, number> }> {
  let total = 0;
  const distinct = new Map<string, number>();
  const buf = Buffer.allocUnsafe(CHUNK);
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    const fh = await open(join(root, ...e.path.split('/')), 'r');
    try {
      for (;;) {
        let n = 0;
        while (n < CHUNK) {
          const { bytesRead } = await fh.read(buf, n, CHUNK - n, null);
          if (bytesRead === 0) break;
          n += bytesRead;
        }
        if (n === 0) break;
        total++;
        distinct.set(createHash('sha256').update(buf.subarray(0, n)).digest('hex'), n);
        if (n < CHUNK) break;
      }
    } finally {
      await fh.close();
    }
  }
  return { total, distinct };
}

/** Stored packs as `packs/<id>` (the local layout shards them as packs/<2 hex>/<id>: spec/format.md §1). */
export function objectNames(store: string): string[] {
  let shards: string[];
  try {
    shards = readdirSync(join(store, 'packs'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: string[] = [];
  for (const s of shards) {
    try {
      for (const n of readdirSync(join(store, 'packs', s))) out.push(`packs/${n}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return out.sort();
}

export const objectFile = (store: string, name: string): string => join(store, ...shardedPath(name).split('/'));
export const manifestsIn = async (store: string): Promise<string[]> => (await readdir(join(store, 'manifests'))).sort();
/** The sequence numbers of the manifests in a store, ascending (a name is `<seq>-<writer>`: §5). */
export const manifestSeqs = async (store: string): Promise<number[]> =>
  (await readdir(join(store, 'manifests')).catch(() => [] as string[])).map((n) => Number(n.split('-')[0])).sort((a, b) => a - b);
/** The manifest file of backup `seq` (the only one with that number). */
export async function manifestFile(store: string, seq: number): Promise<string> {
  const names = (await readdir(join(store, 'manifests'))).filter((n) => Number(n.split('-')[0]) === seq);
  assert.equal(names.length, 1, `one manifest #${seq}: ${names}`);
  return join(store, 'manifests', names[0]!);
}
export const seqName = (seq: number): string => String(seq).padStart(20, '0');

export interface StoredBlob {
  id: string;
  /** `packs/<id>` */
  pack: string;
  offset: number;
  sealedLength: number;
  plainLength: number;
}

/** Every blob the store's index lists, opened with the profile's key (what `coffer` itself reads). */
export async function blobsOf(b: { store: string; home: string }): Promise<StoredBlob[]> {
  const profile = await readProfile(b.home);
  const repo = await Repository.open(await LocalStorage.open(b.store), nodeCryptoProvider, new SecretKey(Buffer.from(profile.key, 'hex')));
  const index = await repo.loadIndex();
  const out: StoredBlob[] = [];
  for (const p of index.packs.values()) for (const blob of p.blobs) out.push({ ...blob, pack: `packs/${p.id}` });
  return out.sort((x, y) => (x.pack < y.pack ? -1 : x.pack > y.pack ? 1 : x.offset - y.offset));
}

export async function writeRandomFile(path: string, size: number): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    const buf = Buffer.allocUnsafe(Math.min(size, 8 * MiB));
    for (let done = 0; done < size; ) {
      const n = Math.min(buf.length, size - done);
      randomFillSync(buf, 0, n);
      await fh.write(buf, 0, n);
      done += n;
    }
  } finally {
    await fh.close();
  }
}

/** A small source tree: a multi-chunk file, a text file, an empty file, an empty folder, a symlink. */
export async function smallTree(src: string): Promise<void> {
  await mkdir(join(src, 'docs'), { recursive: true });
  await mkdir(join(src, 'void'));
  await writeRandomFile(join(src, 'a.bin'), 2 * MiB + 12345);
  await writeFile(join(src, 'docs', 'readme.txt'), `hello ${randomBytes(8).toString('hex')}\n`);
  await writeFile(join(src, 'docs', 'empty.txt'), '');
  await symlink('docs/readme.txt', join(src, 'link'));
}

