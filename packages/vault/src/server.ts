// The vault front end: fastify over HTTP (spec/vault-protocol.md §5). It holds no realm secret:
// it verifies nothing itself, moves ciphertext to the boundary and sealed records to the store,
// and sends a response only after the store made the boundary's effect durable.

import { existsSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { protocol } from '@coffer/core/vault';
import { Boundary, RequestRejectedError, type Effect, type OpenedRequest, type ProcessResult } from './boundary.js';
import { UnsealFailedError } from './errors.js';
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
}

const MAX_RETRIES = 64;

export async function buildServer(o: ServerOptions): Promise<FastifyInstance> {
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

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await o.store.ping();
      return { ready: true };
    } catch {
      return reply.code(503).send({ ready: false });
    }
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

  app.post(protocol.VAULT_PATH, async (req, reply) => {
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    const body = req.body;
    if (!Buffer.isBuffer(body)) return reply.code(400).send({ error: 'malformed-request', message: 'content-type must be application/octet-stream' });
    let opened: OpenedRequest;
    try {
      opened = await o.boundary.openRequest(token, new Uint8Array(body.buffer, body.byteOffset, body.length));
    } catch (e) {
      if (e instanceof RequestRejectedError) {
        req.log.info({ rejected: e.code }, 'request rejected');
        return reply.code(e.httpStatus).send({ error: e.code, message: e.message, hint: e.hint });
      }
      throw e;
    }
    const account = opened.accountId;
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
          await new Promise((res) => setTimeout(res, Math.random() * 2));
        }
        return null;
      });
    } catch (e) {
      if (e instanceof UnsealFailedError) {
        req.log.error({ account, err: { name: e.name, message: e.message } }, 'stored record failed to unseal (corrupted, rolled from elsewhere, or wrong HSM key)');
        return reply.code(500).send({ error: 'record-unreadable', message: 'the vault cannot read the record for this account', hint: 'contact the vault operator' });
      }
      throw e;
    }
    if (!result) return reply.code(503).send({ error: 'unavailable', message: 'too many concurrent changes to this account', hint: 'try again in a moment' });
    req.log.info({ account }, 'vault request done');
    return reply.code(200).header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(Buffer.from(result.response));
  });

  return app;
}
