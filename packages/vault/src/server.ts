// The vault front end: fastify over HTTP (spec/vault-protocol.md §5). It holds no realm secret:
// it verifies nothing itself, moves ciphertext to the boundary and sealed records to the store,
// and sends a response only after the store made the boundary's effect durable.

import { existsSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { protocol } from '@coffer/core/vault';
import { Boundary, RequestRejectedError, type Effect, type OpenedRequest, type ProcessResult } from './boundary.js';
import { HsmUnavailableError, RecordStoreError, UnsealFailedError } from './errors.js';
import { createMetrics, type VaultMetrics } from './metrics.js';
import { RateLimiter, type RateLimit } from './ratelimit.js';
import { Readiness } from './readiness.js';
import type { RecordStore } from './store/types.js';

/**
 * Test-only hook: when this environment variable names a file that exists, the server pauses
 * after committing a record change and before answering, so a test can SIGKILL it there.
 * Never set it in production.
 */
export const INSECURE_TEST_ONLY_PAUSE_ENV = 'COFFER_VAULT_INSECURE_TEST_ONLY_PAUSE_AFTER_COMMIT_IF_FILE_EXISTS';

export interface ServerOptions {
  boundary: Boundary;
  store: RecordStore;
  realmPublicKey: string;
  /** pino options or false. Authorization headers are always redacted. */
  logger?: FastifyServerOptions['logger'];
  /** A writable for logs (defaults to stdout). */
  logStream?: { write(s: string): unknown };
  /** Max compare-and-set retries per request. */
  maxRetries?: number;
  /**
   * Request rate limits per node, on top of the attempt limit: per verified account and per client
   * address. Defaults DEFAULT_RATE_LIMITS; `false` turns a limit off.
   */
  rateLimits?: { perAccount?: RateLimit | false; perAddress?: RateLimit | false };
  /** Injected clock for the rate limiters and the readiness cache (ms). */
  now?: () => number;
  /** Readiness probes time out after this (default 2000 ms). */
  readinessTimeoutMs?: number;
  /** Background readiness checks keep `coffer_vault_ready` current (default every 5000 ms). */
  readinessIntervalMs?: number;
}

export const DEFAULT_RATE_LIMITS: { perAccount: RateLimit; perAddress: RateLimit } = {
  perAccount: { perMinute: 60, burst: 20 },
  perAddress: { perMinute: 1200, burst: 200 },
};

/** A vault HTTP server with its metrics and a way to stop taking new work (graceful shutdown). */
export interface VaultServer {
  app: FastifyInstance;
  metrics: VaultMetrics;
  /** Readiness turns 503 and new vault requests get 503; requests already running finish. */
  drain(): void;
}

const MAX_RETRIES = 64;

export async function buildServer(o: ServerOptions): Promise<FastifyInstance> {
  return (await buildVaultServer(o)).app;
}

export async function buildVaultServer(o: ServerOptions): Promise<VaultServer> {
  const metrics = createMetrics();
  const now = o.now ?? Date.now;
  const limitAccount = o.rateLimits?.perAccount === false ? null : new RateLimiter(o.rateLimits?.perAccount ?? DEFAULT_RATE_LIMITS.perAccount, now);
  const limitAddress = o.rateLimits?.perAddress === false ? null : new RateLimiter(o.rateLimits?.perAddress ?? DEFAULT_RATE_LIMITS.perAddress, now);
  let draining = false;
  const pauseFile = process.env[INSECURE_TEST_ONLY_PAUSE_ENV];
  const app = Fastify({
    logger:
      o.logger === false
        ? false
        : {
            level: 'info',
            redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], censor: '[redacted]' },
            ...(o.logStream ? { stream: o.logStream } : {}),
            ...(typeof o.logger === 'object' ? o.logger : {}),
          },
    bodyLimit: protocol.MAX_REQUEST_BYTES,
    connectionTimeout: 15_000,
    requestTimeout: 15_000,
    keepAliveTimeout: 5_000,
    return503OnClosing: true,
  });
  if (pauseFile) app.log.warn({ env: INSECURE_TEST_ONLY_PAUSE_ENV }, 'TEST-ONLY pause-after-commit hook is enabled: never use this in production');

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: protocol.MAX_REQUEST_BYTES }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const status = err.statusCode ?? 500;
    if (status === 413) return reply.code(413).send({ error: 'too-large', message: `request body larger than ${protocol.MAX_REQUEST_BYTES} bytes` });
    if (status === 415) return reply.code(400).send({ error: 'malformed-request', message: 'content-type must be application/octet-stream' });
    if (status < 500) return reply.code(400).send({ error: 'malformed-request', message: 'the HTTP request is malformed' });
    req.log.error({ err: { name: err.name, message: err.message } }, 'internal error');
    return reply.code(500).send({ error: 'internal', message: 'internal error in the vault; the operator has the details in the logs' });
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.httpRequests.inc({ route, code: String(reply.statusCode) });
    metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
  });

  app.get('/healthz', async () => ({ ok: true }));
  // Ready = not draining, the database answers, and the HSM answers (spec §5).
  const readiness = new Readiness({
    store: () => o.store.ping(),
    hsm: () => o.boundary.probeHsm(),
    gauge: metrics.ready,
    now,
    ...(o.readinessTimeoutMs !== undefined ? { timeoutMs: o.readinessTimeoutMs } : {}),
    ...(o.readinessIntervalMs !== undefined ? { intervalMs: o.readinessIntervalMs } : {}),
  });
  readiness.start();
  app.addHook('onClose', async () => readiness.stop());
  app.get('/readyz', async (_req, reply) => {
    const s = await readiness.check();
    return s.ready ? { ready: true } : reply.code(503).send(s);
  });
  app.get('/metrics', async (_req, reply) => {
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/v1/realm', async () => ({ realmPublicKey: o.realmPublicKey, protocolVersion: protocol.PROTOCOL_VERSION }));

  // In-process serialisation per account avoids compare-and-set thrash; correctness across
  // processes and nodes still comes from compare-and-set alone.
  const locks = new Map<string, Promise<unknown>>();
  async function withAccountLock<T>(account: string, f: () => Promise<T>): Promise<T> {
    const prev = locks.get(account) ?? Promise.resolve();
    const run = prev.then(f, f);
    const tail = run.catch(() => undefined);
    locks.set(account, tail);
    try {
      return await run;
    } finally {
      if (locks.get(account) === tail) locks.delete(account);
    }
  }

  async function apply(account: string, e: Effect): Promise<boolean> {
    switch (e.kind) {
      case 'none':
        return true;
      case 'put':
        return o.store.compareAndSet(account, e.expectedVersion, e.newVersion, e.sealed);
      case 'delete':
        return o.store.delete(account, e.expectedVersion);
    }
  }

  const rateLimited = (reply: import('fastify').FastifyReply, which: 'account' | 'address', retryAfterMs: number) => {
    metrics.rejected.inc({ code: `rate-limited-${which}` });
    return reply
      .code(429)
      .header('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))))
      .send({ error: 'rate-limited', message: `too many requests for this ${which}; nothing was counted`, hint: 'wait for the time in Retry-After, then try again' });
  };

  app.post(protocol.VAULT_PATH, async (req, reply) => {
    if (draining) return reply.code(503).header('connection', 'close').send({ error: 'unavailable', message: 'this vault node is shutting down', hint: 'send the request to another node' });
    const byAddress = limitAddress?.take(req.ip) ?? 0;
    if (byAddress > 0) return rateLimited(reply, 'address', byAddress);
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    const body = req.body;
    if (!Buffer.isBuffer(body)) return reply.code(400).send({ error: 'malformed-request', message: 'content-type must be application/octet-stream' });
    let opened: OpenedRequest;
    try {
      opened = await o.boundary.openRequest(token, new Uint8Array(body.buffer, body.byteOffset, body.length));
    } catch (e) {
      if (e instanceof RequestRejectedError) {
        metrics.rejected.inc({ code: e.code });
        req.log.info({ rejected: e.code }, 'request rejected');
        return reply.code(e.httpStatus).send({ error: e.code, message: e.message, hint: e.hint });
      }
      throw e;
    }
    const account = opened.accountId;
    const byAccount = limitAccount?.take(account) ?? 0;
    if (byAccount > 0) return rateLimited(reply, 'account', byAccount);
    let result: ProcessResult | null = null;
    try {
      result = await withAccountLock(account, async () => {
        const retries = o.maxRetries ?? MAX_RETRIES;
        for (let i = 0; i < retries; i++) {
          const stored = await o.store.get(account);
          const r = await o.boundary.process(opened, stored);
          if (await apply(account, r.effect)) {
            if (pauseFile && r.effect.kind !== 'none' && existsSync(pauseFile)) {
              process.stderr.write('TEST-ONLY: committed, pausing before the response\n');
              await new Promise(() => undefined); // wait to be killed
            }
            return r;
          }
          metrics.conflicts.inc();
          await new Promise((res) => setTimeout(res, Math.random() * 2));
        }
        return null;
      });
    } catch (e) {
      if (e instanceof UnsealFailedError) {
        req.log.error({ account, err: { name: e.name, message: e.message } }, 'stored record failed to unseal (corrupted, rolled from elsewhere, or wrong HSM key)');
        return reply.code(500).send({ error: 'record-unreadable', message: 'the vault cannot read the record for this account', hint: 'contact the vault operator' });
      }
      // No durable count, no answer: the database or the HSM is unreachable, or a commit's
      // outcome is unknown. The client retries (maybe on another node), which re-reads the record.
      if (e instanceof RecordStoreError || e instanceof HsmUnavailableError) {
        metrics.backendErrors.inc({ backend: e instanceof RecordStoreError ? 'store' : 'hsm' });
        req.log.warn({ err: { name: e.name, message: e.message } }, 'backend unavailable; request refused');
        return reply.code(503).send({ error: 'unavailable', message: 'the vault cannot reach its database or HSM right now; nothing was answered', hint: 'try again in a moment' });
      }
      throw e;
    }
    if (!result) return reply.code(503).send({ error: 'unavailable', message: 'too many concurrent changes to this account', hint: 'try again in a moment' });
    metrics.observe(result.outcome);
    req.log.info({ account }, 'vault request done');
    return reply.code(200).header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(Buffer.from(result.response));
  });

  return {
    app,
    metrics,
    drain() {
      draining = true;
      readiness.drain();
    },
  };
}
