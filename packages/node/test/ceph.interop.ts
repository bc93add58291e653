/**
 * The S3 backend against Ceph's S3 gateway (radosgw from Debian, on a one-node cluster started
 * here on loopback: real-servers.ts). Part of `npm run test:interop` (CI runs it too), not of
 * `npm test`: it needs the Ceph packages (`scripts/setup.sh interop`) and about 15 s to start.
 * The unchanged storage conformance suite, what the gateway guarantees to racing conditional puts
 * (spec/format.md §7.1), a round trip, two devices backing up at the same moment, and the gateway
 * stopped for 10 s in the middle of a `coffer backup` (interop.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { storageConformance } from '@coffer/core/testing';
import { S3Storage } from '@coffer/node/s3';
import { outage, racingDevices, roundTrip } from './interop.js';
import { startCeph, version, type RealServer } from './real-servers.js';
import { makeTree } from './trees.js';

const name = version('ceph');
let ceph: RealServer;
let client: S3Client;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-interop-s3-'));
  const t = Date.now();
  ceph = await startCeph();
  process.stderr.write(`${name} answered after ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  client = new S3Client({
    endpoint: `http://127.0.0.1:${ceph.port}`, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: ceph.env.AWS_ACCESS_KEY_ID!, secretAccessKey: ceph.env.AWS_SECRET_ACCESS_KEY! },
  });
});
after(async () => {
  client?.destroy();
  await ceph?.close();
  await rm(dir, { recursive: true, force: true });
});

const open = (path: string) => S3Storage.open(ceph.url(path), { env: ceph.env });
const work = async (n: string) => {
  const d = join(dir, n);
  await mkdir(d, { recursive: true });
  return d;
};

storageConformance.forEach((c, i) => {
  test(`${name}: storage conformance: ${c.name}`, async () => {
    const s = await open(`conf${i}`);
    try {
      await c.run(s);
    } finally {
      await s.close();
    }
  });
});

test(`${name}: the gateway enforces If-None-Match: one winner per race of conditional puts, and puts skip the HEAD check`, async (t) => {
  const races = 30;
  let winners = 0;
  for (let i = 0; i < races; i++) {
    const r = await Promise.allSettled([1, 2, 3, 4].map((j) => client.send(new PutObjectCommand({ Bucket: 'coffer', Key: `races/${i}`, Body: `client ${j}`, IfNoneMatch: '*' }))));
    const won = r.filter((x) => x.status === 'fulfilled').length;
    assert.equal(won, 1, `race ${i}: exactly one winner`);
    for (const x of r) if (x.status === 'rejected') assert.equal((x.reason as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 412);
    winners += won;
  }
  t.diagnostic(`${name}: ${winners} winners in ${races} races of 4 conditional puts`);
  const s = await open('probe');
  try {
    await s.put(`data/${'ab'.repeat(32)}`, new Uint8Array([1]));
    assert.equal(s.checksBeforePut, false, 'the first data object showed that the gateway enforces If-None-Match');
  } finally {
    await s.close();
  }
});

test(`${name}: backup, change, backup, restore both on a new device`, async () => {
  await roundTrip(open, 'round-trip', await work('round-trip'));
});

test(`${name}: two devices back up at the same moment, 20 rounds: every backup that reports success restores`, async (t) => {
  const r = await racingDevices(open, 'racing', await work('racing'));
  t.diagnostic(`${name}: ${r.succeeded} backups succeeded, ${r.conflicts} lost a race and said so`);
});

test(`${name}: the gateway stopped for 10 s in the middle of a coffer backup: the backup waits, completes in the same run, and restores`, async (t) => {
  const src = join(dir, 'outage-src');
  await makeTree(src, 32 * 1024 * 1024, 5);
  const r = await outage(ceph, open, 'outage', await work('outage'), src);
  t.diagnostic(`${name}: ${r.storedBeforeOutage} of ${r.stored} objects stored before the outage; ${r.waits} waiting notices`);
});
