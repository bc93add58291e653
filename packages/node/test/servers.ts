/** Test helpers: real servers in child processes, and a fault-injecting HTTP proxy in front of them. */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface ServerProcess {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `server-process.js KIND DIR` and waits for its port. */
export async function startServer(kind: 's3' | 'webdav', dir: string): Promise<ServerProcess> {
  const script = fileURLToPath(new URL('./server-process.js', import.meta.url));
  const child = spawn(process.execPath, [script, kind, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l).port));
  });
  return {
    port,
    child,
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

/** Mulberry32: a small seeded generator, so a failing run can be replayed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Fault = 'ok' | '500' | '503' | 'drop-request' | 'drop-response' | 'lose-response' | 'stall';

export interface FaultRates {
  /** Each a probability per request; the rest pass. */
  '500'?: number;
  '503'?: number;
  /** Closes the connection before the request reaches the server. */
  'drop-request'?: number;
  /** Forwards, then closes the connection halfway through the answer's body. */
  'drop-response'?: number;
  /** Forwards, lets the server finish, then closes the connection without an answer. */
  'lose-response'?: number;
  /** Never answers and keeps the connection open. */
  stall?: number;
}

export interface FaultProxy {
  port: number;
  /** Every request seen: method, path, the fault chosen. */
  log: { method: string; path: string; fault: Fault; destination?: string }[];
  rates: FaultRates;
  /** Chooses the fault of one request instead of the rates when it returns one. */
  decide?: (method: string, path: string) => Fault | undefined;
  /**
   * Emulates a store that enforces `If-None-Match: *` on PUT (AWS S3 since 2024-08) in front of one
   * that ignores it: a conditional PUT of a path for which `exists` says yes gets 412. (Check, then
   * forward: not atomic, which is enough to test how a client takes the answers.)
   */
  exists?: (path: string) => boolean;
  close(): Promise<void>;
}

/**
 * A reverse proxy on 127.0.0.1 in front of `targetPort` that injects faults at random from a seeded
 * generator. `rates` may be changed while it runs.
 */
export async function faultProxy(targetPort: number, rates: FaultRates, seed = 1): Promise<FaultProxy> {
  const random = seeded(seed);
  const log: FaultProxy['log'] = [];
  const upstream = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const stalled = new Set<http.ServerResponse>();
  const proxy: FaultProxy = { port: 0, log, rates, close: async () => {} };
  const pick = (): Fault => {
    let r = random();
    for (const f of ['500', '503', 'drop-request', 'drop-response', 'lose-response', 'stall'] as const) {
      const p = proxy.rates[f] ?? 0;
      if (r < p) return f;
      r -= p;
    }
    return 'ok';
  };
  const server = http.createServer((req, res) => {
    const fault = proxy.decide?.(req.method ?? '', req.url ?? '') ?? pick();
    log.push({ method: req.method ?? '', path: req.url ?? '', fault, ...(req.headers.destination ? { destination: String(req.headers.destination) } : {}) });
    if (fault === 'drop-request') return req.socket.destroy();
    if (req.method === 'PUT' && req.headers['if-none-match'] === '*' && proxy.exists?.(req.url ?? '')) {
      req.resume();
      req.on('end', () => {
        res.writeHead(412, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>');
      });
      return;
    }
    if (fault === 'stall') {
      stalled.add(res);
      res.on('close', () => stalled.delete(res));
      return req.resume();
    }
    if (fault === '500' || fault === '503') {
      req.resume();
      req.on('end', () => {
        res.writeHead(Number(fault), { 'content-type': 'text/plain', connection: 'close' });
        res.end('injected fault\n');
      });
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent: upstream }, (ur) => {
      if (fault === 'lose-response') {
        ur.resume();
        ur.on('end', () => req.socket.destroy());
        return;
      }
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (fault === 'drop-response') {
        const half = Math.floor(Number(ur.headers['content-length'] ?? 0) / 2);
        let sent = 0;
        ur.on('data', (c: Buffer) => {
          if (sent + c.length >= half) {
            res.write(c.subarray(0, Math.max(0, half - sent)));
            ur.destroy();
            req.socket.destroy();
          } else {
            res.write(c);
            sent += c.length;
          }
        });
        ur.on('end', () => req.socket.destroy());
        return;
      }
      ur.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = (server.address() as AddressInfo).port;
  proxy.close = () =>
    new Promise<void>((r) => {
      for (const res of stalled) res.socket?.destroy();
      server.closeAllConnections();
      upstream.destroy();
      server.close(() => r());
    });
  return proxy;
}
