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
import { ObjectExistsError, ObjectNotFoundError, storageConformance, StorageUnavailableError, type Storage } from '@coffer/core';
import { openStorage, redactUrl, S3Storage, StorageRefusedError, WebDavStorage } from '@coffer/node';
import { backoffDelay, withRetry, type Verdict } from '../src/retry.js';
import { faultProxy, startServer, type ServerProcess } from './servers.js';

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

test('retry layer: full-jitter backoff, permanent failures once, transient ones until the last attempt', async () => {
  const policy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffDelay(policy, 1, () => 0.999), 99);
  assert.equal(backoffDelay(policy, 3, () => 0.5), 200);
  assert.equal(backoffDelay(policy, 9, () => 0.999), 999, 'capped at maxDelayMs');
  assert.equal(backoffDelay(policy, 2, () => 0), 0, 'full jitter starts at zero');
  const waits: number[] = [];
  const p = { ...policy, random: () => 0.5, sleep: async (ms: number) => void waits.push(ms) };
  let calls = 0;
  const transient = (): Verdict => ({ kind: 'transient', reason: 'the server answered 503' });
  await assert.rejects(withRetry('store', 'reading x', p, transient, async () => { calls++; throw new Error('503'); }), (e: unknown) =>
    e instanceof StorageUnavailableError && !(e instanceof StorageRefusedError) && /store: reading x failed after 5 attempts: the server answered 503/.test(e.message));
  assert.equal(calls, 5);
  assert.deepEqual(waits, [50, 100, 200, 400]);
  calls = 0;
  const permanent = (): Verdict => ({ kind: 'permanent', reason: 'the bucket b does not exist', hint: 'create it' });
  await assert.rejects(withRetry('store', 'listing', p, permanent, async () => { calls++; throw new Error('404'); }), (e: unknown) =>
    e instanceof StorageRefusedError && e.hint === 'create it' && e.message === 'store: listing failed: the bucket b does not exist' && e.cause instanceof Error);
  assert.equal(calls, 1);
  calls = 0;
  assert.equal(await withRetry('store', 'x', p, transient, async (n) => { calls++; if (n < 3) throw new Error('reset'); return 'done'; }), 'done');
  assert.equal(calls, 3);
  await assert.rejects(withRetry('store', 'x', p, transient, async () => { throw new ObjectNotFoundError('x'); }), ObjectNotFoundError, 'answers pass through');
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

test('WebDAV: uploads in progress live in tmp/ and are never listed; data objects are sharded by their first two digits', async () => {
  const s = keep(await WebDavStorage.open(davUrl('layout'), { env: davEnv, create: true }));
  const id = 'ab'.repeat(32);
  await s.put(`data/${id}`, new Uint8Array([1, 2, 3]));
  await s.put('manifests/1', new Uint8Array([4]));
  assert.deepEqual((await s.list('')).sort(), [`data/${id}`, 'manifests/1']);
  assert.deepEqual(await readdir(join(dir, 'dav', 'layout', 'data', 'ab')), [id]);
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
