// Operations: rate limits, readiness (database and HSM), graceful shutdown, metrics hygiene.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as opaque from '@serenity-kit/opaque';
import { protocol } from '@coffer/core/vault';
import { Boundary } from '../src/boundary.js';
import { RateLimiter } from '../src/ratelimit.js';
import { initRealm, openRealm, readRealmFile, rotateChannelKey } from '../src/realm.js';
import { buildVaultServer, refusalHeaders, type VaultServer } from '../src/server.js';
import { SqliteRecordStore } from '../src/store/sqlite.js';
import type { Hsm } from '../src/hsm/types.js';
import { cleanup, FaultyStore, rawCall, tempDir } from './helpers.js';

describe('rate limiter', () => {
  it('allows a burst, then the sustained rate, per key', () => {
    let now = 0;
    const r = new RateLimiter({ perMinute: 60, burst: 3 }, () => now);
    assert.deepEqual([r.take('a'), r.take('a'), r.take('a')], [0, 0, 0]);
    assert.equal(r.take('a'), 1000, 'the 4th waits one second');
    assert.equal(r.take('b'), 0, 'other keys are independent');
    now += 1000;
    assert.equal(r.take('a'), 0);
    assert.ok(r.take('a') > 0);
    now += 60_000;
    assert.deepEqual([r.take('a'), r.take('a'), r.take('a'), r.take('a') > 0], [0, 0, 0, true], 'refills only up to the burst');
  });

  it('rejects a nonsensical limit', () => {
    assert.throws(() => new RateLimiter({ perMinute: 0, burst: 1 }), RangeError);
    assert.throws(() => new RateLimiter({ perMinute: 10, burst: 0 }), RangeError);
  });
});

describe('vault server operations (in process, software HSM realm)', () => {
  let dir: string;
  let hsm: Hsm;
  let boundary: Boundary;
  let realmPublicKey: string;
  let store: FaultyStore;
  const servers: VaultServer[] = [];
  const start = async (o: Partial<Parameters<typeof buildVaultServer>[0]> = {}) => {
    const s = await buildVaultServer({ boundary, store, realmPublicKey, logger: false, ...o });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    servers.push(s);
    const a = s.app.server.address();
    return { s, v: { url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, realmPublicKey } };
  };

  before(async () => {
    await opaque.ready;
    dir = tempDir('coffer-ops-');
    const quiet = () => undefined;
    await initRealm({ dataDir: dir, hsm: 'software', warn: quiet });
    const r = await openRealm(dir, { warn: quiet });
    hsm = r.hsm;
    boundary = r.boundary;
    realmPublicKey = r.file.realmPublicKey;
    store = new FaultyStore(SqliteRecordStore.open(join(dir, 'records.sqlite')));
  });
  after(async () => {
    for (const s of servers) await s.app.close();
    await store.close();
    await hsm.close();
    cleanup(dir);
  });

  it('limits requests per account, leaving other accounts alone', async () => {
    const { v } = await start({ rateLimits: { perAccount: { perMinute: 6, burst: 3 }, perAddress: false } });
    const t = boundary.issueDevelopmentToken('busy', 600);
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await rawCall(v, t, 'busy', 'status', {})).httpStatus);
    assert.deepEqual(codes, [200, 200, 200, 429]);
    const r = await rawCall(v, t, 'busy', 'status', {});
    assert.equal(r.error?.error, 'rate-limited');
    assert.equal((await rawCall(v, boundary.issueDevelopmentToken('calm', 600), 'calm', 'status', {})).httpStatus, 200);
  });

  it('limits requests per client address before doing any work', async () => {
    const { v, s } = await start({ rateLimits: { perAccount: false, perAddress: { perMinute: 60, burst: 2 } } });
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await rawCall(v, boundary.issueDevelopmentToken(`addr-${i}`, 600), `addr-${i}`, 'status', {})).httpStatus);
    assert.deepEqual(codes, [200, 200, 429]);
    const text = await s.metrics.registry.metrics();
    assert.match(text, /coffer_vault_rejected_total\{code="rate-limited-address"\} 1/);
  });

  it('takes the client address from X-Forwarded-For only when the proxy is trusted', async () => {
    const limits = { perAccount: false as const, perAddress: { perMinute: 1, burst: 1 } };
    const send = (s: VaultServer, xff: string) =>
      s.app.inject({ method: 'POST', url: '/v1/vault', remoteAddress: '10.1.2.3', headers: { 'x-forwarded-for': xff, 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(8) }).then((r) => r.statusCode);
    const trusting = (await start({ rateLimits: limits, trustProxy: ['10.0.0.0/8'] })).s;
    assert.deepEqual([await send(trusting, '198.51.100.1'), await send(trusting, '198.51.100.2'), await send(trusting, '198.51.100.1')], [401, 401, 429], 'one bucket per forwarded client');
    const naive = (await start({ rateLimits: limits })).s;
    assert.deepEqual([await send(naive, '198.51.100.1'), await send(naive, '198.51.100.2')], [401, 429], 'an untrusted header is ignored: one bucket for the proxy');
    const otherProxy = (await start({ rateLimits: limits, trustProxy: ['192.0.2.1'] })).s;
    assert.deepEqual([await send(otherProxy, '198.51.100.1'), await send(otherProxy, '198.51.100.2')], [401, 429], 'only the proxies named are trusted');
  });

  it('closes a connection whose body trickles in slower than the body timeout', async () => {
    const { v, s } = await start({ bodyTimeoutMs: 600, rateLimits: { perAccount: false, perAddress: false } });
    const u = new URL(v.url);
    const t0 = Date.now();
    const sock = connect(Number(u.port), u.hostname);
    sock.on('error', () => undefined); // the server resets the connection: that is the point
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write(`POST /v1/vault HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 2000\r\n\r\n`);
    // One byte every 100 ms keeps the socket busy, so no idle timeout fires.
    const drip = setInterval(() => sock.writable && sock.write('x'), 100);
    const closedAfter = await new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
    clearInterval(drip);
    assert.ok(closedAfter >= 550 && closedAfter < 2500, `closed after ${closedAfter} ms, timeout 600 ms`);
    assert.match(await s.metrics.registry.metrics(), /coffer_vault_rejected_total\{code="body-timeout"\} 1/);
    // A request that arrives in time is unaffected.
    assert.equal((await rawCall(v, boundary.issueDevelopmentToken('quick', 600), 'quick', 'status', {})).httpStatus, 200);
  });

  it('answers a request that arrived in time however long its answer waits (no idle timeout while it is handled)', async () => {
    const { v } = await start({
      bodyTimeoutMs: 300,
      rateLimits: { perAccount: false, perAddress: false },
      protocols: [{ register: (app) => app.post('/slow', async () => new Promise((r) => setTimeout(() => r({ waited: true }), 900))) }],
    });
    // A fresh connection (the idle timeout applies to a socket's first request).
    const res = await fetch(new URL('/slow', v.url), { method: 'POST', headers: { connection: 'close', 'content-type': 'application/json' }, body: '{}' });
    assert.deepEqual(await res.json(), { waited: true });
  });

  it('lets a second protocol register its routes with the shared limits and durable steps', async () => {
    const { s } = await start({
      rateLimits: { perAccount: { perMinute: 60, burst: 2 }, perAddress: false },
      protocols: [
        {
          register(app, ctx) {
            app.post('/second-protocol', async (req, reply) => {
              const { account, id } = req.body as { account: string; id: string };
              const limited = ctx.limitAccount(account);
              if (limited) return refusalHeaders(reply, limited).send(limited.error);
              const r = await ctx.commit(account, id, async (stored) => ({ change: { kind: 'none' }, answer: { had: stored !== null } }));
              return r.kind === 'ok' ? r.answer : reply.code(400).send({ error: r.kind });
            });
          },
        },
      ],
    });
    const call = (id: string) => s.app.inject({ method: 'POST', url: '/second-protocol', payload: { account: 'juice', id } });
    assert.deepEqual((await call('request-1')).json(), { had: false });
    assert.deepEqual([(await call('request-1')).statusCode, (await call('request-2')).statusCode], [400, 429], 'a request id once per store; the account limit applies');
  });

  it('is ready only when the database answers and the HSM answers', async () => {
    let clock = Date.now();
    const { s } = await start({ now: () => clock });
    assert.deepEqual((await s.app.inject({ url: '/readyz' })).json(), { ready: true });
    store.failPing = true;
    assert.equal((await s.app.inject({ url: '/readyz' })).statusCode, 200, 'the result of the last second is reused');
    clock += 1000;
    const down = await s.app.inject({ url: '/readyz' });
    store.failPing = false;
    assert.equal(down.statusCode, 503);
    assert.deepEqual(down.json(), { ready: false, store: false, hsm: true, draining: false });
    const broken = await buildVaultServer({
      boundary: Object.assign(Object.create(boundary) as Boundary, { probeHsm: () => Promise.reject(new Error('token removed')) }),
      store,
      realmPublicKey,
      logger: false,
    });
    const r = await broken.app.inject({ url: '/readyz' });
    assert.equal(r.statusCode, 503);
    assert.equal(r.json().hsm, false);
    await broken.app.close();
  });

  it('keeps coffer_vault_ready current without anyone calling /readyz', async () => {
    const { s } = await start({ readinessIntervalMs: 20 });
    const ready = async () => Number(/^coffer_vault_ready (\S+)$/m.exec(await s.metrics.registry.metrics())?.[1]);
    const waitFor = async (want: number) => {
      for (let i = 0; i < 200 && (await ready()) !== want; i++) await new Promise((r) => setTimeout(r, 10));
      return ready();
    };
    assert.equal(await waitFor(1), 1, 'a healthy node reads 1 from the start');
    store.failPing = true;
    try {
      assert.equal(await waitFor(0), 0, 'and 0 soon after the database goes away');
    } finally {
      store.failPing = false;
    }
    assert.equal(await waitFor(1), 1);
  });

  it('/readyz spends nothing of the record key and probes the HSM at most once a second', async () => {
    const counts = { seal: 0, unseal: 0, probe: 0 };
    const counting: Hsm = new Proxy(hsm, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (prop === 'seal' || prop === 'unseal' || prop === 'probe') counts[prop]++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const f = readRealmFile(dir);
    const b = await Boundary.start({
      realmIdText: f.realmId,
      realmPublicKey: f.realmPublicKey,
      hsm: counting,
      realmKeyLabel: f.realmKeyLabel,
      recordKeyLabel: f.recordKeyLabel,
      sealedSecrets: protocol.fromB64u(f.sealedSecrets),
    });
    const sealsAtStart = counts.seal;
    const { s } = await start({ boundary: b, readinessIntervalMs: 60_000 });
    const codes = new Set<number>();
    for (let i = 0; i < 300; i++) codes.add((await s.app.inject({ url: '/readyz' })).statusCode);
    assert.deepEqual([...codes], [200]);
    assert.equal(counts.seal - sealsAtStart, 0, 'no seal under the record key');
    assert.equal(counts.unseal, 1, 'only the realm secrets were unsealed, at start');
    assert.ok(counts.probe >= 1 && counts.probe <= 3, `HSM probed ${counts.probe} times for 300 calls`);
  });

  it('a rotated channel key opens requests until its overlap ends, then never (injected clock)', async () => {
    const d = tempDir('coffer-rotate-');
    const quiet = () => undefined;
    let clock = Date.now();
    await initRealm({ dataDir: d, hsm: 'software', warn: quiet });
    const oldKey = readRealmFile(d).realmPublicKey;
    const next = await rotateChannelKey({ dataDir: d, overlapMs: 60_000, now: () => clock, warn: quiet });
    const r = await openRealm(d, { warn: quiet, now: () => clock });
    const st = SqliteRecordStore.open(join(d, 'records.sqlite'));
    let server: VaultServer | undefined;
    try {
      const { v, s } = await start({ boundary: r.boundary, store: st, realmPublicKey: next.realmPublicKey, now: () => clock, rateLimits: { perAccount: false, perAddress: false } });
      server = s;
      const t = r.boundary.issueDevelopmentToken('rotated', 3600);
      const status = async (key: string) => {
        const res = await rawCall({ url: v.url, realmPublicKey: key }, t, 'rotated', 'status', {}, { ts: clock });
        return res.inner?.status ?? res.error?.error;
      };
      assert.deepEqual([await status(oldKey), await status(next.realmPublicKey)], ['ok', 'ok'], 'both keys during the overlap');
      clock += 59_000;
      assert.deepEqual([await status(oldKey), await status(next.realmPublicKey)], ['ok', 'ok'], 'a second before its end');
      clock += 1_000;
      assert.deepEqual([await status(oldKey), await status(next.realmPublicKey)], ['undecryptable-request', 'ok'], 'only the new key once it has ended');
    } finally {
      await server?.app.close();
      await st.close();
      await r.hsm.close();
      cleanup(d);
    }
  });

  it('graceful shutdown: not ready and no new work once draining; the request in flight finishes', async () => {
    const { s, v } = await start();
    const t = boundary.issueDevelopmentToken('slow', 600);
    let release!: () => void;
    store.gate = new Promise((r) => (release = r));
    const entered = store.entered;
    const inflight = rawCall(v, t, 'slow', 'status', {});
    while (store.entered === entered) await new Promise((r) => setTimeout(r, 5));
    s.drain();
    assert.equal((await s.app.inject({ url: '/readyz' })).json().draining, true);
    const refused = await rawCall(v, t, 'slow', 'status', {});
    assert.equal(refused.httpStatus, 503);
    let closed = false;
    const closing = s.app.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(closed, false, 'close waits for the request in flight');
    store.gate = null;
    release();
    const r = await inflight;
    assert.equal(r.httpStatus, 200);
    assert.equal(r.inner?.status, 'ok');
    await closing;
  });
});
