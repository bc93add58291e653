// Juicebox test helpers: several real vault processes as realms, tokens for them, the official
// SDK in a child process, and a wire-level attacker that counts password tests.

import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfiguration, wire, type JuiceboxConfiguration } from '@coffer/core/juicebox';
import { issueJuiceboxToken } from '../src/juicebox/token.js';
import { cleanup, runVault, startVault, tempDir, type VaultProcess } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const HARNESS = join(here, 'juicebox-sdk-harness.js');

/** No rate limits: these tests count guesses, not requests. */
export const NO_RATE_LIMITS = ['--account-rate', '0', '--address-rate', '0'];

export interface Realm {
  dataDir: string;
  proc: VaultProcess;
  id: string;
  publicKey: string;
  address: string;
}

/**
 * The app auth server of these tests: every realm made by startRealm verifies tokens signed with
 * this Ed25519 key (`init --token-public-key`, spec/juicebox.md §7), so a token costs the test a
 * signature, not an HSM session per realm. (`vault token --audience juicebox`, the HS256
 * development path, has its own tests.)
 */
const APP_KEY = generateKeyPairSync('ed25519');

let inits: Promise<unknown> = Promise.resolve();

/** `vault init` with the app's public key. One at a time: SoftHSM2 is configured per process. */
function initRealm(dataDir: string): Promise<void> {
  const run = inits.then(async () => {
    const pem = `${dataDir}.app.pub.pem`;
    writeFileSync(pem, APP_KEY.publicKey.export({ type: 'spki', format: 'pem' }));
    const r = await runVault(['init', '--data-dir', dataDir, '--token-public-key', pem, '--json']);
    if (r.code !== 0) throw new Error(`vault init failed: ${r.stderr}`);
  });
  inits = run.catch(() => undefined);
  return run;
}

export async function startRealm(dataDir: string, args: string[] = NO_RATE_LIMITS): Promise<Realm> {
  if (!existsSync(join(dataDir, 'realm.json'))) await initRealm(dataDir);
  const proc = await startVault(dataDir, {}, args);
  const line = proc.logs().split('\n').find((l) => l.includes('"event":"listening"'))!;
  const j = JSON.parse(line) as { realmId: string; juiceboxPublicKey: string; url: string };
  return { dataDir, proc, id: j.realmId, publicKey: j.juiceboxPublicKey, address: `${j.url}/` };
}

/** `n` independent realms: each its own data directory, SQLite file and SoftHSM2 token. */
export async function startRealms(n: number, args?: string[]): Promise<{ realms: Realm[]; root: string; stop(): Promise<void> }> {
  const root = tempDir('coffer-juicebox-');
  const realms = await Promise.all(Array.from({ length: n }, (_, i) => startRealm(join(root, `realm${i + 1}`), args)));
  return {
    realms,
    root,
    async stop() {
      await Promise.all(realms.map((r) => r.proc.stop()));
      cleanup(root);
    },
  };
}

/** Stops a realm, replaces its data directory with `from` (a copy made earlier), starts it again. */
export async function restoreRealm(realms: Realm[], i: number, from: string, args?: string[]): Promise<void> {
  const r = realms[i]!;
  await r.proc.stop();
  rmSync(r.dataDir, { recursive: true, force: true });
  cpSync(from, r.dataDir, { recursive: true });
  realms[i] = await startRealm(r.dataDir, args);
}

/** A stopped copy of a realm's data directory (the realm is restarted afterwards). */
export async function snapshotRealm(realms: Realm[], i: number, to: string, args?: string[]): Promise<void> {
  const r = realms[i]!;
  await r.proc.stop();
  cpSync(r.dataDir, to, { recursive: true });
  realms[i] = await startRealm(r.dataDir, args);
}

export function sdkConfiguration(realms: Realm[], o: { hardware?: boolean | boolean[]; threshold?: number } = {}) {
  const t = o.threshold ?? realms.length;
  return {
    realms: realms.map((r, i) => ({ id: r.id, address: r.address, public_key: (Array.isArray(o.hardware) ? o.hardware[i] : o.hardware) ? r.publicKey : null })),
    register_threshold: realms.length,
    recover_threshold: t,
    pin_hashing_mode: 'FastInsecure',
  };
}

export function configuration(realms: Realm[], o: Parameters<typeof sdkConfiguration>[1] = {}): JuiceboxConfiguration {
  return parseConfiguration(sdkConfiguration(realms, o));
}

/** A token per realm for `account`, signed by the tests' app auth server key (an hour). */
export function juiceboxTokens(realms: Realm[], account: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of realms) out[r.id] = issueJuiceboxToken({ alg: 'EdDSA', privateKey: APP_KEY.privateKey }, { user: account, realmIdHex: r.id, ttlSeconds: 3600 });
  return out;
}

export interface SdkOp {
  op: 'register' | 'recover' | 'delete';
  pin?: string;
  info?: string;
  secret?: string;
  guesses?: number;
}

export interface SdkResult {
  op: string;
  ok: boolean;
  secret?: string;
  reason?: string;
  guessesRemaining?: number | null;
}

/** Runs ops with the official SDK (npm juicebox-sdk, WASM) in a child process. */
export async function runSdk(configuration: unknown, tokens: Record<string, string>, ops: SdkOp[], concurrent = false): Promise<SdkResult[]> {
  const child = spawn(process.execPath, ['--experimental-wasm-modules', '--no-warnings', HARNESS], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdin.end(JSON.stringify({ configuration, tokens, ops: ops.map((o) => ({ pin: '', info: '', ...o })), concurrent }));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`the SDK harness failed (${code}):\n${err}`);
  return out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as SdkResult);
}

/**
 * A wire-level attacker holding valid tokens: one attempt is Recover1 then Recover2 (with any
 * blinded input) on every realm. It is a password test only if every realm evaluated (3-of-3):
 * only then can the OPRF output for a guess be computed. Returns whether this attempt was one.
 */
export async function attackerAttempt(realms: Realm[], tokens: Record<string, string>): Promise<{ test: boolean; evaluated: boolean[] }> {
  const blinded = (await import('@coffer/core/juicebox')).jbcrypto.oprfBlind(crypto.getRandomValues(new Uint8Array(32))).blindedInput.toBytes();
  const call = async (r: Realm, q: wire.SecretsRequest) => {
    const res = await fetch(new URL('req', r.address), {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens[r.id]}`, 'x-juicebox-version': wire.JUICEBOX_WIRE_VERSION },
      body: wire.encodeSecretsRequest(q) as Uint8Array<ArrayBuffer>,
    }).catch((e: Error) => {
      throw new Error(`${q.kind} to realm ${r.id} at ${r.address}: ${e.message} (${String((e.cause as Error | undefined)?.message ?? e.cause)})`);
    });
    if (res.status !== 200) throw new Error(`realm ${r.id} answered HTTP ${res.status}: ${await res.text()}`);
    return wire.parseSecretsResponse(new Uint8Array(await res.arrayBuffer()));
  };
  const evaluated = await Promise.all(
    realms.map(async (r) => {
      const r1 = await call(r, { kind: 'Recover1' });
      if (r1.kind !== 'Recover1' || r1.status !== 'Ok') return false;
      const r2 = await call(r, { kind: 'Recover2', version: r1.version, blindedInput: blinded });
      return r2.kind === 'Recover2' && r2.status === 'Ok';
    }),
  );
  return { test: evaluated.every(Boolean), evaluated };
}

/** The sum of a counter over this realm's /metrics. */
export async function metric(r: Realm, name: string): Promise<number> {
  const text = await (await fetch(new URL('metrics', r.address))).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}
