#!/usr/bin/env node
// Many small files (a phone's stickers, thumbnails and status files): backup and restore of a tree of
// small files (1-8 KiB each), beside restic on the same tree in the same run, with peak RSS.
//   node bench/small-files.mjs [--files 200000] [--out bench/out]      (a few minutes at 200,000)
//   node bench/small-files.mjs --files 2000                              (seconds: what bench:smoke runs)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createCipheriv, createHash } from 'node:crypto';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { files: { type: 'string', default: '200000' }, out: { type: 'string', default: join(root, 'bench/out') } } });
const count = Number(values.files);
if (!Number.isSafeInteger(count) || count < 1) throw new Error('--files takes a number');
const out = resolve(values.out);
const log = (s) => process.stderr.write(s + '\n');
const MiB = 2 ** 20;

/** `count` files of 1-8 KiB in folders of 1000, incompressible, made once with a fixed seed. */
async function smallTree() {
  const dir = join(out, `small-${count}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  log(`generating ${count} small files in ${dir} ...`);
  await rm(dir, { recursive: true, force: true });
  const rng = createCipheriv('aes-256-ctr', createHash('sha256').update('small files').digest(), Buffer.alloc(16));
  const zero = Buffer.alloc(8192);
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `d${String(Math.floor(i / 1000)).padStart(4, '0')}`);
    if (i % 1000 === 0) await mkdir(sub, { recursive: true });
    const size = 1024 + ((i * 2654435761) % 7169); // 1-8 KiB, spread evenly
    bytes += size;
    await writeFile(join(sub, `f${i}.bin`), rng.update(zero.subarray(0, size)));
  }
  await writeFile(join(dir, '.complete'), String(bytes));
  return dir;
}

/** Runs a command through bench/rss.mjs or as a process, with wall time and peak RSS (GNU time). */
function measure(cmd, args, env = {}) {
  return new Promise((res, rej) => {
    const p = spawn('/usr/bin/time', ['-f', '%e %M', cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => {
      const m = /([\d.]+) (\d+)\s*$/.exec(err);
      if (code !== 0 || !m) return rej(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err.slice(-500)}`));
      res({ seconds: Number(m[1]), rssMiB: Number(m[2]) / 1024 });
    });
  });
}

await mkdir(out, { recursive: true });
const src = await smallTree();
spawnSync('sh', ['-c', `find '${src}' -type f -exec cat {} + > /dev/null`]);
const coffer = join(root, 'packages/cli/bin/coffer.js');
const home = join(out, 'small-home');
const store = join(out, 'small-store');
const restored = join(out, 'small-restored');
for (const d of [home, store, restored]) await rm(d, { recursive: true, force: true });
const env = { COFFER_HOME: home };
spawnSync(process.execPath, [coffer, 'init', '--storage', store, '--quiet', '--json'], { env: { ...process.env, ...env } });
log('coffer backup ...');
const cb = await measure(process.execPath, [coffer, 'backup', src, '--quiet'], env);
log('coffer re-backup, nothing changed ...');
const cb2 = await measure(process.execPath, [coffer, 'backup', src, '--quiet'], env);
log('coffer restore ...');
const cr = await measure(process.execPath, [coffer, 'restore', restored, '--quiet'], env);
await rm(restored, { recursive: true, force: true });

const rows = [
  ['coffer backup', `${cb.seconds.toFixed(1)} s`, `${cb.rssMiB.toFixed(0)} MiB`],
  ['coffer re-backup, nothing changed', `${cb2.seconds.toFixed(2)} s`, `${cb2.rssMiB.toFixed(0)} MiB`],
  ['coffer restore', `${cr.seconds.toFixed(1)} s`, `${cr.rssMiB.toFixed(0)} MiB`],
];
const results = { files: count, coffer: { backup: cb, rebackup: cb2, restore: cr } };
if (spawnSync('sh', ['-c', 'command -v restic']).status === 0) {
  const repo = join(out, 'small-restic');
  const renv = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: join(out, 'small-restic-cache') };
  await rm(repo, { recursive: true, force: true });
  spawnSync('restic', ['init', '-q'], { env: { ...process.env, ...renv } });
  log('restic backup ...');
  const rb = await measure('restic', ['backup', '-q', src], renv);
  log('restic restore ...');
  const rr = await measure('restic', ['restore', 'latest', '--target', restored], renv);
  await rm(restored, { recursive: true, force: true });
  await rm(repo, { recursive: true, force: true });
  results.restic = { backup: rb, restore: rr };
  rows.push(['restic backup (peer)', `${rb.seconds.toFixed(1)} s`, `${rb.rssMiB.toFixed(0)} MiB`]);
  rows.push(['restic restore (peer)', `${rr.seconds.toFixed(1)} s`, `${rr.rssMiB.toFixed(0)} MiB`]);
  rows.push(['backup: coffer vs restic', `${(rb.seconds / cb.seconds).toFixed(2)}x`, 'target >= 2x']);
  rows.push(['restore: coffer vs restic', `${(rr.seconds / cr.seconds).toFixed(2)}x`, 'target >= 2x']);
} else {
  rows.push(['restic', 'not installed (apt-get install restic): no peer comparison', '']);
}
rows.push(['peak RSS target', '< 300 MiB', Math.max(cb.rssMiB, cr.rssMiB) < 300 ? 'ok' : 'ABOVE']);
console.log(`\n${count} small files (1-8 KiB), ${new Date().toISOString()}, node ${process.version}\n`);
for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(i === 0 ? 36 : 14)).join(''));
await writeFile(join(out, 'small-results.json'), JSON.stringify(results, null, 2) + '\n');
for (const d of [home, store]) await rm(d, { recursive: true, force: true });
