// Test helpers: a real `coffer vault serve` child process, a capturing fetch, and a raw protocol client.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { protocol, INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, type VaultConnection } from '@coffer/core/vault';
import * as opaque from '@serenity-kit/opaque';
import { vaultCommand } from '../src/cli.js';
import { RecordStoreError } from '../src/errors.js';
import type { CommitOptions, CommitResult, RecordChange, RecordStore, StoredRecord } from '../src/store/types.js';

const here = dirname(fileURLToPath(import.meta.url));
/** packages/vault/bin/coffer-vault.js (tests run from dist/test). */
export const VAULT_BIN = join(here, '..', '..', 'bin', 'coffer-vault.js');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function runVault(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await vaultCommand(argv, { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) } });
  return { code, stdout, stderr };
}

export interface VaultProcess {
  url: string;
  realmPublicKey: string;
  child: ChildProcess;
  logs(): string;
  stderr(): string;
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

/** Runs `serve` in this process until it listens (url, stop) or exits (code). */
export async function serveInProcess(args: string[]): Promise<{ code: number | null; stderr: string; url: string; stop(): Promise<void> }> {
  const ac = new AbortController();
  let err = '';
  let onUrl!: (u: string) => void;
  const listening = new Promise<string>((r) => (onUrl = r));
  const running = vaultCommand(['serve', '--port', '0', ...args], { stdout: { write: () => true }, stderr: { write: (x: string) => (err += x) }, signal: ac.signal, onListening: onUrl });
  const first = await Promise.race([listening, running.then((code) => ({ code }))]);
  if (typeof first === 'object') return { code: first.code, stderr: err, url: '', stop: async () => undefined };
  return {
    code: null,
    get stderr() {
      return err;
    },
    url: first,
    async stop() {
      ac.abort();
      assert.equal(await running, 0);
    },
  };
}

/** Starts `node bin/coffer-vault.js serve --data-dir DIR --port 0` and waits until it listens. */
export async function startVault(dataDir: string, env: Record<string, string> = {}, args: string[] = []): Promise<VaultProcess> {
  const child = spawn(process.execPath, [VAULT_BIN, 'serve', '--data-dir', dataDir, '--port', '0', '--json', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const listening = await new Promise<{ url: string; realmPublicKey: string }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`vault did not start in 15 s:\n${out}\n${err}`)), 15_000);
    const check = () => {
      for (const line of out.split('\n')) {
        if (!line.includes('"event":"listening"')) continue;
        const j = JSON.parse(line) as { url: string; realmPublicKey: string };
        clearTimeout(t);
        child.stdout!.off('data', check);
        resolve(j);
        return;
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`vault exited with ${code}:\n${out}\n${err}`));
    });
  });
  return {
    ...listening,
    child,
    logs: () => out,
    stderr: () => err,
    async waitForStderr(re, timeoutMs = 10_000) {
      const start = Date.now();
      while (!re.test(err)) {
        if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${re} in stderr:\n${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export async function issueToken(dataDir: string, account: string): Promise<string> {
  const r = await runVault(['token', '--data-dir', dataDir, '--account', account, '--json']);
  if (r.code !== 0) throw new Error(`token failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { token: string }).token;
}

/** Records every HTTP body exchanged (for size and secret scans). */
export class CapturingFetch {
  readonly requests: Uint8Array[] = [];
  readonly responses: Uint8Array[] = [];
  readonly headers: string[] = [];
  readonly fetch: typeof fetch = async (input, init) => {
    if (init?.body instanceof Uint8Array) this.requests.push(new Uint8Array(init.body));
    this.headers.push(JSON.stringify(init?.headers ?? {}));
    const res = await fetch(input, init);
    const buf = new Uint8Array(await res.arrayBuffer());
    this.responses.push(buf);
    return new Response(buf, { status: res.status, headers: res.headers });
  };
}

export function connection(v: { url: string; realmPublicKey: string }, token: string, f?: typeof fetch): VaultConnection {
  return { vaultUrl: v.url, realmPublicKey: v.realmPublicKey, token, keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, ...(f ? { fetch: f } : {}) };
}

export interface RawResult {
  httpStatus: number;
  /** Decrypted inner response, when HTTP 200. */
  inner: protocol.InnerResponse | null;
  /** Plain JSON error body, when not 200. */
  error: { error: string; message: string } | null;
  requestBody: Uint8Array;
  responseBody: Uint8Array;
  /** Re-open another response body with this request's context (for replays to another node). */
  open(body: Uint8Array): Promise<protocol.InnerResponse>;
}

export async function postRaw(url: string, token: string, body: Uint8Array, contentType = 'application/octet-stream'): Promise<{ status: number; body: Uint8Array }> {
  const res = await fetch(new URL(protocol.VAULT_PATH, url), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    body: protocol.own(body),
  });
  return { status: res.status, body: new Uint8Array(await res.arrayBuffer()) };
}

/** A message exchange seen by rawCall: the inner request, and the server's inner response or error body. */
export interface CapturedExchange {
  op: protocol.VaultOp;
  request: protocol.InnerRequest;
  httpStatus: number;
  response: protocol.InnerResponse | null;
  error: unknown;
}

/** Every exchange rawCall made in this process, for the checks against spec/vault-messages.schema.json. */
export const captured: CapturedExchange[] = [];

/** One protocol request made by hand, so tests can see statuses the client API hides. */
export async function rawCall(
  v: { url: string; realmPublicKey: string },
  token: string,
  account: string,
  op: protocol.VaultOp,
  body: Record<string, unknown>,
  o: { ts?: number; mutate?: (b: Uint8Array) => Uint8Array } = {},
): Promise<RawResult> {
  const realm = protocol.parseRealmPublicKey(v.realmPublicKey);
  const id = protocol.b64u(protocol.randomBytes(16));
  const request: protocol.InnerRequest = { v: 1, op, id, ts: o.ts ?? Date.now(), realm: realm.realmIdText, account, body };
  const sealed = await protocol.sealRequest(realm, request);
  const reqBody = o.mutate ? o.mutate(sealed.body) : sealed.body;
  const r = await postRaw(v.url, token, reqBody);
  const open = async (b: Uint8Array) => {
    const inner = await protocol.openResponse(sealed.context, sealed.enc, b);
    if (inner.id !== id) throw new Error('response id mismatch');
    return inner;
  };
  const inner = r.status === 200 ? await open(r.body) : null;
  const error = r.status === 200 ? null : (JSON.parse(new TextDecoder().decode(r.body)) as { error: string; message: string });
  captured.push({ op, request, httpStatus: r.status, response: inner, error });
  return {
    httpStatus: r.status,
    inner,
    error,
    requestBody: reqBody,
    responseBody: r.body,
    open,
  };
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A real record store with faults a test can switch on (the faults a real database will not
 * produce on demand): reads held at a gate (a request kept in flight), a ping that fails (the
 * database gone for readiness), record changes that fail (the database gone at commit).
 */
export class FaultyStore implements RecordStore {
  gate: Promise<void> | null = null;
  entered = 0;
  failPing = false;
  failCommits = false;
  constructor(readonly inner: RecordStore) {}
  async get(a: string): Promise<StoredRecord | null> {
    this.entered++;
    if (this.gate) await this.gate;
    return this.inner.get(a);
  }
  async commit(a: string, c: RecordChange, o?: CommitOptions): Promise<CommitResult> {
    if (this.failCommits && c.kind !== 'none') throw new RecordStoreError('the record store could not commit (test: database unreachable)');
    return this.inner.commit(a, c, o);
  }
  bindRealm(r: string) {
    return this.inner.bindRealm(r);
  }
  async ping() {
    if (this.failPing) throw new Error('database down');
    return this.inner.ping();
  }
  close() {
    return this.inner.close();
  }
}

/**
 * A login-start sent by hand (rawCall), and the client's finishLogin on its answer: the KE3 a
 * captured or held-back login-finish would carry (null for a fake KE2, or a wrong password).
 */
export async function loginByHand(v: { url: string; realmPublicKey: string }, token: string, account: string, password: string): Promise<{ start: RawResult; ticket: string; finishLoginRequest: string | null }> {
  const s = opaque.client.startLogin({ password });
  const start = await rawCall(v, token, account, 'login-start', { startLoginRequest: s.startLoginRequest });
  if (start.inner?.status !== 'ok') return { start, ticket: '', finishLoginRequest: null };
  const f = opaque.client.finishLogin({
    clientLoginState: s.clientLoginState,
    loginResponse: start.inner['loginResponse'] as string,
    password,
    identifiers: protocol.opaqueIdentifiers(protocol.parseRealmPublicKey(v.realmPublicKey).realmIdText, account),
    keyStretching: INSECURE_TEST_ONLY_FAST_KEY_STRETCHING,
  });
  return { start, ticket: start.inner['ticket'] as string, finishLoginRequest: f?.finishLoginRequest ?? null };
}
