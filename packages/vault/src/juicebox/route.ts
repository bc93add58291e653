// `POST /req`: the Juicebox realm on the vault's port (spec/juicebox.md §8, §9). The software-realm
// wire (a SecretsRequest with a bearer token) and the hardware-realm wire (a ClientRequest over
// Noise NK) share one path; both run the realm's phases through the same read, step,
// compare-and-set loop, and no answer leaves before its record change is durable.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { wire, type noise } from '@coffer/core/juicebox';
import type { Effect } from '../boundary.js';
import { HsmUnavailableError, InvalidTokenError, RecordStoreError, UnsealFailedError } from '../errors.js';
import type { VaultMetrics } from '../metrics.js';
import type { RateLimiter } from '../ratelimit.js';
import type { RecordStore } from '../store/types.js';
import { JuiceboxRequestError, recordKey, type JuiceboxRealm, type JuiceboxStep } from './realm.js';
import type { JuiceboxClaims } from './token.js';

export const JUICEBOX_PATH = '/req';
/** Room for a ClientRequest around the largest SecretsRequest (2048 bytes) and a token. */
const MAX_BODY_BYTES = 8192;
export const SESSION_LIFETIME_MS = 300_000;
const MAX_SESSIONS = 100_000;
const MAX_RETRIES = 64;

export interface JuiceboxRouteOptions {
  realm: JuiceboxRealm;
  store: RecordStore;
  metrics: VaultMetrics;
  limitAccount: RateLimiter | null;
  limitAddress: RateLimiter | null;
  isDraining: () => boolean;
  /** Serialises work per record key in this process (compare-and-set still decides across nodes). */
  withLock: <T>(key: string, f: () => Promise<T>) => Promise<T>;
  maxRetries?: number;
  now?: () => number;
}

/** A refusal that ends the request with an HTTP status and a plain-text body (never CBOR: the SDK would decode it). */
class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly retryAfterMs = 0,
  ) {
    super(message);
  }
}

function sdkVersionOk(v: unknown): boolean {
  const m = typeof v === 'string' ? /^(\d+)\.(\d+)\.\d+/.exec(v) : null;
  return m !== null && (Number(m[1]) > 0 || Number(m[2]) >= 3);
}

interface Session {
  transport: noise.NoiseTransport;
  expiresAt: number;
}

export function registerJuiceboxRoute(app: FastifyInstance, o: JuiceboxRouteOptions): void {
  const now = o.now ?? Date.now;
  const sessions = new Map<string, Session>();

  async function apply(key: string, e: Effect): Promise<boolean> {
    switch (e.kind) {
      case 'none':
        return true;
      case 'put':
        return o.store.compareAndSet(key, e.expectedVersion, e.newVersion, e.sealed);
      case 'delete':
        return o.store.delete(key, e.expectedVersion);
    }
  }

  /** Read, step, make durable (retrying on conflict); only then is the step's answer released. */
  async function run(claims: JuiceboxClaims, request: wire.SecretsRequest): Promise<JuiceboxStep> {
    const key = recordKey(claims);
    const byAccount = o.limitAccount?.take(key) ?? 0;
    if (byAccount > 0) throw new HttpRefusal(429, 'too many requests for this user; nothing was counted', 'rate-limited-account', byAccount);
    let step: JuiceboxStep | null;
    try {
      step = await o.withLock(key, async () => {
        for (let i = 0; i < (o.maxRetries ?? MAX_RETRIES); i++) {
          const stored = await o.store.get(key);
          const s = await o.realm.process(claims, request, stored);
          if (await apply(key, s.effect)) return s;
          o.metrics.conflicts.inc();
          await new Promise((r) => setTimeout(r, Math.random() * 2));
        }
        return null;
      });
    } catch (e) {
      if (e instanceof JuiceboxRequestError) throw new HttpRefusal(400, e.message, 'malformed-request');
      if (e instanceof UnsealFailedError) throw new HttpRefusal(500, 'the realm cannot read the record for this user', 'record-unreadable');
      if (e instanceof RecordStoreError || e instanceof HsmUnavailableError) {
        o.metrics.backendErrors.inc({ backend: e instanceof RecordStoreError ? 'store' : 'hsm' });
        throw new HttpRefusal(503, 'the realm cannot reach its database or HSM right now; nothing was answered', 'unavailable');
      }
      throw e;
    }
    if (!step) throw new HttpRefusal(503, 'too many concurrent changes to this user', 'unavailable');
    const out = step.outcome;
    o.metrics.operations.inc({ op: `juicebox-${out.phase.toLowerCase()}`, status: out.status });
    if (out.attempt) o.metrics.attempts.inc();
    if (out.destroyed) o.metrics.destroyed.inc();
    if (out.status === 'NoGuesses') o.metrics.lockouts.inc();
    return step;
  }

  function authenticate(token: string): JuiceboxClaims {
    try {
      return o.realm.authenticate(token);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw new HttpRefusal(401, e.message, 'unauthorized');
      throw e;
    }
  }

  const cbor = (reply: FastifyReply, bytes: Uint8Array) => reply.code(200).header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(Buffer.from(bytes));

  // ---------------------------------------------------------------- software-realm wire, §8

  async function software(authorization: string, body: Uint8Array, reply: FastifyReply) {
    const claims = authenticate(authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : '');
    let request: wire.SecretsRequest;
    try {
      request = wire.parseSecretsRequest(body);
    } catch (e) {
      throw new HttpRefusal(400, (e as Error).message, 'malformed-request');
    }
    const step = await run(claims, request);
    reply.log.info({ juicebox: request.kind, status: step.outcome.status, user: claims.user }, 'juicebox request done');
    return cbor(reply, wire.encodeSecretsResponse(step.response));
  }

  // ---------------------------------------------------------------- hardware-realm wire, §9

  function remember(key: string, transport: noise.NoiseTransport): void {
    const t = now();
    for (const [k, s] of sessions) {
      if (s.expiresAt > t && sessions.size < MAX_SESSIONS) break;
      sessions.delete(k);
    }
    sessions.set(key, { transport, expiresAt: t + SESSION_LIFETIME_MS });
  }

  async function hardware(body: Uint8Array, reply: FastifyReply) {
    const answer = (r: wire.ClientResponse) => cbor(reply, wire.encodeClientResponse(r));
    const refuse = (error: wire.ClientResponseError, why: string) => {
      o.metrics.rejected.inc({ code: `juicebox-${error}` });
      reply.log.info({ juicebox: 'ClientRequest', rejected: error }, why);
      return answer({ error });
    };
    let request: wire.ClientRequest;
    try {
      const decoded = wire.decodeCbor(body);
      if (!wire.isClientRequest(decoded)) throw new HttpRefusal(401, 'missing Authorization: Bearer token', 'unauthorized');
      request = wire.parseClientRequest(decoded);
    } catch (e) {
      if (e instanceof HttpRefusal) throw e;
      return refuse('DecodingError', (e as Error).message);
    }
    if (!Buffer.from(request.realm).equals(Buffer.from(o.realm.realmId))) return refuse('DecodingError', 'request for another realm');
    let claims: JuiceboxClaims;
    try {
      claims = authenticate(request.authToken);
    } catch (e) {
      if (e instanceof HttpRefusal) return refuse('InvalidAuth', e.message);
      throw e;
    }
    const sessionKey = `${recordKey(claims)}\u0000${request.sessionId}`;
    const secrets = (payload: Uint8Array): wire.SecretsRequest | null => {
      try {
        return wire.parseSecretsRequest(payload);
      } catch {
        return null;
      }
    };

    if ('handshake' in request.encrypted) {
      let hs: noise.ServerHandshake;
      try {
        hs = o.realm.noiseHandshake(request.encrypted.handshake.clientEphemeralPublic, request.encrypted.handshake.payloadCiphertext);
      } catch {
        return refuse('SessionError', 'handshake does not open (another realm key?)');
      }
      let response: Uint8Array = new Uint8Array(0);
      if (request.kind === 'HandshakeOnly') {
        if (hs.payload.length !== 0) return refuse('DecodingError', 'HandshakeOnly with a payload');
      } else {
        const inner = secrets(hs.payload);
        if (!inner) return refuse('DecodingError', 'handshake payload is not a SecretsRequest');
        if (wire.needsForwardSecrecy(inner)) return refuse('SessionError', `${inner.kind} needs an established session`);
        response = wire.padResponse((await run(claims, inner)).response);
        reply.log.info({ juicebox: inner.kind, user: claims.user, noise: 'handshake' }, 'juicebox request done');
      }
      const done = hs.respond(response);
      remember(sessionKey, done.transport);
      return answer({ ok: { handshake: { serverEphemeralPublic: done.serverEphemeralPublic, payloadCiphertext: done.payloadCiphertext }, sessionLifetimeMs: SESSION_LIFETIME_MS } });
    }

    const session = sessions.get(sessionKey);
    if (!session || session.expiresAt <= now()) {
      sessions.delete(sessionKey);
      return refuse('MissingSession', 'unknown or expired session');
    }
    let plain: Uint8Array;
    try {
      plain = session.transport.decrypt(request.encrypted.transport);
    } catch {
      sessions.delete(sessionKey);
      return refuse('SessionError', 'transport message does not decrypt');
    }
    const inner = secrets(plain);
    if (!inner) return refuse('DecodingError', 'transport payload is not a SecretsRequest');
    const step = await run(claims, inner);
    session.expiresAt = now() + SESSION_LIFETIME_MS;
    reply.log.info({ juicebox: inner.kind, status: step.outcome.status, user: claims.user, noise: 'transport' }, 'juicebox request done');
    return answer({ ok: { transport: session.transport.encrypt(wire.padResponse(step.response)) } });
  }

  // ---------------------------------------------------------------- the route

  app.register(async (scope) => {
    // The SDK posts raw CBOR, with or without a content type.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_BODY_BYTES }, (_req, body, done) => done(null, body));
    scope.post(JUICEBOX_PATH, { bodyLimit: MAX_BODY_BYTES }, async (req, reply) => {
      try {
        if (o.isDraining()) throw new HttpRefusal(503, 'this realm node is shutting down; send the request to another node', 'unavailable');
        if (!sdkVersionOk(req.headers['x-juicebox-version'])) throw new HttpRefusal(426, 'this realm speaks the Juicebox 0.3 wire: send X-Juicebox-Version 0.3.0 or later', 'upgrade-required');
        const byAddress = o.limitAddress?.take(req.ip) ?? 0;
        if (byAddress > 0) throw new HttpRefusal(429, 'too many requests from this address; nothing was counted', 'rate-limited-address', byAddress);
        const body = Buffer.isBuffer(req.body) ? new Uint8Array(req.body.buffer, req.body.byteOffset, req.body.length) : new Uint8Array(0);
        const authorization = req.headers.authorization;
        return authorization !== undefined ? await software(authorization, body, reply) : await hardware(body, reply);
      } catch (e) {
        if (!(e instanceof HttpRefusal)) throw e;
        o.metrics.rejected.inc({ code: `juicebox-${e.code}` });
        req.log.info({ rejected: e.code }, 'juicebox request refused');
        if (e.retryAfterMs > 0) void reply.header('retry-after', String(Math.max(1, Math.ceil(e.retryAfterMs / 1000))));
        return reply.code(e.status).header('content-type', 'text/plain; charset=utf-8').send(`${e.message}\n`);
      }
    });
  });
}
