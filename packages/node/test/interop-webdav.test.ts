/**
 * The WebDAV backend against the servers people run, from Debian's packages (scripts/setup.sh):
 * Apache 2.4 mod_dav_fs, nginx with dav-ext and `rclone serve webdav`, each started here on
 * loopback (real-servers.ts). Per server: the unchanged storage conformance suite, clients racing
 * to make one folder, what the server's MOVE guarantees (spec/format.md §7.1), a backup / change /
 * backup / restore round trip, two devices backing up at the same moment, and the server stopped
 * for 10 s in the middle of a `coffer backup` (interop.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storageConformance } from '@coffer/core/testing';
import { StorageRefusedError, WebDavStorage } from '@coffer/node';
import { outage, racingDevices, roundTrip } from './interop.js';
import { startDav, version, type DavKind, type RealServer } from './real-servers.js';
import { makeTree } from './trees.js';

const kinds: DavKind[] = ['apache', 'nginx', 'rclone'];
const names = Object.fromEntries(kinds.map((k) => [k, version(k)])) as Record<DavKind, string>;
const servers = {} as Record<DavKind, RealServer>;
let dir: string;
let outageSrc: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-interop-'));
  outageSrc = join(dir, 'outage-src');
  await Promise.all([
    ...kinds.map(async (k) => (servers[k] = await startDav(k))),
    makeTree(outageSrc, 32 * 1024 * 1024, 5),
  ]);
});
after(async () => {
  await Promise.all(Object.values(servers).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

const opener = (k: DavKind) => (path: string) => WebDavStorage.open(servers[k].url(path), { env: servers[k].env, create: true });
const work = async (name: string) => {
  const d = join(dir, 'work', name);
  await mkdir(d, { recursive: true });
  return d;
};

/** One raw request to the server, as `alice` (or with `auth`), on a connection of its own: its status. */
function raw(k: DavKind, method: string, path: string, headers: Record<string, string> = {}, body?: string, auth?: string): Promise<number> {
  const s = servers[k];
  const basic = auth ?? 'Basic ' + Buffer.from(`${s.env.COFFER_WEBDAV_USER}:${s.env.COFFER_WEBDAV_PASSWORD}`).toString('base64');
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.port, method, path, agent: false, headers: { authorization: basic, ...headers, ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

for (const k of kinds) {
  storageConformance.forEach((c, i) => {
    test(`${names[k]}: storage conformance: ${c.name}`, async () => {
      const s = await opener(k)(`conf${i}`);
      try {
        await c.run(s);
      } finally {
        await s.close();
      }
    });
  });

  test(`${names[k]}: four clients filling the same 32 new shard folders at once all succeed (the loser of a MKCOL race gets 403, 405 or 423)`, async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(() => opener(k)('mkcol-race')));
    try {
      const ids = (c: number) => Array.from({ length: 32 }, (_, i) => `data/${i.toString(16).padStart(2, '0')}${String(c).repeat(62)}`);
      await Promise.all(clients.map((s, c) => Promise.all(ids(c + 1).map((n) => s.put(n, new Uint8Array([c]))))));
      assert.equal((await clients[0]!.list('data/')).length, 4 * 32);
    } finally {
      await Promise.all(clients.map((s) => s.close()));
    }
  });

  test(`${names[k]}: what the server guarantees when clients race (MKCOL of one folder, MOVE with Overwrite: F to one name)`, async (t) => {
    const races = 30;
    const base = `/dav/races/`;
    await raw(k, 'MKCOL', base);
    const mkcol: Record<number, number> = {};
    const move: Record<number, number> = {};
    let twoWinners = 0;
    for (let i = 0; i < races; i++) {
      for (const st of await Promise.all([1, 2, 3, 4].map(() => raw(k, 'MKCOL', `${base}folder-${i}/`)))) mkcol[st] = (mkcol[st] ?? 0) + 1;
      const bodies = [1, 2, 3, 4].map((j) => `client ${j} `.repeat(5000));
      await Promise.all(bodies.map((b, j) => raw(k, 'PUT', `${base}up-${i}-${j}`, {}, b)));
      const st = await Promise.all(bodies.map((_, j) => raw(k, 'MOVE', `${base}up-${i}-${j}`, { destination: `http://127.0.0.1:${servers[k].port}${base}name-${i}`, overwrite: 'F' })));
      for (const s of st) move[s] = (move[s] ?? 0) + 1;
      const won = st.filter((s) => s === 201 || s === 204).length;
      assert.ok(won >= 1, `race ${i}: someone wins (${st})`);
      if (won > 1) twoWinners++;
    }
    t.diagnostic(`${names[k]}: MKCOL answers ${JSON.stringify(mkcol)}; MOVE answers ${JSON.stringify(move)}; more than one winner in ${twoWinners} of ${races} races`);
    assert.ok(Object.keys(mkcol).every((s) => ['200', '201', '403', '405', '423'].includes(s)), `MKCOL answers ${JSON.stringify(mkcol)}`);
    // spec/format.md §7.1 says rclone's MOVE is atomic: if that stops being true, the table must change.
    if (k === 'rclone') assert.equal(twoWinners, 0, 'rclone: one winner per race');
  });

  test(`${names[k]}: backup, change, backup, restore both on a new device`, async () => {
    await roundTrip(opener(k), 'round-trip', await work(`${k}-round-trip`));
  });

  test(`${names[k]}: two devices back up at the same moment, 20 rounds: every backup that reports success restores`, async (t) => {
    const r = await racingDevices(opener(k), 'racing', await work(`${k}-racing`));
    t.diagnostic(`${names[k]}: ${r.succeeded} backups succeeded, ${r.conflicts} lost a race and said so`);
  });
}

test(`Apache: a 403 names what was forbidden, and only a 401 blames the credentials`, async () => {
  const k = 'apache';
  await assert.rejects(WebDavStorage.open(servers[k].url('forbidden/store'), { env: servers[k].env, create: true }), (e: unknown) => {
    assert.ok(e instanceof StorageRefusedError, String(e));
    assert.match(e.message, /the server forbade PROPFIND of \/dav\/forbidden\/store\/ \(403\)/);
    assert.doesNotMatch(e.message + e.hint, /credentials/);
    return true;
  });
  await assert.rejects(WebDavStorage.open(servers[k].url('x'), { env: { ...servers[k].env, COFFER_WEBDAV_PASSWORD: 'wrong' } }), /the credentials were refused \(401\)/);
});

test(`nginx with its default upload limit (1 MiB): a chunk is refused with a message that says to raise it`, async () => {
  const small = await startDav('nginx', { nginxMaxBody: '1m' });
  try {
    const s = await WebDavStorage.open(small.url('limit'), { env: small.env, create: true });
    try {
      await assert.rejects(s.put(`data/${'cd'.repeat(32)}`, new Uint8Array(1024 * 1024 + 296)), (e: unknown) => {
        assert.ok(e instanceof StorageRefusedError, String(e));
        assert.match(e.message, /the server refused an upload as too large \(413 to PUT of \/dav\/limit\/tmp\/[0-9a-f]+\.tmp\)/);
        assert.match(e.hint, /client_max_body_size/);
        return true;
      });
    } finally {
      await s.close();
    }
  } finally {
    await small.close();
  }
});

test(`each server stopped for 10 s in the middle of a coffer backup: the backup waits, completes in the same run, and restores`, async (t) => {
  // All three at once (mostly waiting); each runs to its end before the test reports.
  const results = await Promise.allSettled(
    kinds.map(async (k) => {
      const r = await outage(servers[k], opener(k), 'outage', await work(`${k}-outage`), outageSrc);
      t.diagnostic(`${names[k]}: ${r.storedBeforeOutage} of ${r.stored} objects stored before the outage; ${r.waits} waiting notices`);
    }),
  );
  for (const r of results) if (r.status === 'rejected') throw r.reason;
});
