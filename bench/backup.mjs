#!/usr/bin/env node
// `npm run bench`: backup and restore throughput, peak memory and incremental behaviour, each figure
// beside a baseline measured in the same run (raw AES-256-GCM on one core, a copy of the same tree
// with fsync, restic where installed). Not a test: it takes a few minutes and wants a quiet machine.
//   npm run bench -- [--size 1GiB] [--big 4GiB|0] [--out bench/out]
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../packages/sample/dist/src/index.js';
import { sampleTree } from './sample-tree.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { size: { type: 'string', default: '1GiB' }, big: { type: 'string', default: '4GiB' }, out: { type: 'string', default: join(root, 'bench/out') } } });
const size = parseSize(values.size);
const bigSize = values.big === '0' ? 0 : parseSize(values.big);
const out = resolve(values.out);
const MiB = 2 ** 20;
const rows = [];
const results = {};
const fmt = (bytes, s) => `${(bytes / MiB / s).toFixed(0)} MiB/s`;
const log = (s) => process.stderr.write(s + '\n');

function row(name, value, baseline, ratio, target) {
  const pass = target === undefined ? '' : ratio >= target ? 'ok' : 'BELOW';
  rows.push([name, value, baseline ?? '', ratio === undefined ? '' : `${ratio.toFixed(2)}x`, target === undefined ? '' : `>= ${target}x ${pass}`]);
}

/** Runs `node bench/rss.mjs ...` and returns its report (wall time, peak RSS). */
function measured(args, env = {}) {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [join(root, 'bench/rss.mjs'), ...args], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], env: { ...process.env, ...env } });
    let text = '';
    p.stdio[3].on('data', (d) => (text += d));
    p.on('close', (code) => (code === 0 ? res(JSON.parse(text)) : rej(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

function timed(cmd, args, env = {}) {
  const t = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return (performance.now() - t) / 1000;
}

function rawBaselines(bytes) {
  const buf = randomBytes(MiB);
  const key = randomBytes(32);
  const n = Math.max(64, Math.round(bytes / MiB));
  for (let i = 0; i < 32; i++) createCipheriv('aes-256-gcm', key, randomBytes(12)).update(buf);
  let t = performance.now();
  for (let i = 0; i < n; i++) {
    for (let s = 0; s < 16; s++) {
      const c = createCipheriv('aes-256-gcm', key, randomBytes(12));
      c.update(buf.subarray(s * 65536, (s + 1) * 65536));
      c.final();
      c.getAuthTag();
    }
  }
  const gcm = (n * MiB) / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < n; i++) createHmac('sha256', key).update(buf).digest();
  const hmac = (n * MiB) / ((performance.now() - t) / 1000);
  return { gcm, hmac };
}

async function bigFile(path, bytes) {
  const key = randomBytes(32);
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zero = Buffer.alloc(8 * MiB);
  const ws = createWriteStream(path);
  for (let o = 0; o < bytes; o += zero.length) if (!ws.write(c.update(zero.subarray(0, Math.min(zero.length, bytes - o))))) await new Promise((r) => ws.once('drain', r));
  await new Promise((r) => ws.end(r));
}

await mkdir(out, { recursive: true });
const src = await sampleTree(out, values.size, size, log);
// Warm the page cache so every contender reads the tree from memory.
spawnSync('sh', ['-c', `cat $(find '${src}' -type f) > /dev/null`]);

log('raw AES-256-GCM and HMAC-SHA256 on one core ...');
const raw = rawBaselines(size);
results.rawGcmMiBs = raw.gcm / MiB;
results.rawHmacMiBs = raw.hmac / MiB;
row('raw AES-256-GCM, 1 core (baseline)', fmt(raw.gcm, 1), '', undefined);
row('raw HMAC-SHA256, 1 core (reference)', fmt(raw.hmac, 1), '', undefined);

log('coffer backup and restore, in-memory store ...');
const mem = await measured(['memory', src]);
results.memory = mem;
row('coffer backup -> memory store', fmt(mem.bytes, mem.backupSeconds), 'raw GCM', mem.bytes / mem.backupSeconds / raw.gcm, 0.5);
row('coffer restore <- memory store (verify only)', fmt(mem.bytes, mem.restoreSeconds), 'raw GCM', mem.bytes / mem.restoreSeconds / raw.gcm, 0.5);

log('copy with fsync (the disk limit) ...');
const copyDir = join(out, 'copy');
await rm(copyDir, { recursive: true, force: true });
const copySeconds = timed('sh', ['-c', `cp -r '${src}' '${copyDir}' && sync -f '${copyDir}'`]);
await rm(copyDir, { recursive: true, force: true });
results.copySeconds = copySeconds;
row('cp -r + sync (baseline)', fmt(mem.bytes, copySeconds), '', undefined);

const home = join(out, 'home');
const store = join(out, 'store');
const restored = join(out, 'restored');
await rm(home, { recursive: true, force: true });
await rm(store, { recursive: true, force: true });
await rm(restored, { recursive: true, force: true });
const env = { COFFER_HOME: home };
await measured(['cli', 'init', '--storage', store, '--quiet', '--json'], env);
log('coffer backup to a local folder ...');
const b1 = await measured(['cli', 'backup', src, '--quiet'], env);
row('coffer backup -> local folder', fmt(mem.bytes, b1.seconds), 'cp+sync', copySeconds / b1.seconds, 0.8);
log('coffer restore from a local folder ...');
const r1 = await measured(['cli', 'restore', restored, '--quiet'], env);
row('coffer restore <- local folder', fmt(mem.bytes, r1.seconds), 'cp+sync', copySeconds / r1.seconds, 0.8);
results.disk = { backupSeconds: b1.seconds, restoreSeconds: r1.seconds, backupRssMiB: b1.maxRssMiB, restoreRssMiB: r1.maxRssMiB };
await rm(restored, { recursive: true, force: true });
log('time to first chat (the message databases restored and verified first) ...');
const tt = await measured(['ttfc', restored], env);
await rm(restored, { recursive: true, force: true });
results.ttfc = tt;
rows.push(['time to first chat / whole restore', `${tt.firstChatSeconds?.toFixed(2) ?? 'n/a'} s of ${tt.restoreSeconds.toFixed(2)} s (${tt.databases} databases)`, '', tt.firstChatSeconds === null ? '' : `${((100 * tt.firstChatSeconds) / tt.restoreSeconds).toFixed(1)}%`, `<= 10% ${tt.firstChatSeconds !== null && tt.firstChatSeconds <= 0.1 * tt.restoreSeconds ? 'ok' : 'ABOVE'}`]);

log('re-backup with nothing changed, then with one 5 MiB file added ...');
const b2 = await measured(['cli', 'backup', src, '--quiet'], env);
rows.push(['re-backup, nothing changed (whole command)', `${b2.seconds.toFixed(2)} s`, '', '', `< 0.5 s ${b2.seconds < 0.5 ? 'ok' : 'ABOVE'}`]);
const added = join(src, 'added-5MiB.bin');
await writeFile(added, randomBytes(5 * MiB));
const r = spawnSync(process.execPath, [join(root, 'packages/cli/bin/coffer.js'), 'backup', src, '--json', '--quiet'], { env: { ...process.env, ...env }, encoding: 'utf8' });
const b3 = JSON.parse(r.stdout);
await rm(added);
rows.push(['re-backup, one 5 MiB file added', `${b3.chunksUploaded} chunks, ${(b3.bytesUploaded / MiB).toFixed(2)} MiB uploaded`, '', '', `5 chunks ${b3.chunksUploaded === 5 ? 'ok' : 'NOT 5'}`]);
results.incremental = { unchangedSeconds: b2.seconds, addedChunks: b3.chunksUploaded, addedBytes: b3.bytesUploaded };

const restic = spawnSync('sh', ['-c', 'command -v restic']).status === 0;
if (restic) {
  log('restic backup and restore of the same tree ...');
  const repo = join(out, 'restic');
  const renv = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: join(out, 'restic-cache') };
  await rm(repo, { recursive: true, force: true });
  timed('restic', ['init', '-q'], renv);
  const rb = timed('restic', ['backup', '-q', src], renv);
  await rm(restored, { recursive: true, force: true });
  const rr = timed('restic', ['restore', 'latest', '--target', restored], renv);
  await rm(restored, { recursive: true, force: true });
  await rm(repo, { recursive: true, force: true });
  results.restic = { backupSeconds: rb, restoreSeconds: rr };
  row('restic backup (peer)', fmt(mem.bytes, rb), '', undefined);
  row('coffer backup vs restic backup', '', 'restic', rb / b1.seconds, 3);
  row('restic restore (peer)', fmt(mem.bytes, rr), '', undefined);
  row('coffer restore vs restic restore', '', 'restic', rr / r1.seconds, 2);
} else {
  rows.push(['restic', 'not installed: no peer comparison (apt-get install restic)', '', '', '']);
}

rows.push([`peak RSS, backup of ${values.size}`, `${b1.maxRssMiB.toFixed(0)} MiB`, '', '', `< 150 MiB ${b1.maxRssMiB < 150 ? 'ok' : 'ABOVE'}`]);
rows.push([`peak RSS, restore of ${values.size}`, `${r1.maxRssMiB.toFixed(0)} MiB`, '', '', `< 150 MiB ${r1.maxRssMiB < 150 ? 'ok' : 'ABOVE'}`]);

if (bigSize) {
  log(`one ${values.big} file: backup and restore ...`);
  const bigDir = join(out, 'big');
  await rm(bigDir, { recursive: true, force: true });
  await mkdir(bigDir, { recursive: true });
  await bigFile(join(bigDir, 'video.bin'), bigSize);
  const bhome = join(out, 'big-home');
  const bstore = join(out, 'big-store');
  await rm(bhome, { recursive: true, force: true });
  await rm(bstore, { recursive: true, force: true });
  const benv = { COFFER_HOME: bhome };
  await measured(['cli', 'init', '--storage', bstore, '--quiet', '--json'], benv);
  const bb = await measured(['cli', 'backup', bigDir, '--quiet'], benv);
  const br = await measured(['cli', 'restore', restored, '--quiet'], benv);
  rows.push([`peak RSS, backup of one ${values.big} file`, `${bb.maxRssMiB.toFixed(0)} MiB (${fmt(bigSize, bb.seconds)})`, '', '', `< 150 MiB ${bb.maxRssMiB < 150 ? 'ok' : 'ABOVE'}`]);
  rows.push([`peak RSS, restore of one ${values.big} file`, `${br.maxRssMiB.toFixed(0)} MiB (${fmt(bigSize, br.seconds)})`, '', '', `< 150 MiB ${br.maxRssMiB < 150 ? 'ok' : 'ABOVE'}`]);
  results.big = { bytes: bigSize, backup: bb, restore: br };
  for (const d of [bigDir, bhome, bstore, restored]) await rm(d, { recursive: true, force: true });
}

const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((r) => String(r[i]).length), ['figure', 'value', 'vs', 'ratio', 'target'][i].length));
const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ');
console.log(`\nCoffer benchmark: ${values.size} of generated chat data, ${new Date().toISOString()}, node ${process.version}, ${(await import('node:os')).cpus().length} cores\n`);
console.log(line(['figure', 'value', 'vs', 'ratio', 'target']));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
await writeFile(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
console.log(`\n(raw figures in ${join(out, 'results.json')})`);
for (const d of [home, store]) await rm(d, { recursive: true, force: true });
