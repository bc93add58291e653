#!/usr/bin/env node
// Backup and restore throughput to an S3 server (s3rver) and a WebDAV server (webdav-server v2), each
// on loopback in a process of its own, beside the local-folder figure from the same run. Every
// figure is the whole `coffer backup` / `coffer restore` command on generated chat data.
//   node bench/cloud.mjs [--size 256MiB] [--faults] [--servers] [--out bench/out]
// --servers also runs the servers people run, from Debian's packages (scripts/setup.sh; Ceph with
// `scripts/setup.sh interop`): Apache mod_dav, nginx dav-ext, rclone serve webdav, Ceph radosgw.
// `--size 8MiB` is the quick check that the benchmark still runs.
// --faults also runs S3 and WebDAV through the fault-injecting proxy of the tests (dropped
// connections, lost answers, stalls, 500 and 503 at random, seeded) and checks that the restore is
// byte-identical: the 500 MiB run is `node bench/cloud.mjs --size 500MiB --faults`.
// Needs `npx tsc -b` first (it uses packages/node/dist/test/ for the servers and the proxy).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../packages/sample/dist/src/index.js';
import { sampleTree } from './sample-tree.mjs';
import { faultProxy, startServer } from '../packages/node/dist/test/servers.js';
import { startCeph, startDav } from '../packages/node/dist/test/real-servers.js';
import { digest } from '../packages/node/dist/test/trees.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: { size: { type: 'string', default: '256MiB' }, faults: { type: 'boolean', default: false }, servers: { type: 'boolean', default: false }, out: { type: 'string', default: join(root, 'bench/out') } },
});
const size = parseSize(values.size);
const out = resolve(values.out);
const MiB = 2 ** 20;
const log = (s) => process.stderr.write(s + '\n');
const rate = (bytes, s) => `${(bytes / MiB / s).toFixed(0)} MiB/s`;

/** Runs one coffer command in bench/rss.mjs and returns its wall time and peak RSS. */
function measured(args, env) {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [join(root, 'bench/rss.mjs'), 'cli', ...args], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], env: { ...process.env, ...env } });
    let text = '';
    p.stdio[3].on('data', (d) => (text += d));
    p.on('close', (code) => (code === 0 ? res(JSON.parse(text)) : rej(new Error(`coffer ${args.join(' ')} exited ${code}`))));
  });
}

await mkdir(out, { recursive: true });
const src = await sampleTree(out, values.size, size, log);
async function treeBytes(dir) {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) n += await treeBytes(join(dir, e.name));
    else if (e.isFile()) n += (await stat(join(dir, e.name))).size;
  }
  return n;
}
const bytes = await treeBytes(src);

const work = join(out, 'cloud');
await rm(work, { recursive: true, force: true });
const [s3, dav] = await Promise.all([startServer('s3', join(work, 's3')), startServer('webdav', join(work, 'dav'))]);
const creds = {
  AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', COFFER_WEBDAV_USER: 'alice', COFFER_WEBDAV_PASSWORD: 'wonderland',
};
const s3Url = (port, p) => `s3://coffer/${p}?endpoint=http://127.0.0.1:${port}&region=us-east-1&path-style=1`;
const davUrl = (port, p) => `webdav://127.0.0.1:${port}/${p}`;
const srcDigest = values.faults || values.servers ? await digest(src) : null;
const rows = [];
let local;

/** Requests per GiB of chat data, counted by a proxy in front of the server (no faults). */
const perGiB = (n) => Math.round(n / (bytes / 2 ** 30));

async function run(name, storage, check = false, serverEnv = {}, proxy = null) {
  const env = { ...creds, ...serverEnv, COFFER_HOME: join(work, `home-${name}`) };
  const restored = join(work, `restored-${name}`);
  await measured(['init', '--storage', storage, '--quiet', '--json'], env);
  log(`coffer backup -> ${name} ...`);
  const before = proxy?.log.length ?? 0;
  const b = await measured(['backup', src, '--quiet'], env);
  const backupRequests = (proxy?.log.length ?? 0) - before;
  log(`coffer restore <- ${name} ...`);
  const r = await measured(['restore', restored, '--quiet'], env);
  const restoreRequests = (proxy?.log.length ?? 0) - before - backupRequests;
  if (check) {
    const same = JSON.stringify(await digest(restored)) === JSON.stringify(srcDigest);
    if (!same) throw new Error(`${name}: the restored tree differs from the source`);
  }
  await rm(restored, { recursive: true, force: true });
  if (name === 'local folder') local = { b, r };
  const vs = (x, base) => (base ? `${(base.seconds / x.seconds).toFixed(2)}x` : '');
  rows.push([
    name, rate(bytes, b.seconds), vs(b, local?.b), rate(bytes, r.seconds), vs(r, local?.r), `${Math.round(b.maxRssMiB)} / ${Math.round(r.maxRssMiB)} MiB`,
    proxy ? `${perGiB(backupRequests)} / ${perGiB(restoreRequests)}` : '', check ? 'byte-identical' : '',
  ]);
}

/** The same server behind a proxy that only counts requests. */
async function counted(name, server, url) {
  const proxy = await faultProxy(server.port, {}, 1);
  try {
    await run(name, url(proxy.port, 'bench'), false, {}, proxy);
  } finally {
    await proxy.close();
  }
}

try {
  await run('local folder', join(work, 'store'));
  await counted('S3 (s3rver)', s3, s3Url);
  await counted('WebDAV (webdav-server)', dav, davUrl);
  if (values.servers) {
    for (const kind of ['apache', 'nginx', 'rclone']) {
      const server = await startDav(kind);
      try {
        await run(`WebDAV (${server.name})`, server.url('bench'), true, server.env);
      } finally {
        await server.close();
      }
    }
    if (existsSync('/usr/bin/radosgw')) {
      const server = await startCeph();
      try {
        await run(`S3 (${server.name})`, server.url('bench'), true, server.env);
      } finally {
        await server.close();
      }
    } else log('Ceph is not installed (scripts/setup.sh interop): no radosgw row');
  }
  if (values.faults) {
    const rates = { '500': 0.02, '503': 0.02, 'drop-request': 0.01, 'drop-response': 0.01, 'lose-response': 0.01, stall: 0.002 };
    for (const [name, server, url] of [['S3 through faults', s3, s3Url], ['WebDAV through faults', dav, davUrl]]) {
      const proxy = await faultProxy(server.port, rates, 2026);
      try {
        await run(name, url(proxy.port, 'faults'), true);
        const injected = proxy.log.filter((l) => l.fault !== 'ok').length;
        rows[rows.length - 1][7] += `, ${injected} faults in ${proxy.log.length} requests`;
      } finally {
        await proxy.close();
      }
    }
  }
} finally {
  await Promise.all([s3.stop(), dav.stop()]);
}

const head = ['store', 'backup', 'vs local', 'restore', 'vs local', 'peak RSS b/r', 'requests/GiB b/r', 'check'];
const all = [head, ...rows];
const w = head.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
console.log(`\ncoffer to cloud stores on loopback: ${values.size} of chat data (${(bytes / MiB).toFixed(0)} MiB), ${new Date().toISOString().slice(0, 10)}, node ${process.version}\n`);
for (const r of all) console.log(r.map((c, i) => String(c).padEnd(w[i])).join('  '));
await rm(work, { recursive: true, force: true });
