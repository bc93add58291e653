#!/usr/bin/env node
// Benchmark (not a test): full server-side logins per second through the whole stack (HTTP,
// channel, OPAQUE, SoftHSM2 seal/unseal, durable SQLite counter writes), compared with the bare
// OPAQUE server-side rate measured in the same run. Clients are precomputed as far as the
// protocol allows (KE1 and the sealed login-start request); KE3 depends on KE2 and is computed online.
//
//   npx tsc -b packages/vault && node packages/vault/bench/logins.mjs [seconds=5] [concurrency=16]

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as opaque from '@serenity-kit/opaque';
import { INSECURE_TEST_ONLY_FAST_KEY_STRETCHING as FAST, protocol, registerBackupKey } from '@coffer/core/vault';
import { vaultCommand } from '../dist/src/cli.js';

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 16);
const here = dirname(fileURLToPath(import.meta.url));
await opaque.ready;

// 1. Bare OPAQUE server side (startLogin + finishLogin), one core.
{
  globalThis.bare = (() => {
    const setup = opaque.server.createSetup();
    const ids = { client: 'u', server: 'realm' };
    const s = opaque.client.startRegistration({ password: 'pw' });
    const r = opaque.server.createRegistrationResponse({ serverSetup: setup, userIdentifier: 'u', registrationRequest: s.registrationRequest });
    const rec = opaque.client.finishRegistration({ password: 'pw', registrationResponse: r.registrationResponse, clientRegistrationState: s.clientRegistrationState, identifiers: ids, keyStretching: FAST }).registrationRecord;
    const n = 400;
    const ke1s = Array.from({ length: n }, () => opaque.client.startLogin({ password: 'pw' }));
    let serverMs = 0;
    for (const k of ke1s) {
      let t = performance.now();
      const st = opaque.server.startLogin({ serverSetup: setup, registrationRecord: rec, startLoginRequest: k.startLoginRequest, userIdentifier: 'u', identifiers: ids });
      serverMs += performance.now() - t;
      const f = opaque.client.finishLogin({ clientLoginState: k.clientLoginState, loginResponse: st.loginResponse, password: 'pw', identifiers: ids, keyStretching: FAST });
      t = performance.now();
      opaque.server.finishLogin({ serverLoginState: st.serverLoginState, finishLoginRequest: f.finishLoginRequest, identifiers: ids });
      serverMs += performance.now() - t;
    }
    return (n / serverMs) * 1000;
  })();
}
const bare = globalThis.bare;

// 2. Whole stack against a real `coffer vault serve` process.
const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-'));
const quiet = { stdout: { write() {} }, stderr: { write() {} } };
let out = '';
await vaultCommand(['init', '--data-dir', dir, '--hsm', 'auto', '--json'], { stdout: { write: (s) => (out += s) }, stderr: quiet.stderr });
const { realmPublicKey, hsm } = JSON.parse(out);
const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []), join(here, '..', 'bin', 'coffer-vault.js'), 'serve', '--data-dir', dir, '--port', '0', '--json', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve) => {
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    buf += d;
    const m = /"url":"([^"]+)"/.exec(buf);
    if (m) resolve(m[1]);
  });
});
const realm = protocol.parseRealmPublicKey(realmPublicKey);
const accounts = [];
for (let i = 0; i < concurrency; i++) {
  let tok = '';
  await vaultCommand(['token', '--data-dir', dir, '--account', `bench-${i}`, '--json'], { stdout: { write: (s) => (tok += s) }, stderr: quiet.stderr });
  const token = JSON.parse(tok).token;
  await registerBackupKey({ vaultUrl: url, realmPublicKey, token, password: 'pw', backupKey: new Uint8Array(32), keyStretching: FAST, maxAttempts: 100 });
  accounts.push({ account: `bench-${i}`, token });
}

async function post(token, body) {
  const res = await fetch(new URL(protocol.VAULT_PATH, url), { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body });
  return new Uint8Array(await res.arrayBuffer());
}
async function precompute(a) {
  const s = opaque.client.startLogin({ password: 'pw' });
  const id = protocol.b64u(protocol.randomBytes(16));
  const sealed = await protocol.sealRequest(realm, { v: 1, op: 'login-start', id, ts: Date.now(), realm: realm.realmIdText, account: a.account, body: { startLoginRequest: s.startLoginRequest } });
  return { s, sealed };
}
const ids = (a) => protocol.opaqueIdentifiers(realm.realmIdText, a.account);
const { readFileSync } = await import('node:fs');
const cpuSeconds = () => {
  // utime + stime of the server process, in clock ticks (100 Hz on Linux).
  const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
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
      const r1 = await protocol.openResponse(cur.sealed.context, cur.sealed.enc, await post(a.token, cur.sealed.body));
      const f = opaque.client.finishLogin({ clientLoginState: cur.s.clientLoginState, loginResponse: r1.loginResponse, password: 'pw', identifiers: ids(a), keyStretching: FAST });
      const id = protocol.b64u(protocol.randomBytes(16));
      const sealed2 = await protocol.sealRequest(realm, { v: 1, op: 'login-finish', id, ts: Date.now(), realm: realm.realmIdText, account: a.account, body: { ticket: r1.ticket, finishLoginRequest: f.finishLoginRequest, action: 'recover' } });
      const r2 = await protocol.openResponse(sealed2.context, sealed2.enc, await post(a.token, sealed2.body));
      if (r2.status !== 'ok') throw new Error(`login failed: ${r2.status}`);
      latencies.push(performance.now() - t0);
      done++;
      next = await precompute(a);
    }
  }),
);
const serverCpu = cpuSeconds() - cpu0;
child.kill('SIGTERM');
rmSync(dir, { recursive: true, force: true });
latencies.sort((x, y) => x - y);
const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(1);
const rate = done / seconds;
console.log(`HSM: ${hsm}`);
console.log(`bare OPAQUE server side (1 core): ${bare.toFixed(0)} logins/s`);
console.log(`full stack: ${rate.toFixed(0)} logins/s over ${seconds}s, concurrency ${concurrency}; latency p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`);
console.log(`ratio full/bare (wall clock, load generator on the same 2 cores): ${(rate / bare).toFixed(2)}`);
const perCpu = done / serverCpu;
console.log(`server CPU: ${serverCpu.toFixed(2)} s for ${done} logins = ${perCpu.toFixed(0)} logins per server CPU-second; ratio to bare: ${(perCpu / bare).toFixed(2)} (target >= 0.50)`);
