// The vault front end: fastify over HTTP or HTTPS (spec/vault-protocol.md §5). It holds no realm
// secret: it moves ciphertext to the boundary and sealed records to the store, and sends a
// response only after the store made the boundary's change durable (commit.ts).
//
// buildVaultServer = createApp (HTTP settings, errors, metrics) + the shared pieces of every
// protocol route (VaultRouteContext: store, rate limits, per-account locks, durable steps,
// backend failures) + the routes: health and readiness, `POST /v1/vault` (OPAQUE, below). A
// second protocol registers its own route with the same context.

import { existsSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { protocol } from '@coffer/core/vault';
import { Boundary, RequestRejectedError, type Answered, type OpenedRequest } from './boundary.js';
import { AccountLocks, commitStep, type CommitStepResult, type StepOutcome } from './commit.js';
import { HsmUnavailableError, RecordStoreError, UnsealFailedError } from './errors.js';
import { createMetrics, type VaultMetrics } from './metrics.js';
import { RateLimiter, type RateLimit } from './ratelimit.js';
import { Readiness } from './readiness.js';
import { REQUEST_ID_TTL_MS, type RecordStore, type StoredRecord } from './store/types.js';

/**
 * Test-only hook: when this environment variable names a file that exists, the server pauses
 * after committing a record change and before answering, so a test can SIGKILL it there.
 * Never set it in production.
 */
export const INSECURE_TEST_ONLY_PAUSE_ENV = 'COFFER_VAULT_INSECURE_TEST_ONLY_PAUSE_AFTER_COMMIT_IF_FILE_EXISTS';

/** What {@link buildVaultServer} takes: the realm's boundary and record store, and the front end's settings. */
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
  /** Serve HTTPS with this certificate chain and private key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed: the client
   * address (for the per-address rate limit and logs) is then the one they forwarded.
   */
  trustProxy?: string[];
  /** A request must arrive whole (headers and body) within this (default BODY_TIMEOUT_MS). */
  bodyTimeoutMs?: number;
  /**
   * Further protocols on the same port (a Juicebox realm at `POST /req`): each registers its
   * routes, and uses the context for rate limits, durable steps (commit) and backend failures.
   */
  protocols?: VaultProtocol[];
}

/** A protocol served beside `POST /v1/vault` on the same port (the Juicebox realm: juicebox/route.ts). */
export interface VaultProtocol {
  /** Adds its routes; they use `ctx` for rate limits, durable steps and backend failures. */
  register(app: FastifyInstance, ctx: VaultRouteContext): void;
}

/** The default request rates of one node: per account and per client address (spec/vault-protocol.md §5). */
export const DEFAULT_RATE_LIMITS: { perAccount: RateLimit; perAddress: RateLimit } = {
  perAccount: { perMinute: 60, burst: 20 },
  perAddress: { perMinute: 1200, burst: 200 },
};

/** A request body must arrive whole within this time (spec/vault-protocol.md §5). */
export const BODY_TIMEOUT_MS = 15_000;

/**
 * An idle keep-alive connection is closed after this. Longer than the idle timeout of the load
 * balancers and clients in front (60 s is common): the side that closes an idle connection must
 * be the one that reuses it last, or a request sent on it as it closes is lost ("other side
 * closed", a 502 at the balancer).
 */
export const KEEP_ALIVE_TIMEOUT_MS = 72_000;

/** A vault HTTP server with its metrics and a way to stop taking new work (graceful shutdown). */
export interface VaultServer {
  app: FastifyInstance;
  metrics: VaultMetrics;
  /** Readiness turns 503 and new vault requests get 503; requests already running finish. */
  drain(): void;
}

export async function buildServer(o: ServerOptions): Promise<FastifyInstance> {
  return (await buildVaultServer(o)).app;
}

/** Builds the vault's HTTP server (fastify) for one realm: POST /v1/vault, the other protocols given, /healthz, /readyz, /metrics. */
export async function buildVaultServer(o: ServerOptions): Promise<VaultServer> {
  // A database serves one realm: refuse to start on another realm's records (§9.1).
  await o.store.bindRealm(o.boundary.realmIdText);
  const metrics = createMetrics();
  const app = createApp(o, metrics);
  const readiness = new Readiness({
    store: () => o.store.ping(),
    hsm: () => o.boundary.probeHsm(),
    gauge: metrics.ready,
    ...(o.now ? { now: o.now } : {}),
    ...(o.readinessTimeoutMs !== undefined ? { timeoutMs: o.readinessTimeoutMs } : {}),
    ...(o.readinessIntervalMs !== undefined ? { intervalMs: o.readinessIntervalMs } : {}),
  });
  readiness.start();
  app.addHook('onClose', async () => readiness.stop());
  // Shutting down: every answer closes its connection, so close() need not wait for keep-alive
  // connections to go idle (KEEP_ALIVE_TIMEOUT_MS), and the client's next request opens a
  // connection to another node.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing || readiness.draining) void reply.header('connection', 'close');
  });
  const ctx = routeContext(o, metrics, readiness);

  app.get('/healthz', async () => ({ ok: true }));
  // Ready = not draining, the database answers, and the HSM answers (spec §5).
  app.get('/readyz', async (_req, reply) => {
    const s = await readiness.check();
    return s.ready ? { ready: true } : reply.code(503).send(s);
  });
  app.get('/metrics', async (_req, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get('/v1/realm', async () => ({ realmPublicKey: o.realmPublicKey, protocolVersion: protocol.PROTOCOL_VERSION }));
  app.post(protocol.VAULT_PATH, (req, reply) => opaqueRoute(ctx, o.boundary, req, reply));
  for (const p of o.protocols ?? []) p.register(app, ctx);

  return { app, metrics, drain: () => readiness.drain() };
}

// ---------------------------------------------------------------------------- HTTP settings

function createApp(o: ServerOptions, metrics: VaultMetrics): FastifyInstance {
  const bodyTimeoutMs = o.bodyTimeoutMs ?? BODY_TIMEOUT_MS;
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
    connectionTimeout: bodyTimeoutMs,
    requestTimeout: bodyTimeoutMs,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    return503OnClosing: true,
    ...(o.trustProxy && o.trustProxy.length > 0 ? { trustProxy: o.trustProxy } : {}),
    ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
  }) as unknown as FastifyInstance;
  if (process.env[INSECURE_TEST_ONLY_PAUSE_ENV]) app.log.warn({ env: INSECURE_TEST_ONLY_PAUSE_ENV }, 'TEST-ONLY pause-after-commit hook is enabled: never use this in production');

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: protocol.MAX_REQUEST_BYTES }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err.statusCode ?? 500;
    if (status === 413) return reply.code(413).send(errorBody('too-large', `request body larger than ${protocol.MAX_REQUEST_BYTES} bytes`));
    if (status === 415) return reply.code(400).send(errorBody('malformed-request', 'content-type must be application/octet-stream'));
    if (status < 500) return reply.code(400).send(errorBody('malformed-request', 'the HTTP request is malformed'));
    req.log.error({ err: { name: err.name, message: err.message } }, 'internal error');
    return reply.code(500).send(errorBody('internal', 'internal error in the vault; the operator has the details in the logs'));
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.httpRequests.inc({ route, code: String(reply.statusCode) });
    metrics.httpDuration.observe({ route }, reply.elapsedTime / 1000);
  });
  enforceBodyTimeout(app, bodyTimeoutMs, metrics);
  return app;
}

/**
 * Node checks its own requestTimeout only every 30 s, and a body trickling in one byte at a time
 * resets the idle timeout: a request that has not arrived whole within `ms` of its first byte
 * loses its connection. Once it has arrived, the socket's idle timeout (connectionTimeout) no
 * longer applies: the answer may wait longer than that for its account's turn (many concurrent
 * requests for one account run one after another), and the client is owed that answer.
 */
function enforceBodyTimeout(app: FastifyInstance, ms: number, metrics: VaultMetrics): void {
  const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();
  app.addHook('onRequest', async (req) => {
    const t = setTimeout(() => {
      metrics.rejected.inc({ code: 'body-timeout' });
      req.log.info({ timeoutMs: ms }, 'request body not received in time; connection closed');
      req.raw.socket.destroy();
    }, ms);
    t.unref();
    timers.set(req, t);
  });
  const clear = async (req: FastifyRequest) => clearTimeout(timers.get(req));
  app.addHook('preHandler', async (req) => {
    clearTimeout(timers.get(req));
    // (inject() has a socket without timeouts.)
    if (typeof req.raw.socket?.setTimeout === 'function') req.raw.socket.setTimeout(0);
  });
  app.addHook('onResponse', clear);
  app.addHook('onRequestAbort', clear);
}

// ---------------------------------------------------------------------------- shared by protocol routes

/**
 * A request refused before (or instead of) an answer. Protocol-neutral: each protocol sends it in
 * its own form (the OPAQUE path as JSON, the Juicebox realm as plain text) after
 * `refusalHeaders`.
 */
export interface Refusal {
  status: number;
  /** The wire code (spec/vault-protocol.md §5); `upgrade-required` only on the Juicebox route, which sends the status and text alone. */
  error: protocol.VaultErrorCode | 'upgrade-required';
  message: string;
  hint: string;
  /** 429: seconds until a new request is let through go in Retry-After. */
  retryAfterMs?: number;
  /** The node is shutting down: the client should reconnect elsewhere. */
  closeConnection?: boolean;
}

/** What every protocol route uses: limits, durable steps, and the answers for backend failures. */
export interface VaultRouteContext {
  metrics: VaultMetrics;
  /** A 503 refusal while this node shuts down, else null. */
  draining(): Refusal | null;
  /** A 429 refusal (counted) if this client address is over its rate, else null. */
  limitAddress(req: FastifyRequest): Refusal | null;
  /** A 429 refusal (counted) if this account (or record key) is over its rate, else null. */
  limitAccount(account: string): Refusal | null;
  /**
   * commitStep for one account (or record key), serialised per account on this node; a request id,
   * if the protocol has one, is claimed once per realm with the change.
   */
  commit<T>(account: string, requestId: string | null, step: (stored: StoredRecord | null) => Promise<StepOutcome<T>>): Promise<CommitStepResult<T>>;
  /** The refusal for an unreadable record or an unreachable database/HSM (logged, counted); rethrows anything else. */
  backendFailure(e: unknown, req: FastifyRequest, account?: string): Refusal;
}

/** A step that lost compare-and-set more often than maxRetries (commitStep's `busy`). */
export const BUSY: Refusal = { status: 503, error: 'unavailable', message: 'too many concurrent changes to this account', hint: 'try again in a moment' };

/** Sets the headers a refusal asks for (Retry-After, Connection: close); the caller sends the body. */
export function refusalHeaders(reply: FastifyReply, r: Refusal): FastifyReply {
  if (r.retryAfterMs !== undefined) void reply.header('retry-after', String(Math.max(1, Math.ceil(r.retryAfterMs / 1000))));
  if (r.closeConnection) void reply.header('connection', 'close');
  return reply.code(r.status);
}

function routeContext(o: ServerOptions, metrics: VaultMetrics, readiness: Readiness): VaultRouteContext {
  const now = o.now ?? Date.now;
  const limiter = (l: RateLimit | false | undefined, dflt: RateLimit) => (l === false ? null : new RateLimiter(l ?? dflt, now));
  const byAccount = limiter(o.rateLimits?.perAccount, DEFAULT_RATE_LIMITS.perAccount);
  const byAddress = limiter(o.rateLimits?.perAddress, DEFAULT_RATE_LIMITS.perAddress);
  const locks = new AccountLocks();
  const pauseFile = process.env[INSECURE_TEST_ONLY_PAUSE_ENV];
  const rateLimited = (which: 'account' | 'address', retryAfterMs: number): Refusal | null => {
    if (retryAfterMs <= 0) return null;
    metrics.rejected.inc({ code: `rate-limited-${which}` });
    return { status: 429, error: 'rate-limited', message: `too many requests for this ${which}; nothing was counted`, hint: 'wait for the time in Retry-After, then try again', retryAfterMs };
  };
  return {
    metrics,
    draining: () =>
      readiness.draining ? { status: 503, error: 'unavailable', message: 'this vault node is shutting down', hint: 'send the request to another node', closeConnection: true } : null,
    limitAddress: (req) => rateLimited('address', byAddress?.take(req.ip) ?? 0),
    limitAccount: (account) => rateLimited('account', byAccount?.take(account) ?? 0),
    commit(account, requestId, step) {
      return locks.run(account, () =>
        commitStep({
          store: o.store,
          account,
          ...(requestId !== null ? { requestId: { id: requestId, expiresAt: now() + REQUEST_ID_TTL_MS } } : {}),
          step,
          ...(o.maxRetries !== undefined ? { maxRetries: o.maxRetries } : {}),
          onConflict: () => metrics.conflicts.inc(),
          ...(pauseFile ? { afterCommit: () => pauseIfFileExists(pauseFile) } : {}),
        }),
      );
    },
    backendFailure(e, req, account) {
      if (e instanceof UnsealFailedError) {
        req.log.error({ account, err: { name: e.name, message: e.message } }, 'stored record failed to unseal (corrupted, rolled from elsewhere, or wrong HSM key)');
        return { status: 500, error: 'record-unreadable', message: 'the vault cannot read the record for this account', hint: 'contact the vault operator' };
      }
      // No durable count, no answer: the database or the HSM is unreachable, or a commit's
      // outcome is unknown. The client retries (maybe on another node), which re-reads the record.
      if (e instanceof RecordStoreError || e instanceof HsmUnavailableError) {
        metrics.backendErrors.inc({ backend: e instanceof RecordStoreError ? 'store' : 'hsm' });
        req.log.warn({ err: { name: e.name, message: e.message } }, 'backend unavailable; request refused');
        return { status: 503, error: 'unavailable', message: 'the vault cannot reach its database or HSM right now; nothing was answered', hint: 'try again in a moment' };
      }
      throw e;
    },
  };
}

async function pauseIfFileExists(file: string): Promise<void> {
  if (!existsSync(file)) return;
  process.stderr.write('TEST-ONLY: committed, pausing before the response\n');
  await new Promise(() => undefined); // wait to be killed
}

// ---------------------------------------------------------------------------- POST /v1/vault

/** The body of every non-200 answer (spec §5): one of the wire codes of `protocol.VAULT_ERROR_CODES`. */
const errorBody = (error: protocol.VaultErrorCode, message: string, hint?: string): protocol.VaultErrorBody => ({ error, message, ...(hint === undefined ? {} : { hint }) });

// The OPAQUE route's refusals come from the route context, which never answers `upgrade-required`.
const refuse = (reply: FastifyReply, r: Refusal) => refusalHeaders(reply, r).send(errorBody(r.error as protocol.VaultErrorCode, r.message, r.hint));

async function opaqueRoute(ctx: VaultRouteContext, boundary: Boundary, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const early = ctx.draining() ?? ctx.limitAddress(req);
  if (early) return refuse(reply, early);
  const body = req.body;
  if (!Buffer.isBuffer(body)) return reply.code(400).send(errorBody('malformed-request', 'content-type must be application/octet-stream'));
  const auth = req.headers.authorization ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
  let opened: OpenedRequest;
  try {
    opened = await boundary.openRequest(token, new Uint8Array(body.buffer, body.byteOffset, body.length));
  } catch (e) {
    if (!(e instanceof RequestRejectedError)) throw e;
    return rejected(ctx, req, reply, e);
  }
  const account = opened.accountId;
  const limited = ctx.limitAccount(account);
  if (limited) return refuse(reply, limited);
  let result: CommitStepResult<Answered>;
  try {
    result = await ctx.commit(account, opened.requestId, (stored) => boundary.process(opened, stored));
  } catch (e) {
    return refuse(reply, ctx.backendFailure(e, req, account));
  }
  if (result.kind === 'replayed') return rejected(ctx, req, reply, new RequestRejectedError('replayed-request', 'this request was already received (replay)', 400, 'send a new request; a replay is never processed twice'));
  if (result.kind === 'busy') return refuse(reply, BUSY);
  ctx.metrics.observe(result.answer.outcome);
  req.log.info({ account }, 'vault request done');
  return reply.code(200).header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(Buffer.from(result.answer.response));
}

function rejected(ctx: VaultRouteContext, req: FastifyRequest, reply: FastifyReply, e: RequestRejectedError): FastifyReply {
  ctx.metrics.rejected.inc({ code: e.code });
  req.log.info({ rejected: e.code }, 'request rejected');
  return reply.code(e.httpStatus).send(errorBody(e.code, e.message, e.hint));
}
