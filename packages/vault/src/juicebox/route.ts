// `POST /req`: the Juicebox realm on the vault's port (spec/juicebox.md §8, §9), a second protocol
// plugged into the vault server through ServerOptions.protocols. The software-realm wire (a
// SecretsRequest with a bearer token) and the hardware-realm wire (a ClientRequest over Noise NK)
// share one path; both run the realm's phases through the server's durable steps (ctx.commit:
// read, step, compare-and-set, retried on conflict), under the server's rate limits and backend
// failure handling, and no answer leaves before its record change is durable.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { wire, type noise } from '@coffer/core/juicebox';
import type { CommitStepResult } from '../commit.js';
import { InvalidTokenError } from '../errors.js';
import { BUSY, refusalHeaders, type Refusal, type VaultProtocol, type VaultRouteContext } from '../server.js';
import { JuiceboxRequestError, recordKey, type JuiceboxAnswer, type JuiceboxRealm } from './realm.js';
import type { JuiceboxClaims } from './token.js';

export const JUICEBOX_PATH = '/req';
/** Room for a ClientRequest around the largest SecretsRequest (2048 bytes) and a token. */
const MAX_BODY_BYTES = 8192;
export const SESSION_LIFETIME_MS = 300_000;
const MAX_SESSIONS = 100_000;

/** A refusal that ends the request with an HTTP status and a plain-text body (never CBOR: the SDK would decode it). */
class HttpRefusal extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.message);
  }
}

const refusal = (status: number, error: Refusal['error'], message: string, hint = 'this request changed nothing'): HttpRefusal => new HttpRefusal({ status, error, message, hint });

function sdkVersionOk(v: unknown): boolean {
  const m = typeof v === 'string' ? /^(\d+)\.(\d+)\.\d+/.exec(v) : null;
  return m !== null && (Number(m[1]) > 0 || Number(m[2]) >= 3);
}

interface Session {
  transport: noise.NoiseTransport;
  expiresAt: number;
}

/** The Juicebox realm as a protocol of the vault server: `protocols: [juiceboxProtocol(realm)]`. */
export function juiceboxProtocol(realm: JuiceboxRealm, o: { now?: () => number } = {}): VaultProtocol {
  return { register: (app, ctx) => registerJuiceboxRoute(app, ctx, realm, o.now ?? Date.now) };
}

function registerJuiceboxRoute(app: FastifyInstance, ctx: VaultRouteContext, realm: JuiceboxRealm, now: () => number): void {
  const sessions = new Map<string, Session>();

  /** Rate limit, then read, step, make durable; only then is the step's answer released. */
  async function run(req: FastifyRequest, claims: JuiceboxClaims, request: wire.SecretsRequest): Promise<JuiceboxAnswer> {
    const key = recordKey(claims);
    const limited = ctx.limitAccount(key);
    if (limited) throw new HttpRefusal(limited);
    let result: CommitStepResult<JuiceboxAnswer>;
    try {
      // No request id: the Juicebox wire has none (spec/juicebox.md §6.4 says what replays can do).
      result = await ctx.commit(key, null, (stored) => realm.process(claims, request, stored));
    } catch (e) {
      if (e instanceof JuiceboxRequestError) throw refusal(400, 'malformed-request', e.message);
      throw new HttpRefusal(ctx.backendFailure(e, req, key));
    }
    if (result.kind !== 'ok') throw new HttpRefusal(BUSY);
    ctx.metrics.observe(result.answer.outcome);
    return result.answer;
  }

  async function authenticate(token: string): Promise<JuiceboxClaims> {
    try {
      return await realm.authenticate(token);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw new HttpRefusal({ status: 401, error: 'unauthorized', message: e.message, hint: e.hint });
      throw e;
    }
  }

  const cbor = (reply: FastifyReply, bytes: Uint8Array) => reply.code(200).header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(Buffer.from(bytes));

  // ---------------------------------------------------------------- software-realm wire, §8

  async function software(req: FastifyRequest, authorization: string, body: Uint8Array, reply: FastifyReply) {
    const claims = await authenticate(authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : '');
    let request: wire.SecretsRequest;
    try {
      request = wire.parseSecretsRequest(body);
    } catch (e) {
      throw refusal(400, 'malformed-request', (e as Error).message);
    }
    const done = await run(req, claims, request);
    reply.log.info({ juicebox: request.kind, status: done.outcome.status, user: claims.user }, 'juicebox request done');
    return cbor(reply, wire.encodeSecretsResponse(done.response));
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

  async function hardware(req: FastifyRequest, body: Uint8Array, reply: FastifyReply) {
    const answer = (r: wire.ClientResponse) => cbor(reply, wire.encodeClientResponse(r));
    const refuse = (error: wire.ClientResponseError, why: string) => {
      ctx.metrics.rejected.inc({ code: `juicebox-${error}` });
      reply.log.info({ juicebox: 'ClientRequest', rejected: error }, why);
      return answer({ error });
    };
    let request: wire.ClientRequest;
    try {
      const decoded = wire.decodeCbor(body);
      if (!wire.isClientRequest(decoded)) throw refusal(401, 'unauthorized', 'missing Authorization: Bearer token', 'send the token of the user (software wire) or a ClientRequest (hardware wire)');
      request = wire.parseClientRequest(decoded);
    } catch (e) {
      if (e instanceof HttpRefusal) throw e;
      return refuse('DecodingError', (e as Error).message);
    }
    if (!Buffer.from(request.realm).equals(Buffer.from(realm.realmId))) return refuse('DecodingError', 'request for another realm');
    let claims: JuiceboxClaims;
    try {
      claims = await authenticate(request.authToken);
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
        hs = realm.noiseHandshake(request.encrypted.handshake.clientEphemeralPublic, request.encrypted.handshake.payloadCiphertext);
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
        response = wire.padResponse((await run(req, claims, inner)).response);
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
    const done = await run(req, claims, inner);
    session.expiresAt = now() + SESSION_LIFETIME_MS;
    reply.log.info({ juicebox: inner.kind, status: done.outcome.status, user: claims.user, noise: 'transport' }, 'juicebox request done');
    return answer({ ok: { transport: session.transport.encrypt(wire.padResponse(done.response)) } });
  }

  // ---------------------------------------------------------------- the route

  app.register(async (scope) => {
    // The SDK posts raw CBOR, with or without a content type.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_BODY_BYTES }, (_req, body, done) => done(null, body));
    scope.post(JUICEBOX_PATH, { bodyLimit: MAX_BODY_BYTES }, async (req, reply) => {
      try {
        const early = ctx.draining() ?? (sdkVersionOk(req.headers['x-juicebox-version']) ? null : upgradeRequired) ?? ctx.limitAddress(req);
        if (early) throw new HttpRefusal(early);
        const body = Buffer.isBuffer(req.body) ? new Uint8Array(req.body.buffer, req.body.byteOffset, req.body.length) : new Uint8Array(0);
        const authorization = req.headers.authorization;
        return authorization !== undefined ? await software(req, authorization, body, reply) : await hardware(req, body, reply);
      } catch (e) {
        if (!(e instanceof HttpRefusal)) throw e;
        const r = e.refusal;
        if (r.status !== 429) ctx.metrics.rejected.inc({ code: `juicebox-${r.error}` });
        req.log.info({ rejected: r.error }, 'juicebox request refused');
        return refusalHeaders(reply, r).header('content-type', 'text/plain; charset=utf-8').send(`${r.message}\n${r.hint}\n`);
      }
    });
  });
}

const upgradeRequired: Refusal = {
  status: 426,
  error: 'upgrade-required',
  message: 'this realm speaks the Juicebox 0.3 wire',
  hint: 'send X-Juicebox-Version 0.3.0 or later (update the Juicebox SDK)',
};
