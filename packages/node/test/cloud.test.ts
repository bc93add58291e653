/**
 * S3 and WebDAV backends against real servers on 127.0.0.1 (s3rver and webdav-server in child
 * processes): the unchanged conformance suite, the retry layer, storage URLs and their labels.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectExistsError, ObjectNotFoundError, StorageUnavailableError, type Storage } from '@coffer/core';
import { storageConformance } from '@coffer/core/testing';
import { openStorage, redactUrl, StorageRefusedError, WebDavStorage } from '@coffer/node';
import { S3Storage } from '@coffer/node/s3';
import { backoffDelay, withRetry, type RetryEvent, type Verdict } from '../src/retry.js';
import { faultProxy, seeded, startServer, type ServerProcess } from './servers.js';

const s3Env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const davEnv = { COFFER_WEBDAV_USER: 'alice', COFFER_WEBDAV_PASSWORD: 'wonderland' };
let dir: string;
let s3: ServerProcess;
let dav: ServerProcess;
const opened: Storage[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-cloud-'));
  [s3, dav] = await Promise.all([startServer('s3', join(dir, 's3')), startServer('webdav', join(dir, 'dav'))]);
});
after(async () => {
  await Promise.all(opened.map((s) => s.close?.()));
  await Promise.all([s3?.stop(), dav?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

const s3Url = (prefix: string, bucket = 'coffer') => `s3://${bucket}/${prefix}?endpoint=http://127.0.0.1:${s3.port}&region=us-east-1&path-style=1`;
const davUrl = (path: string) => `webdav://127.0.0.1:${dav.port}/${path}`;
const keep = <S extends Storage>(s: S): S => (opened.push(s), s);

storageConformance.forEach((c, i) => {
  test(`S3 storage conformance (s3rver: the HEAD-check path): ${c.name}`, async () => c.run(keep(await S3Storage.open(s3Url(`conf${i}`), { env: s3Env }))));
});
storageConformance.forEach((c, i) => {
  test(`S3 storage conformance (If-None-Match enforced, emulated by a proxy): ${c.name}`, async (t) => {
    const proxy = await conditionalProxy();
    t.after(() => proxy.close());
    await c.run(keep(await S3Storage.open(s3Url(`cond${i}`).replace(String(s3.port), String(proxy.port)), { env: s3Env })));
  });
});
storageConformance.forEach((c, i) => {
  test(`WebDAV storage conformance (webdav-server): ${c.name}`, async () => c.run(keep(await WebDavStorage.open(davUrl(`conf${i}/store`), { env: davEnv, create: true }))));
});

/** Whether s3rver holds the object that a request path (/bucket/key?query) names: its file on disk. */
const s3Exists = (path: string) => existsSync(join(dir, 's3', decodeURIComponent(new URL(path, 'http://x').pathname)) + '._S3rver_object');

/** A proxy in front of s3rver that answers 412 to a conditional PUT of an existing key, as AWS S3 does. */
async function conditionalProxy() {
  const p = await faultProxy(s3.port, {}, 1);
  p.exists = s3Exists;
  return p;
}

test('S3: the first data object shows whether the store enforces If-None-Match; then puts skip the HEAD check', async () => {
  for (const enforced of [true, false]) {
    const proxy = enforced ? await conditionalProxy() : await faultProxy(s3.port, {}, 1);
    const s = keep(await S3Storage.open(s3Url(`probe-${enforced}`).replace(String(s3.port), String(proxy.port)), { env: s3Env }));
    try {
      await s.put('config', new Uint8Array([1]));
      assert.equal(s.checksBeforePut, true, 'no probe on a config object');
      for (let i = 0; i < 5; i++) await s.put(`data/${String(i).repeat(64)}`, new Uint8Array([i]));
      assert.equal(s.checksBeforePut, !enforced);
      const heads = proxy.log.filter((l) => l.method === 'HEAD' && l.path.includes('/data/')).length;
      assert.equal(heads, enforced ? 1 : 5, 'a HEAD before each put only where If-None-Match is ignored');
      await assert.rejects(s.put(`data/${'1'.repeat(64)}`, new Uint8Array([9])), ObjectExistsError);
      assert.deepEqual([...(await s.get(`data/${'1'.repeat(64)}`))], [1]);
    } finally {
      await proxy.close();
    }
  }
});

test('retry layer: capped full-jitter backoff, permanent failures once, transient ones for the time budget and once more at its end', async () => {
  const policy = { retryForMs: 1000, baseDelayMs: 100, maxDelayMs: 300 };
  assert.equal(backoffDelay(policy, 1, () => 0.999), 99);
  assert.equal(backoffDelay(policy, 2, () => 0.5), 100);
  assert.equal(backoffDelay(policy, 9, () => 0.999), 299, 'capped at maxDelayMs');
  assert.equal(backoffDelay(policy, 2000, () => 0.999), 299, 'no overflow after many attempts');
  assert.equal(backoffDelay(policy, 2, () => 0), 0, 'full jitter starts at zero');
  // A clock that moves only when the layer sleeps, and 10 ms per attempt.
  let clock = 0;
  const waits: number[] = [];
  const events: RetryEvent[] = [];
  const p = { ...policy, random: () => 0.9, now: () => clock, sleep: async (ms: number) => void (waits.push(ms), (clock += ms)), onRetry: (e: RetryEvent) => void events.push(e) };
  let calls = 0;
  const transient = (): Verdict => ({ kind: 'transient', reason: 'the server answered 503' });
  const failing = async () => {
    calls++;
    clock += 10;
    throw new Error('503');
  };
  await assert.rejects(withRetry('store', 'reading x', p, transient, failing), (e: unknown) =>
    e instanceof StorageUnavailableError && !(e instanceof StorageRefusedError) && /^store: reading x failed after \d+ attempts in 1 s: the server answered 503$/.test(e.message));
  assert.deepEqual(waits.slice(0, 3), [90, 180, 270], 'exponential, then capped');
  assert.ok(waits.slice(3, -1).every((w) => w === 270));
  const first = 10; // the clock when the first attempt failed
  assert.equal(clock - first >= 1000 && waits.at(-1)! < 270, true, 'the last wait is cut so that the last try is when the budget ends');
  assert.equal(calls, waits.length + 1);
  assert.deepEqual(events[0], { store: 'store', what: 'reading x', attempt: 1, delayMs: 90, reason: 'the server answered 503', failingForMs: 0, giveUpInMs: 1000 });
  assert.ok(events.every((e, i) => i === 0 || e.giveUpInMs < events[i - 1]!.giveUpInMs), 'the time left shrinks');
  calls = 0;
  const permanent = (): Verdict => ({ kind: 'permanent', reason: 'the bucket b does not exist', hint: 'create it' });
  await assert.rejects(withRetry('store', 'listing', p, permanent, async () => { calls++; throw new Error('404'); }), (e: unknown) =>
    e instanceof StorageRefusedError && e.hint === 'create it' && e.message === 'store: listing failed: the bucket b does not exist' && e.cause instanceof Error);
  assert.equal(calls, 1);
  calls = 0;
  assert.equal(await withRetry('store', 'x', p, transient, async (n) => { calls++; if (n < 3) throw new Error('reset'); return 'done'; }), 'done');
  assert.equal(calls, 3);
  await assert.rejects(withRetry('store', 'x', p, transient, async () => { throw new ObjectNotFoundError('x'); }), ObjectNotFoundError, 'answers pass through');
  // An outage shorter than the budget is ridden out, however the waits fall.
  for (const seed of [1, 2, 3]) {
    clock = 0;
    const rnd = seeded(seed);
    const q = { ...policy, random: rnd, now: () => clock, sleep: async (ms: number) => void (clock += ms) };
    assert.equal(await withRetry('store', 'x', q, transient, async () => { if (clock < 999) { clock += 1; throw new Error('refused'); } return 'up'; }), 'up');
  }
});

test('storage URLs: s3:// and webdav:// open through openStorage, labels carry no secret', async () => {
  assert.equal(redactUrl('s3://AKIA:wJalr%2Fsecret@bucket/p?endpoint=http://127.0.0.1:9000&region=eu-west-1'), 's3://AKIA:***@bucket/p?endpoint=http://127.0.0.1:9000&region=eu-west-1');
  assert.equal(redactUrl('s3://bucket/p?endpoint=http://u:pw@host:9000'), 's3://bucket/p?endpoint=http%3A%2F%2Fu%3A***%40host%3A9000%2F');
  assert.equal(redactUrl('webdavs://alice:wonderland@cloud.example/remote.php/dav/files/alice/coffer'), 'webdavs://alice:***@cloud.example/remote.php/dav/files/alice/coffer');
  assert.equal(redactUrl('not a url //u:pw@host'), 'not a url //***@host');
  const s = keep(await openStorage(`s3://S3RVER:S3RVER@coffer/urls?endpoint=http://127.0.0.1:${s3.port}&path-style=1`));
  assert.ok(s instanceof S3Storage);
  assert.equal(s.label, `s3://S3RVER:***@coffer/urls?endpoint=http://127.0.0.1:${s3.port}&path-style=1`);
  await s.put('config', new Uint8Array([1]));
  assert.deepEqual(await s.list(''), ['config']);
  const d = keep(await openStorage(`webdav://alice:wonderland@127.0.0.1:${dav.port}/urls/deep`, { create: true }));
  assert.ok(d instanceof WebDavStorage);
  assert.equal(d.label, `webdav://alice:***@127.0.0.1:${dav.port}/urls/deep`);
  await assert.rejects(openStorage(`s3://coffer/x?endpoint=http://127.0.0.1:${s3.port}&secret=1`), /unknown option secret/);
  await assert.rejects(openStorage('s3:///nobucket'), /names no bucket/);
});

test('WebDAV: uploads in progress live in tmp/ and are never listed; packs (and v1 data objects) are sharded by their first two digits', async () => {
  const s = keep(await WebDavStorage.open(davUrl('layout'), { env: davEnv, create: true }));
  const id = 'ab'.repeat(32);
  const pack = 'c0'.repeat(32);
  await s.put(`data/${id}`, new Uint8Array([1, 2, 3]));
  await s.put(`packs/${pack}`, new Uint8Array([5]));
  await s.put('manifests/1', new Uint8Array([4]));
  assert.deepEqual((await s.list('')).sort(), [`data/${id}`, 'manifests/1', `packs/${pack}`]);
  assert.deepEqual(await s.list('packs/c0'), [`packs/${pack}`]);
  assert.deepEqual(await readdir(join(dir, 'dav', 'layout', 'data', 'ab')), [id]);
  assert.deepEqual(await readdir(join(dir, 'dav', 'layout', 'packs', 'c0')), [pack]);
  await s.delete(`packs/${pack}`);
  assert.deepEqual(await readdir(join(dir, 'dav', 'layout', 'tmp')), [], 'no upload is left behind');
  await assert.rejects(s.put('tmp/x', new Uint8Array(1)), TypeError);
  // Uploads of killed puts: a day-old one is removed when the store is opened; a fresh one may be a running put.
  await writeFile(join(dir, 'dav', 'layout', 'tmp', 'aaaa.tmp'), 'half');
  await writeFile(join(dir, 'dav', 'layout', 'tmp', 'bbbb.tmp'), 'half, long ago');
  const old = new Date(Date.now() - 25 * 3600 * 1000);
  await utimes(join(dir, 'dav', 'layout', 'tmp', 'bbbb.tmp'), old, old);
  assert.deepEqual((await s.list('')).sort(), [`data/${id}`, 'manifests/1']);
  keep(await WebDavStorage.open(davUrl('layout'), { env: davEnv }));
  assert.deepEqual(await readdir(join(dir, 'dav', 'layout', 'tmp')), ['aaaa.tmp']);
});

/** A proxy that drops every Range header: the server answers 200 with the whole object. */
async function rangeIgnoringProxy(targetPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers };
    delete headers.range;
    const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

test('a server that ignores Range: only the asked-for window is kept, and nothing larger is ever allocated (spec §4.4)', async () => {
  const big = new Uint8Array(32 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
  for (const [kind, port, open] of [
    ['s3', () => s3.port, (p: number) => S3Storage.open(s3Url('ignored').replace(`:${s3.port}`, `:${p}`), { env: s3Env })],
    ['webdav', () => dav.port, (p: number) => WebDavStorage.open(davUrl('ignored').replace(`:${dav.port}`, `:${p}`), { env: davEnv, create: true })],
  ] as const) {
    const direct = keep(await open(port()));
    await direct.put('packs/' + 'ab'.repeat(32), big);
    const proxy = await rangeIgnoringProxy(port());
    try {
      const through = keep(await open(proxy.port));
      const asked: number[] = [];
      const got = await through.get('packs/' + 'ab'.repeat(32), { offset: 20 * 4096, length: 5000 }, (n) => (asked.push(n), new Uint8Array(n)));
      assert.deepEqual(got, big.subarray(20 * 4096, 20 * 4096 + 5000), kind);
      assert.ok(asked.every((n) => n <= 5000), `${kind}: allocated ${asked}`);
    } finally {
      await proxy.close();
    }
  }
});
