#!/usr/bin/env node
// Benchmark (not a test): Juicebox recoveries per server CPU-second for one realm through the
// whole stack (HTTP, token check, SoftHSM2 unseal/seal, durable SQLite guess count, OPRF
// evaluation and DLEQ proof; Recover1 + Recover2 + Recover3), beside the bare crypto of one
// Recover2 plus Recover3 (OPRF evaluation, DLEQ proof, tag comparison) measured in the same run.
// The client side is precomputed so that the server's CPU is what is measured.
//
//   npx tsc -b packages/vault && node packages/vault/bench/recoveries.mjs [--seconds 5] [--concurrency 16] [--tiny]
//   (BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the server)
//
// --tiny runs for about a second (a smoke test of the benchmark itself; its figures mean little).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jbcrypto as c, noise, wire } from '@coffer/core/juicebox';
import { vaultCommand } from '../dist/src/cli.js';
import { peakRssMiB, startServe } from './serve.mjs';

const { values: v } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '16' }, tiny: { type: 'boolean', default: false } } });
const seconds = v.tiny ? 0.5 : Number(v.seconds);
const concurrency = v.tiny ? 2 : Number(v.concurrency);
const hex = (b) => Buffer.from(b).toString('hex');

/** One user's registration made by hand (one realm, threshold 1): what the realm stores and what the client keeps. */
function registration(realmId) {
  const accessKey = c.systemRandom(32);
  const k = c.randomScalar();
  const [spk] = c.signPublicKeys([{ realmId, publicKey: c.mulBase(k).toBytes() }]);
  const { unlockKey, commitment } = c.unlockKeyAndCommitment(c.oprfUnoblivious(k, accessKey));
  const share = c.scalarToBytes(c.randomScalar());
  const encryptedSecret = c.encryptSecret(c.systemRandom(32), new Uint8Array(32));
  const version = c.systemRandom(16);
  return {
    k,
    accessKey,
    version,
    tag: c.unlockKeyTag(unlockKey, realmId),
    register2: {
      version,
      oprfPrivateKey: c.scalarToBytes(k),
      oprfSignedPublicKey: spk,
      unlockKeyCommitment: commitment,
      unlockKeyTag: c.unlockKeyTag(unlockKey, realmId),
      encryptionKeyScalarShare: share,
      encryptedSecret,
      encryptedSecretCommitment: c.encryptedSecretCommitment(unlockKey, realmId, share, encryptedSecret),
      numGuesses: 100,
    },
  };
}

// 1. Bare crypto of one Recover2 + Recover3 on the server side, one core (measured before and
// after the whole-stack runs, and averaged: the machine may be shared).
const bareRate = () => {
  const realmId = c.systemRandom(16);
  const reg = registration(realmId);
  const V = reg.register2.oprfSignedPublicKey.publicKey;
  const n = v.tiny ? 50 : 400;
  const inputs = Array.from({ length: n }, () => c.oprfBlind(reg.accessKey).blindedInput.toBytes());
  let cpu0 = process.cpuUsage();
  for (const [i, u] of [...inputs.slice(0, n / 4), ...inputs].entries()) {
    if (i === n / 4) cpu0 = process.cpuUsage(); // the first quarter warms the JIT up
    const U = c.pointFromBytes(u);
    const W = c.oprfEvaluate(reg.k, U);
    const proof = c.dleqProve(reg.k, U, V, W);
    W.toBytes();
    c.scalarToBytes(proof.c);
    c.scalarToBytes(proof.z);
    if (!Buffer.from(reg.tag).equals(Buffer.from(reg.register2.unlockKeyTag))) throw new Error('tag');
  }
  const cpu = process.cpuUsage(cpu0);
  return n / ((cpu.user + cpu.system) / 1e6);
};
const bareBefore = bareRate();

// 2. The whole stack against a real `coffer vault serve` process.
const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-jb-'));
const quiet = { write() {} };
let out = '';
await vaultCommand(['init', '--data-dir', dir, '--hsm', 'auto', '--json'], { stdout: { write: (s) => (out += s) }, stderr: quiet });
const { realmId: realmIdHex, juiceboxPublicKey, hsm } = JSON.parse(out);
const realmId = Buffer.from(realmIdHex, 'hex');
const server = await startServe(dir);
const { url, cpuSeconds } = server;
async function post(body, headers = {}) {
  const res = await fetch(new URL('/req', url), { method: 'POST', headers: { 'x-juicebox-version': wire.JUICEBOX_WIRE_VERSION, ...headers }, body });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  return new Uint8Array(await res.arrayBuffer());
}

const users = [];
for (let i = 0; i < concurrency; i++) {
  let tok = '';
  await vaultCommand(['token', '--data-dir', dir, '--account', `bench-${i}`, '--audience', 'juicebox', '--json'], { stdout: { write: (s) => (tok += s) }, stderr: quiet });
  const token = JSON.parse(tok).token;
  const reg = registration(realmId);
  await post(wire.encodeSecretsRequest({ kind: 'Register2', request: reg.register2 }), { authorization: `Bearer ${token}` });
  // Blinded inputs made ahead, so that the client's own OPRF work does not hold the server back.
  const blinds = Array.from({ length: 64 }, () => c.oprfBlind(reg.accessKey).blindedInput.toBytes());
  users.push({ token, reg, blinds });
}

/** One recovery over the software wire: Recover1, Recover2, Recover3 (right tag: the count resets). */
async function softwareRecovery(u, blinded) {
  const auth = { authorization: `Bearer ${u.token}` };
  const r1 = wire.parseSecretsResponse(await post(wire.encodeSecretsRequest({ kind: 'Recover1' }), auth));
  const r2 = wire.parseSecretsResponse(await post(wire.encodeSecretsRequest({ kind: 'Recover2', version: r1.version, blindedInput: blinded }), auth));
  if (r2.status !== 'Ok') throw new Error(`Recover2 ${r2.status}`);
  const r3 = wire.parseSecretsResponse(await post(wire.encodeSecretsRequest({ kind: 'Recover3', version: r1.version, unlockKeyTag: u.reg.tag }), auth));
  if (r3.status !== 'Ok') throw new Error(`Recover3 ${r3.status}`);
}

/** The same over the hardware wire: a Noise handshake carrying Recover1, then two transport messages. */
async function hardwareRecovery(u, blinded) {
  const pk = Buffer.from(juiceboxPublicKey, 'hex');
  const sessionId = Math.floor(Math.random() * 2 ** 32);
  const env = (kind, encrypted) => wire.encodeClientRequest({ realm: realmId, authToken: u.token, sessionId, kind, encrypted });
  const hs = noise.clientHandshake(pk, wire.encodeSecretsRequest({ kind: 'Recover1' }));
  const a = wire.parseClientResponse(await post(env('SecretsRequest', { handshake: { clientEphemeralPublic: hs.clientEphemeralPublic, payloadCiphertext: hs.payloadCiphertext } })));
  const { transport, payload } = hs.finish(a.ok.handshake.serverEphemeralPublic, a.ok.handshake.payloadCiphertext);
  const r1 = wire.unpadResponse(payload);
  const call = async (q) => wire.unpadResponse(transport.decrypt(wire.parseClientResponse(await post(env('SecretsRequest', { transport: transport.encrypt(wire.encodeSecretsRequest(q)) }))).ok.transport));
  const r2 = await call({ kind: 'Recover2', version: r1.version, blindedInput: blinded });
  if (r2.status !== 'Ok') throw new Error(`Recover2 ${r2.status}`);
  const r3 = await call({ kind: 'Recover3', version: r1.version, unlockKeyTag: u.reg.tag });
  if (r3.status !== 'Ok') throw new Error(`Recover3 ${r3.status}`);
}

async function measure(recovery) {
  const run = async (ms) => {
    const deadline = performance.now() + ms;
    let done = 0;
    await Promise.all(
      users.map(async (u) => {
        while (performance.now() < deadline) {
          await recovery(u, u.blinds[done % u.blinds.length]);
          done++;
        }
      }),
    );
    return done;
  };
  await run((seconds * 1000) / 4); // warm-up, not measured: the server's JIT compiles the hot paths
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  const done = await run(seconds * 1000);
  const wall = (performance.now() - t0) / 1000;
  return { done, perCpuSecond: done / Math.max(0.01, cpuSeconds() - cpu0), perSecond: done / wall };
}

const software = await measure(softwareRecovery);
const hardware = await measure(hardwareRecovery);
const serverPeak = server.peakRssMiB();
await server.stop();
rmSync(dir, { recursive: true, force: true });
const bareAfter = bareRate();
const bare = (bareBefore + bareAfter) / 2;

console.log(`Juicebox recoveries, one realm (HSM: ${hsm}; SQLite; concurrency ${concurrency}; ${seconds} s each)${v.tiny ? ' [tiny run]' : ''}`);
console.log(`| what | per server CPU-second | ratio to bare | per second (wall) |`);
console.log(`|---|---|---|---|`);
console.log(`| bare crypto of Recover2 + Recover3 (OPRF evaluation, DLEQ proof), one core (before ${bareBefore.toFixed(0)}, after ${bareAfter.toFixed(0)}) | ${bare.toFixed(0)} | 1.00x | |`);
console.log(`| whole stack, software wire (Recover1+2+3, ${software.done} recoveries) | ${software.perCpuSecond.toFixed(0)} | ${(software.perCpuSecond / bare).toFixed(2)}x | ${software.perSecond.toFixed(0)} |`);
console.log(`| whole stack, hardware wire (Noise handshake + 2 transport messages, ${hardware.done}) | ${hardware.perCpuSecond.toFixed(0)} | ${(hardware.perCpuSecond / bare).toFixed(2)}x | ${hardware.perSecond.toFixed(0)} |`);
console.log(`peak memory: server ${serverPeak.toFixed(0)} MiB, load generator ${peakRssMiB().toFixed(0)} MiB`);
