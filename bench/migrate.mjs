#!/usr/bin/env node
// `coffer migrate` of a version 1 store (spec/format.md §10.2) beside `cp -r` + `sync` of the same
// store to the same disk (every byte copied once: what a migration cannot beat), with peak RSS.
//   node bench/migrate.mjs [--size 1GiB] [--out bench/out]     (a minute or two at 1 GiB)
//   node bench/migrate.mjs --size 16MiB                         (seconds)
// The version 1 store is written once per size by the test-only version 1 writer
// (packages/core/test/v1-store.ts, built by `tsc -b`) from generated chat data, and copied for each run.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { SecretKey } from '../packages/core/dist/src/index.js';
import { FolderSource, LocalStorage, nodeCryptoProvider } from '../packages/node/dist/src/index.js';
import { backupV1, initV1 } from '../packages/core/dist/test/v1-store.js';
import { sampleTree } from './sample-tree.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { size: { type: 'string', default: '1GiB' }, out: { type: 'string', default: join(root, 'bench/out') } } });
const units = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 };
const m = /^(\d+)(KiB|MiB|GiB)$/.exec(values.size);
if (!m) throw new Error('--size takes a size such as 16MiB or 1GiB');
const bytes = Number(m[1]) * units[m[2]];
const out = resolve(values.out);
const log = (s) => process.stderr.write(s + '\n');
const MiB = 2 ** 20;

/** A version 1 store of the chat data, with the key that opens it, made once per size. */
async function v1Store() {
  const src = await sampleTree(out, values.size, bytes, log);
  const dir = join(out, `migrate-v1-${values.size}`);
  if (existsSync(join(dir, '.complete'))) return { dir, key: (await import(join(dir, '.complete.mjs'))).key };
  log(`writing a version 1 store of ${values.size} in ${dir} ...`);
  await rm(dir, { recursive: true, force: true });
  const key = randomBytes(32).toString('hex');
  const storage = await LocalStorage.open(join(dir, 'store'), { create: true });
  await initV1(storage, nodeCryptoProvider, new SecretKey(Buffer.from(key, 'hex')));
  const source = new FolderSource(src);
  await backupV1(storage, nodeCryptoProvider, new SecretKey(Buffer.from(key, 'hex')), source);
  await source.close();
  await writeFile(join(dir, '.complete.mjs'), `export const key = ${JSON.stringify(key)};\n`);
  await writeFile(join(dir, '.complete'), '');
  return { dir, key };
}

function run(cmd, args, env = {}, fd3 = false) {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe', fd3 ? 'pipe' : 'ignore'], env: { ...process.env, ...env } });
    let o = '';
    let e = '';
    let r = '';
    p.stdout.on('data', (d) => (o += d));
    p.stderr.on('data', (d) => (e += d));
    p.stdio[3]?.on('data', (d) => (r += d));
    p.stdin.end(env.INPUT ?? '');
    p.on('close', (code) => (code === 0 ? res({ stdout: o, stderr: e, rss: r }) : rej(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${(o + e).slice(-500)}`))));
  });
}

const { dir, key } = await v1Store();
const count = (sub) => (existsSync(join(sub)) ? readdirSync(sub, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).length : 0);
const work = join(out, 'migrate-work');
const home = join(out, 'migrate-home');
await rm(work, { recursive: true, force: true });
spawnSync('sync');

// Baseline: every byte of the store copied once, and made durable.
let t0 = performance.now();
spawnSync('cp', ['-r', join(dir, 'store'), work], { stdio: 'inherit' });
spawnSync('sync');
const cpSeconds = (performance.now() - t0) / 1000;
const storeBytes = Number(spawnSync('du', ['-sb', work]).stdout.toString().split('\t')[0]);
const objects = count(join(work, 'data'));

await rm(home, { recursive: true, force: true });
const recovery = key.toUpperCase().match(/.{4}/g).join(' ');
await run(process.execPath, [join(root, 'packages/cli/bin/coffer.js'), 'init', '--storage', work, '--recovery-key-stdin', '--profile', home], { INPUT: recovery + '\n' });
const r = await run(process.execPath, [join(root, 'bench/rss.mjs'), 'cli', 'migrate', '--quiet', '--json', '--profile', home], {}, true);
const result = JSON.parse(r.stdout);
const rss = JSON.parse(r.rss || r.stderr.trim().split('\n').pop());
// The process's own wall time (its start-up aside); the migration flushes what it wrote.
const seconds = rss.seconds;
if (count(join(work, 'data')) !== 0 || result.objectsPacked !== objects) throw new Error(`migration incomplete: ${r.stdout}`);

const rate = (b, s) => `${(b / MiB / s).toFixed(0)} MiB/s`;
console.log(`coffer migrate of a version 1 store of ${(storeBytes / MiB).toFixed(0)} MiB (${objects} objects, ${result.manifestsWritten} backups):`);
console.log(`  migrate:          ${seconds.toFixed(2)} s, ${rate(storeBytes, seconds)}, peak RSS ${rss.maxRssMiB.toFixed(0)} MiB, ${result.packsWritten} packs written`);
console.log(`  cp -r + sync:     ${cpSeconds.toFixed(2)} s, ${rate(storeBytes, cpSeconds)}`);
console.log(`  migrate / (cp -r + sync) speed: ${(cpSeconds / seconds).toFixed(2)}x`);
await rm(work, { recursive: true, force: true });
await rm(home, { recursive: true, force: true });
