#!/usr/bin/env node
// Benchmark (not a test): the vault past one machine.
//   1. Full logins/s and p50/p99 latency for 1, 2 and 3 `coffer vault serve` nodes (each with its
//      own SoftHSM2 token, realm keys copied by the wrapped-key ceremony) over one PostgreSQL, beside
//      one node on the embedded SQLite store, same run, same load generator (logins.mjs's method:
//      KE1 and sealed login-start precomputed; KE3 computed online), clients spread round-robin.
//   2. Record lookup latency at 0 and ROWS synthetic sealed-size rows in PostgreSQL. The rows are
//      inserted directly in SQL (random 900-byte blobs, the size of a sealed record; they are not
//      real records; one INSERT ... SELECT over generate_series with pgcrypto's gen_random_bytes, which
//      is what COPY would do, without a client-side generator), then real and unknown accounts are
//      looked up through PostgresRecordStore.get, and a real one through the whole stack (status).
// Everything (PostgreSQL included) runs on this machine's cores: nodes compete with each other,
// with PostgreSQL and with the load generator.
//
// Ratios are against the first line (one node on SQLite) of the same run.
//
//   npx tsc -b packages/vault && node packages/vault/bench/multinode.mjs [seconds=5] [concurrency=16] [rows=1000000]
//   node packages/vault/bench/multinode.mjs --tiny     (a few seconds, most of it PostgreSQL's initdb: npm run bench:smoke)

import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import pg from 'pg';
import { INSECURE_TEST_ONLY_FAST_KEY_STRETCHING as FAST, protocol, registerBackupKey, vaultStatus } from '@coffer/core/vault';
import { vaultCommand } from '../dist/src/cli.js';
import { PostgresRecordStore } from '../dist/src/store/postgres.js';
import { startPostgres } from '../dist/test/postgres-server.js';
import { peakRssMiB, startServe } from './serve.mjs';

const tiny = process.argv.includes('--tiny');
const args = process.argv.slice(2).filter((a) => a !== '--tiny');
const seconds = tiny ? 0.3 : Number(args[0] ?? 5);
const concurrency = tiny ? 2 : Number(args[1] ?? 16);
const rows = tiny ? 1000 : Number(args[2] ?? 1_000_000);
const lookupCount = tiny ? 100 : 2000;
const statusCount = tiny ? 20 : 300;
await opaque.ready;

const quiet = { write() {} };
async function cli(argv) {
  let out = '';
  let err = '';
  const code = await vaultCommand(argv, { stdout: { write: (s) => (out += s) }, stderr: { write: (s) => (err += s) } });
  if (code !== 0) throw new Error(`coffer vault ${argv.join(' ')}: ${err}`);
  return out;
}

const root = mkdtempSync(join(tmpdir(), 'coffer-bench-mn-'));
const server = await startPostgres();
const children = [];
try {
  await cli(['migrate', '--database', server.url]);
  const dirs = ['a', 'b', 'c'].map((n) => join(root, n));
  await cli(['init', '--data-dir', dirs[0], '--hsm', 'softhsm', '--multi-node']);
  for (const d of dirs.slice(1)) {
    await cli(['hsm', 'transport-key', '--data-dir', d, '--out', d + '.t.json']);
    // One machine, one operator: the fingerprint comes from the file (docs/operating.md §1.4 does it properly).
    const fingerprint = JSON.parse(readFileSync(d + '.t.json', 'utf8')).fingerprint;
    await cli(['hsm', 'export-wrapped', '--data-dir', dirs[0], '--to', d + '.t.json', '--fingerprint', fingerprint, '--out', d + '.b.json']);
    await cli(['hsm', 'import-wrapped', '--data-dir', d, '--in', d + '.b.json']);
  }
  const sqliteDir = join(root, 'sqlite');
  await cli(['init', '--data-dir', sqliteDir, '--hsm', 'softhsm']);

  async function startNode(dir, database) {
    const node = await startServe(dir, database ? ['--database', database] : []);
    children.push(node);
    return node;
  }
  const stop = (n) => n.stop();

  async function run(label, nodes, realmPublicKey, tokenDir, prefix) {
    const realm = protocol.parseRealmPublicKey(realmPublicKey);
    const accounts = [];
    for (let i = 0; i < concurrency; i++) {
      const account = `${prefix}-${i}`;
      const token = JSON.parse(await cli(['token', '--data-dir', tokenDir, '--account', account, '--json'])).token;
      await registerBackupKey({ vaultUrl: nodes[i % nodes.length].url, realmPublicKey, token, password: 'pw', backupKey: new Uint8Array(32), keyStretching: FAST, maxAttempts: 100 });
      accounts.push({ account, token });
    }
    let rr = 0;
    const post = async (token, body) => {
      const res = await fetch(new URL(protocol.VAULT_PATH, nodes[rr++ % nodes.length].url), { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body });
      return new Uint8Array(await res.arrayBuffer());
    };
    const precompute = async (a) => {
      const s = opaque.client.startLogin({ password: 'pw' });
      const sealed = await protocol.sealRequest(realm, { v: 1, op: 'login-start', id: protocol.b64u(protocol.randomBytes(16)), ts: Date.now(), realm: realm.realmIdText, account: a.account, body: { startLoginRequest: s.startLoginRequest } });
      return { s, sealed };
    };
    const latencies = [];
    let done = 0;
    const deadline = performance.now() + seconds * 1000;
    await Promise.all(
      accounts.map(async (a) => {
        const ids = protocol.opaqueIdentifiers(realm.realmIdText, a.account);
        let next = await precompute(a);
        while (performance.now() < deadline) {
          const cur = next;
          const t0 = performance.now();
          const r1 = await protocol.openResponse(cur.sealed.context, cur.sealed.enc, await post(a.token, cur.sealed.body));
          if (r1.status !== 'ok') throw new Error(`login-start: ${r1.status}`);
          const f = opaque.client.finishLogin({ clientLoginState: cur.s.clientLoginState, loginResponse: r1.loginResponse, password: 'pw', identifiers: ids, keyStretching: FAST });
          const sealed2 = await protocol.sealRequest(realm, { v: 1, op: 'login-finish', id: protocol.b64u(protocol.randomBytes(16)), ts: Date.now(), realm: realm.realmIdText, account: a.account, body: { ticket: r1.ticket, finishLoginRequest: f.finishLoginRequest, action: 'recover' } });
          const r2 = await protocol.openResponse(sealed2.context, sealed2.enc, await post(a.token, sealed2.body));
          if (r2.status !== 'ok') throw new Error(`login failed: ${r2.status}`);
          latencies.push(performance.now() - t0);
          done++;
          next = await precompute(a);
        }
      }),
    );
    latencies.sort((x, y) => x - y);
    const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(1);
    const rate = done / seconds;
    baseline ??= rate;
    const peak = nodes.map((n) => n.peakRssMiB());
    console.log(
      `${label.padEnd(28)} ${rate.toFixed(0).padStart(5)} logins/s (${(rate / baseline).toFixed(2)}x)   p50 ${q(0.5).padStart(6)} ms   p99 ${q(0.99).padStart(6)} ms   (${done} logins; peak RSS per node ${peak.map((m) => m.toFixed(0)).join('/')} MiB)`,
    );
    return rate;
  }
  let baseline;

  console.log(`${tiny ? 'TINY run (numbers mean little): ' : ''}machine: ${cpus().length} cores; ${seconds} s per run, concurrency ${concurrency}, clients round-robin over the nodes`);
  const realmPublicKey = JSON.parse(readFileSync(join(dirs[0], 'realm.json'), 'utf8')).realmPublicKey;
  {
    const sqliteNode = await startNode(sqliteDir, null);
    const key = JSON.parse(readFileSync(join(sqliteDir, 'realm.json'), 'utf8')).realmPublicKey;
    await run('1 node, SQLite (embedded)', [sqliteNode], key, sqliteDir, 'sq');
    await stop(sqliteNode);
  }
  for (const n of [1, 2, 3]) {
    const nodes = [];
    for (let i = 0; i < n; i++) nodes.push(await startNode(dirs[i], server.url));
    await run(`${n} node${n > 1 ? 's' : ' '}, PostgreSQL`, nodes, realmPublicKey, dirs[0], `pg${n}`);
    for (const x of nodes) await stop(x);
  }

  // 2. Lookup latency with ROWS sealed-size rows.
  const lookups = async (label) => {
    const s = await PostgresRecordStore.open({ url: server.url });
    const real = (await s.get('pg3-0')) ? Array.from({ length: concurrency }, (_, i) => `pg3-${i}`) : [];
    const lat = [];
    for (let i = 0; i < lookupCount; i++) {
      const acct = i % 2 === 0 ? real[i % real.length] : `missing-${randomBytes(6).toString('hex')}`;
      const t0 = performance.now();
      await s.get(acct);
      lat.push(performance.now() - t0);
    }
    await s.close();
    const node = await startNode(dirs[0], server.url);
    const token = JSON.parse(await cli(['token', '--data-dir', dirs[0], '--account', 'pg3-0', '--json'])).token;
    const full = [];
    for (let i = 0; i < statusCount; i++) {
      const t0 = performance.now();
      await vaultStatus({ vaultUrl: node.url, realmPublicKey, token, keyStretching: FAST });
      full.push(performance.now() - t0);
    }
    await stop(node);
    const q = (a, p) => [...a].sort((x, y) => x - y)[Math.floor(p * a.length)].toFixed(2);
    console.log(`${label.padEnd(28)} store.get p50 ${q(lat, 0.5)} ms p99 ${q(lat, 0.99)} ms;  full status request p50 ${q(full, 0.5)} ms p99 ${q(full, 0.99)} ms`);
  };
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  const count = async () => Number((await c.query('SELECT count(*) AS n FROM vault_records')).rows[0].n);
  await lookups(`${await count()} rows`);
  const t0 = performance.now();
  await c.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
  const batch = 250_000;
  for (let done = 0; done < rows; done += batch) {
    const n = Math.min(batch, rows - done);
    await c.query("INSERT INTO vault_records (account, version, sealed) SELECT 'synthetic-' || g, 1, gen_random_bytes(900) FROM generate_series($1::int, $2::int) g", [done, done + n - 1]);
  }
  await c.query('ANALYZE vault_records');
  const size = (await c.query("SELECT pg_size_pretty(pg_total_relation_size('vault_records')) AS s")).rows[0].s;
  console.log(`inserted ${rows} synthetic sealed-size rows in ${((performance.now() - t0) / 1000).toFixed(1)} s (table + index ${size})`);
  await lookups(`${await count()} rows`);
  await c.end();
  console.log(`peak memory of this load generator: ${peakRssMiB().toFixed(0)} MiB`);
} finally {
  await Promise.all(children.map((n) => n.stop()));
  server.destroy();
  rmSync(root, { recursive: true, force: true });
}
