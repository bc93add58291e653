/**
 * The one retry layer of the network backends (S3, WebDAV; spec/format.md §7). Each backend
 * classifies its own failures into `transient` (retried with exponential backoff and full jitter:
 * connection reset or refused, timeouts, 408, 429, 500, 502, 503, 504) and `permanent` (not
 * retried: 400, 401, 403, a missing bucket or folder, ...). Permanent failures and transient ones
 * that outlast every attempt become a StorageRefusedError / StorageUnavailableError whose message
 * names the reason and never a secret.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CofferError, ObjectExistsError, StorageUnavailableError } from '@coffer/core';

/** What a backend says about one failed request. */
export type Verdict =
  | { kind: 'transient'; reason: string }
  /** `reason` is a sentence for the user ("the bucket does not exist"); `hint` what to do. */
  | { kind: 'permanent'; reason: string; hint?: string };

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** The backoff cap before attempt n+1 is min(maxDelayMs, baseDelayMs * 2^n); the wait is uniform in [0, cap] (full jitter). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Injected for tests (STYLE.md 4): a random number in [0, 1) and a sleeper. */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Called before each wait; for logs and tests. Messages carry no secrets. */
  onRetry?: (info: { what: string; attempt: number; delayMs: number; reason: string }) => void;
}

/** About 30 s of trying in the worst case before a transient failure is reported. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 8, baseDelayMs: 100, maxDelayMs: 8000 };

/** The store refused for good (credentials, missing bucket or folder, permissions): retrying will not help. */
export class StorageRefusedError extends StorageUnavailableError {
  override name = 'StorageRefusedError';
  override readonly hint: string;
  constructor(message: string, hint: string, options?: { cause?: unknown }) {
    super(message, options);
    this.hint = hint;
  }
}

/** Full-jitter exponential backoff: the wait before attempt `attempt + 1` (attempt counts from 1). */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor(random() * cap);
}

/**
 * Runs `fn` until it succeeds, fails permanently, or runs out of attempts. Errors that are already
 * answers (CofferError such as ObjectNotFoundError or ObjectExistsError, TypeError for a bad name)
 * pass through untouched. `fn` gets the attempt number (1, 2, ...).
 */
export async function withRetry<T>(
  label: string,
  what: string,
  policy: RetryPolicy,
  classify: (e: unknown) => Verdict,
  fn: (attempt: number) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (e instanceof CofferError || e instanceof TypeError) throw e;
      const v = classify(e);
      if (v.kind === 'permanent') {
        throw new StorageRefusedError(`${label}: ${what} failed: ${v.reason}`, v.hint ?? 'check the storage location and its credentials', { cause: e });
      }
      if (attempt >= policy.attempts) {
        throw new StorageUnavailableError(`${label}: ${what} failed after ${attempt} attempts: ${v.reason}`, { cause: e });
      }
      const delayMs = backoffDelay(policy, attempt, policy.random);
      policy.onRetry?.({ what, attempt, delayMs, reason: v.reason });
      await (policy.sleep ?? sleep)(delayMs);
    }
  }
}

/**
 * A write-once put over a network, made safe to retry. Each try throws
 * ObjectExistsError when the name is taken. When an earlier try failed after its request may have
 * reached the server (the response was lost), a later ObjectExistsError may be our own write: the
 * stored object is read back and, when it holds exactly our bytes, the put succeeded. Otherwise
 * (someone else's object) ObjectExistsError stands. Puts of one name from this process are
 * serialised, so that they race only with other processes.
 */
export class WriteOnce {
  private readonly busy = new Map<string, Promise<unknown>>();

  /**
   * `retrying(fn)` runs `fn` under the backend's retry policy (withRetry); `once(attempt)` is one try;
   * `readBack` reads the stored object (null when missing).
   */
  async put(
    name: string,
    data: Uint8Array,
    retrying: (fn: (attempt: number) => Promise<void>) => Promise<void>,
    once: (attempt: number) => Promise<void>,
    readBack: () => Promise<Uint8Array | null>,
  ): Promise<void> {
    const previous = this.busy.get(name);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = (previous ?? Promise.resolve()).then(() => mine);
    this.busy.set(name, chained);
    try {
      await previous?.catch(() => {});
      let failedOnce = false;
      try {
        await retrying(async (n) => {
          if (n > 1) failedOnce = true;
          await once(n);
        });
      } catch (e) {
        if (!(e instanceof ObjectExistsError) || !failedOnce) throw e;
        const stored = await readBack();
        if (stored === null || !sameBytes(stored, data)) throw e;
      }
    } finally {
      release();
      if (this.busy.get(name) === chained) this.busy.delete(name);
    }
  }
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Node's network error codes that mean "try again". */
const transientCodes = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE', 'TimeoutError', 'RequestTimeout', 'RequestTimeoutException',
]);

/** A network failure below HTTP (no status): its code when it is one that means "try again". */
export function networkCode(e: unknown): string | undefined {
  for (let c: unknown = e, depth = 0; c && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    const name = (c as { name?: unknown }).name;
    if (typeof code === 'string' && transientCodes.has(code)) return code;
    if (typeof name === 'string' && transientCodes.has(name)) return name;
  }
  return undefined;
}

/** The HTTP statuses that mean "try again" (RFC 9110 §15; 429 from RFC 6585). */
export const transientStatus = (status: number): boolean => status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505 && status !== 507);
