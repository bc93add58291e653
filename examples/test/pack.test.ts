/**
 * What npm users get: `npm pack` of each package, installed into a clean project outside this
 * repository, runs the package's example there. Offline: the packages come from their tarballs and
 * every other dependency from the npm cache that `npm ci` filled, at the versions of this
 * repository's package-lock.json. Install scripts do not run (they would compile better-sqlite3
 * and pkcs11js for minutes); the native builds `npm ci` made here are copied in instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { examples } from './run.js';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The published packages, and the example that shows each (examples/README.md). */
const PACKAGES: Record<string, { dir: string; example: string }> = {
  '@coffer/core': { dir: 'packages/core', example: 'node-backup-restore.mjs' },
  '@coffer/node': { dir: 'packages/node', example: 'node-backup-restore.mjs' },
  '@coffer/http': { dir: 'packages/http', example: 'browser/' },
  '@coffer/vault': { dir: 'packages/vault', example: 'vault-password.mjs' },
  '@coffer/cli': { dir: 'packages/cli', example: 'cli.sh' },
  '@coffer/sample': { dir: 'packages/sample', example: 'cli.sh' },
};
/** What the examples need beside the packages: the browser example bundles its page. */
const EXTRA = ['esbuild'];
/** Dependencies with native code built by their install scripts. */
const NATIVE = ['better-sqlite3', 'pkcs11js'];

interface LockEntry {
  version?: string;
  resolved?: string;
  link?: boolean;
  dev?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  [k: string]: unknown;
}

/** npm, without the settings of an `npm test` that runs us (its local prefix is this repository). */
function npmEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_cafile', 'npm_config_registry']);
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.has(k.toLowerCase())));
}

/**
 * The lockfile of a project that depends on `deps` (name -> spec): the tarballs for our packages,
 * and for everything else the entries of this repository's lockfile that those packages reach.
 */
function lockFor(rootLock: { packages: Record<string, LockEntry> }, deps: Record<string, string>, tarballs: Record<string, { manifest: LockEntry }>) {
  const from = rootLock.packages;
  const packages: Record<string, LockEntry> = { '': { name: 'coffer-pack-test', dependencies: deps } };
  const seen = new Set<string>();
  /** Node's lookup from `at` (a lockfile path) upward, as npm lays packages out. */
  const locate = (at: string, name: string): string | undefined => {
    for (let base = at; ; base = base.slice(0, Math.max(0, base.lastIndexOf('/node_modules/')))) {
      const path = `${base ? base + '/' : ''}node_modules/${name}`;
      if (from[path] && !from[path].link) return path;
      if (!base) return undefined;
    }
  };
  const visit = (at: string, entry: LockEntry) => {
    const wanted = { ...entry.dependencies, ...entry.optionalDependencies };
    for (const peer of Object.keys(entry.peerDependencies ?? {})) if (locate(at, peer)) wanted[peer] = entry.peerDependencies![peer]!;
    for (const name of Object.keys(wanted)) {
      if (name in tarballs) continue;
      const path = locate(at, name);
      if (!path) {
        assert.ok(entry.optionalDependencies?.[name] || entry.peerDependencies?.[name], `${at || 'the project'}: ${name} is not in package-lock.json`);
        continue;
      }
      if (seen.has(path)) continue;
      seen.add(path);
      const { dev, ...rest } = from[path]!;
      void dev;
      packages[path] = rest;
      visit(path, from[path]!);
    }
  };
  for (const [name, t] of Object.entries(tarballs)) {
    const path = `node_modules/${name}`;
    packages[path] = { ...t.manifest, resolved: deps[name]! };
    visit(path, t.manifest);
  }
  visit('', { dependencies: Object.fromEntries(EXTRA.map((n) => [n, deps[n]!])) });
  return { name: 'coffer-pack-test', lockfileVersion: 3, requires: true, packages };
}

test('every package imports at run time only what its package.json lists in dependencies (esbuild in the web server, ...)', () => {
  const IMPORT = /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"\n]+)['"]|^\s*import\s*['"]([^'"\n]+)['"]|\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/gm;
  const dirs = [...Object.values(PACKAGES).map((p) => p.dir), 'apps/web'];
  let seen = 0;
  for (const dir of dirs) {
    const pkg = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as { name: string } & Record<'dependencies' | 'optionalDependencies' | 'peerDependencies', Record<string, string> | undefined>;
    const listed = new Set([pkg.name, ...Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies })]);
    const built = join(ROOT, dir, 'dist', 'src');
    for (const file of readdirSync(built, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js'))) {
      for (const m of readFileSync(join(built, file), 'utf8').matchAll(IMPORT)) {
        const spec = (m[1] ?? m[2] ?? m[3])!;
        if (/^(\.|node:|#)/.test(spec) || builtinModules.includes(spec)) continue;
        seen++;
        const name = spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
        assert.ok(listed.has(name), `${dir}/dist/src/${file} imports ${spec}, which is not in the dependencies of ${pkg.name}`);
      }
    }
  }
  assert.ok(seen > 50, `the check saw the imports (${seen})`);
});

test('npm pack: each package installs from its tarball into a clean project, offline, and runs its example there', { timeout: 180_000 }, async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'coffer-pack-'));
  try {
    const started = Date.now();
    const tarballDir = join(work, 'tarballs');
    await mkdir(tarballDir);
    const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tarballDir, ...Object.values(PACKAGES).flatMap((p) => ['-w', p.dir])], {
      cwd: ROOT, env: npmEnv(), maxBuffer: 64 * 2 ** 20,
    });
    const packed = JSON.parse(stdout) as { name: string; filename: string; files: { path: string }[] }[];
    assert.deepEqual(packed.map((p) => p.name).sort(), Object.keys(PACKAGES).sort());

    // What each tarball holds: the build, its types, the license and the README; no tests.
    const rootLicense = await readFile(join(ROOT, 'LICENSE'));
    const tarballs: Record<string, { manifest: LockEntry }> = {};
    for (const p of packed) {
      const files = p.files.map((f) => f.path);
      const manifest = JSON.parse(await readFile(join(ROOT, PACKAGES[p.name]!.dir, 'package.json'), 'utf8')) as Record<string, unknown> & LockEntry;
      for (const field of ['files', 'types', 'repository', 'engines', 'license']) assert.ok(manifest[field], `${p.name}: package.json has no ${field}`);
      assert.deepEqual(manifest['engines'], { node: '>=20' }, p.name);
      for (const f of ['package.json', 'README.md', 'LICENSE', manifest['main'] as string, manifest['types'] as string, ...Object.values((manifest['bin'] as Record<string, string>) ?? {})]) {
        assert.ok(files.includes(f), `${p.name}: the tarball lacks ${f}`);
      }
      assert.deepEqual(files.filter((f) => /(^|\/)test\//.test(f)), [], `${p.name}: the tarball holds tests`);
      const { name, version, license, dependencies, optionalDependencies, peerDependencies, bin, engines } = manifest;
      tarballs[p.name] = { manifest: JSON.parse(JSON.stringify({ name, version, license, dependencies, optionalDependencies, peerDependencies, bin, engines })) };
    }

    // The project: the tarballs, and what the examples need beside them, at this repository's versions.
    const project = join(work, 'project');
    await mkdir(project);
    const rootLock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
    const deps: Record<string, string> = {};
    for (const p of packed) deps[p.name] = `file:../tarballs/${p.filename}`;
    for (const name of EXTRA) deps[name] = rootLock.packages[`node_modules/${name}`]!.version!;
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'coffer-pack-test', private: true, type: 'module', dependencies: deps }, null, 2));
    await writeFile(join(project, 'package-lock.json'), JSON.stringify(lockFor(rootLock, deps, tarballs), null, 2));
    await run('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: project, env: npmEnv(), maxBuffer: 64 * 2 ** 20 });
    for (const name of NATIVE) {
      const to = join(project, 'node_modules', name);
      if (!existsSync(to)) continue;
      const release = join(ROOT, 'node_modules', name, 'build', 'Release');
      await mkdir(join(to, 'build', 'Release'), { recursive: true });
      for (const f of (await readdir(release)).filter((f) => f.endsWith('.node'))) await copyFile(join(release, f), join(to, 'build', 'Release', f));
    }
    for (const name of Object.keys(PACKAGES)) {
      assert.deepEqual(await readFile(join(project, 'node_modules', name, 'LICENSE')), rootLicense, `${name}: the installed LICENSE`);
    }
    // Each package, as the project's code imports it, is the installed copy (not this repository's).
    const specifiers = [...Object.keys(PACKAGES), '@coffer/core/vault', '@coffer/http/server'];
    const resolved = await run(process.execPath, ['--input-type=module', '-e', `for (const s of ${JSON.stringify(specifiers)}) console.log(import.meta.resolve(s))`], { cwd: project });
    for (const url of resolved.stdout.trim().split('\n')) assert.ok(fileURLToPath(url).startsWith(join(project, 'node_modules') + '/'), url);
    t.diagnostic(`packed and installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // The examples, copied into the project, run against the installed packages only.
    await cp(join(ROOT, 'examples'), join(project, 'examples'), { recursive: true, filter: (src) => !/[/\\](test|dist)$|tsconfig\.json$/.test(src) });
    for (const example of new Set(Object.values(PACKAGES).map((p) => p.example))) {
      const users = Object.keys(PACKAGES).filter((n) => PACKAGES[n]!.example === example);
      await t.test(`${users.join(', ')}: examples/${example}`, () => examples[example]!(project));
    }
    t.diagnostic(`in ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
