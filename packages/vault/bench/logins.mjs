#!/usr/bin/env node
// Benchmark (not a test): full server-side logins through the whole stack (HTTP, channel, token,
// OPAQUE, SoftHSM2 seal/unseal, durable SQLite counter writes), beside the bare OPAQUE server side
// (startLogin + finishLogin) measured in the same run. The figure that matters is logins per
// server CPU-second against bare OPAQUE logins per CPU-second (target >= 0.5x): it does not
// depend on how many cores the load generator leaves the server. Clients are precomputed as far
// as the protocol allows (KE1 and the sealed login-start); KE3 depends on KE2 and is computed online.
//
// The server runs with its per-account and per-address rate limits off (--account-rate 0
// --address-rate 0): each client logs in back to back on one account, which the default
// per-account limit (60/min, burst 20) would answer with 429 after ten logins.
//
//   npx tsc -b packages/vault && node packages/vault/bench/logins.mjs [seconds=5] [concurrency=16]
//   node packages/vault/bench/logins.mjs --tiny          (about a second: npm run bench:smoke)

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as opaque from '@serenity-kit/opaque';
import { INSECURE_TEST_ONLY_FAST_KEY_STRETCHING as FAST, protocol, registerBackupKey } from '@coffer/core/vault';
import { vaultCommand } from '../dist/src/cli.js';
import { peakRssMiB, procStat, startServe } from './serve.mjs';

const tiny = process.argv.includes('--tiny');
const args = process.argv.slice(2).filter((a) => a !== '--tiny');
const seconds = tiny ? 1 : Number(args[0] ?? 5);
const concurrency = tiny ? 2 : Number(args[1] ?? 16);
const bareLogins = tiny ? 50 : 400;
await opaque.ready;

// 1. Bare OPAQUE server side (startLogin + finishLogin) on one core, in CPU time: the baseline.
function bareOpaque(n) {
  const setup = opaque.server.createSetup();
  const ids = { client: 'u', server: 'realm' };
  const s = opaque.client.startRegistration({ password: 'pw' });
  const r = opaque.server.createRegistrationResponse({ serverSetup: setup, userIdentifier: 'u', registrationRequest: s.registrationRequest });
  const rec = opaque.client.finishRegistration({ password: 'pw', registrationResponse: r.registrationResponse, clientRegistrationState: s.clientRegistrationState, identifiers: ids, keyStretching: FAST }).registrationRecord;
  const ke1s = Array.from({ length: n }, () => opaque.client.startLogin({ password: 'pw' }));
  const cpuMs = (f) => {
    const c = process.cpuUsage();
    const out = f();
    const d = process.cpuUsage(c);
    return [out, (d.user + d.system) / 1000];
  };
  const [starts, ms1] = cpuMs(() => ke1s.map((k) => opaque.server.startLogin({ serverSetup: setup, registrationRecord: rec, startLoginRequest: k.startLoginRequest, userIdentifier: 'u', identifiers: ids })));
  const ke3s = ke1s.map((k, i) => opaque.client.finishLogin({ clientLoginState: k.clientLoginState, loginResponse: starts[i].loginResponse, password: 'pw', identifiers: ids, keyStretching: FAST }).finishLoginRequest);
  const [, ms2] = cpuMs(() => starts.map((st, i) => opaque.server.finishLogin({ serverLoginState: st.serverLoginState, finishLoginRequest: ke3s[i], identifiers: ids })));
  return (n / (ms1 + ms2)) * 1000;
}
const bare = bareOpaque(bareLogins);
const mark = (what) => process.env.BENCH_TRACE && console.error(`${(performance.now() / 1000).toFixed(2)} s ${what}`);
mark('bare done');

// 2. The whole stack against a real `coffer vault serve` process.
const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-'));
const quiet = { write() {} };
let out = '';
mark('start');
await vaultCommand(['init', '--data-dir', dir, '--hsm', 'auto', '--json'], { stdout: { write: (s) => (out += s) }, stderr: quiet });
const { realmPublicKey, hsm } = JSON.parse(out);
const server = await startServe(dir);
const { child, url } = server;
try {
  mark('server listening');
  const realm = protocol.parseRealmPublicKey(realmPublicKey);
  const accounts = [];
  for (let i = 0; i < concurrency; i++) {
    let tok = '';
    await vaultCommand(['token', '--data-dir', dir, '--account', `bench-${i}`, '--json'], { stdout: { write: (s) => (tok += s) }, stderr: quiet });
    const token = JSON.parse(tok).token;
    await registerBackupKey({ vaultUrl: url, realmPublicKey, token, password: 'pw', backupKey: new Uint8Array(32), keyStretching: FAST, maxAttempts: 100 });
    accounts.push({ account: `bench-${i}`, token });
  }

  async function post(token, sealed) {
    const res = await fetch(new URL(protocol.VAULT_PATH, url), { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: sealed.body });
    const body = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) throw new Error(`the vault answered HTTP ${res.status}: ${new TextDecoder().decode(body)}`);
    return protocol.openResponse(sealed.context, sealed.enc, body);
  }
  const request = (a, op, body) => protocol.sealRequest(realm, { v: 1, op, id: protocol.b64u(protocol.randomBytes(16)), ts: Date.now(), realm: realm.realmIdText, account: a.account, body });
  async function precompute(a) {
    const s = opaque.client.startLogin({ password: 'pw' });
    return { s, sealed: await request(a, 'login-start', { startLoginRequest: s.startLoginRequest }) };
  }
  const ids = (a) => protocol.opaqueIdentifiers(realm.realmIdText, a.account);
  const serverStat = () => procStat(child.pid);
  const cpuSeconds = server.cpuSeconds;

  mark('accounts registered');
  const cpu0 = cpuSeconds();
  const latencies = [];
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    accounts.map(async (a) => {
      let next = await precompute(a);
      while (performance.now() < deadline) {
        const cur = next;
        const t0 = performance.now();
        const r1 = await post(a.token, cur.sealed);
        const f = opaque.client.finishLogin({ clientLoginState: cur.s.clientLoginState, loginResponse: r1.loginResponse, password: 'pw', identifiers: ids(a), keyStretching: FAST });
        const r2 = await post(a.token, await request(a, 'login-finish', { ticket: r1.ticket, finishLoginRequest: f.finishLoginRequest, action: 'recover' }));
        if (r2.status !== 'ok') throw new Error(`login failed: ${r2.status}`);
        latencies.push(performance.now() - t0);
        done++;
        next = await precompute(a);
      }
    }),
  );
  const serverCpu = cpuSeconds() - cpu0;
  if (process.env.BENCH_TRACE) {
    const { readdirSync } = await import('node:fs');
    const threads = new Map();
    for (const t of readdirSync(`/proc/${child.pid}/task`)) {
      const st = readFileSync(`/proc/${child.pid}/task/${t}/stat`, 'utf8');
      const name = /\((.*)\)/.exec(st)[1];
      const f = st.split(') ')[1].split(' ');
      threads.set(name, (threads.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
    }
    console.error('server threads (CPU s, whole life):', JSON.stringify(Object.fromEntries(threads)));
  }
  const serverPeak = server.peakRssMiB();
  latencies.sort((x, y) => x - y);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(1);
  const rate = done / seconds;
  const perCpu = done / serverCpu;
  console.log(`${tiny ? 'TINY run (numbers mean little): ' : ''}HSM: ${hsm}; rate limits off`);
  console.log(`bare OPAQUE server side (1 core): ${bare.toFixed(0)} logins per CPU-second`);
  console.log(`full stack: ${rate.toFixed(0)} logins/s over ${seconds}s, concurrency ${concurrency}; latency p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`);
  console.log(`ratio full/bare (wall clock, load generator on the same cores): ${(rate / bare).toFixed(2)}`);
  console.log(`server CPU: ${serverCpu.toFixed(2)} s for ${done} logins = ${perCpu.toFixed(0)} logins per server CPU-second; ratio to bare: ${(perCpu / bare).toFixed(2)} (target >= 0.50)`);
  console.log(`server CPU split: user ${(Number(serverStat()[11]) / 100).toFixed(2)} s, system ${(Number(serverStat()[12]) / 100).toFixed(2)} s (whole process life)`);
  console.log(`peak memory: server ${serverPeak.toFixed(0)} MiB, load generator ${peakRssMiB(process.pid).toFixed(0)} MiB`);
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
