/**
 * The one retry layer of the network backends (S3, WebDAV; spec/format.md §7). Each backend
 * classifies its own failures into `transient` (connection reset or refused, timeouts, 408, 423,
 * 429, 500, 502, 503, 504) and `permanent` (400, 401, 403, a missing bucket or folder, ...). A
 * transient failure is retried with capped exponential backoff and full jitter for a time budget
 * (`retryForMs`, counted from the request's first failure), with one last try when the budget ends:
 * an outage shorter than the budget is ridden out. Permanent failures, and transient ones that
 * outlast the budget, become a StorageRefusedError / StorageUnavailableError whose message names
 * the reason and never a secret.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CofferError, ObjectExistsError, StorageUnavailableError } from '@coffer/core';

/** What a backend says about one failed request. */
export type Verdict =
  | { kind: 'transient'; reason: string }
  /** `reason` is a sentence for the user ("the bucket does not exist"); `hint` what to do. */
  | { kind: 'permanent'; reason: string; hint?: string };

/** What the retry layer tells its caller before each wait: the store is failing, and for how much longer it will be tried. */
export interface RetryEvent {
  /** The store's label (no secrets). */
  store: string;
  /** The request, e.g. "writing data/ab12...". */
  what: string;
  /** Attempts made so far. */
  attempt: number;
  /** The wait before the next attempt. */
  delayMs: number;
  /** Why the last attempt failed, e.g. "network error (ECONNREFUSED)". */
  reason: string;
  /** Since this request first failed. */
  failingForMs: number;
  /** Until this request gives up. */
  giveUpInMs: number;
}

/** How long and how often a store that does not answer is tried again (spec/format.md §7.2). */
export interface RetryPolicy {
  /** How long a request that keeps failing transiently is retried, from its first failure (ms). */
  retryForMs: number;
  /** The backoff cap before attempt n+1 is min(maxDelayMs, baseDelayMs * 2^(n-1)); the wait is uniform in [0, cap] (full jitter). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Injected for tests (STYLE.md 4): a random number in [0, 1), a sleeper and a clock (ms). */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  /** Called before each wait (progress: "waiting for the store"; logs; tests). */
  onRetry?: (event: RetryEvent) => void;
}

/** Rides out an outage of up to a minute, trying again at least every 5 s once the store fails. */
export const DEFAULT_RETRY: RetryPolicy = { retryForMs: 60_000, baseDelayMs: 100, maxDelayMs: 5_000 };

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
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(random() * cap);
}

/**
 * Runs `fn` until it succeeds, fails permanently, or has failed transiently for
 * `policy.retryForMs` (tried a last time when that time is up). Errors that are already answers
 * (CofferError such as ObjectNotFoundError or ObjectExistsError, TypeError for a bad name) pass
 * through untouched. `fn` gets the attempt number (1, 2, ...).
 */
export async function withRetry<T>(
  label: string,
  what: string,
  policy: RetryPolicy,
  classify: (e: unknown) => Verdict,
  fn: (attempt: number) => Promise<T>,
): Promise<T> {
  const now = policy.now ?? Date.now;
  let firstFailure: number | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (e instanceof CofferError || e instanceof TypeError) throw e;
      const v = classify(e);
      if (v.kind === 'permanent') {
        throw new StorageRefusedError(`${label}: ${what} failed: ${v.reason}`, v.hint ?? 'check the storage location and its credentials', { cause: e });
      }
      const t = now();
      firstFailure ??= t;
      const left = firstFailure + policy.retryForMs - t;
      if (left <= 0) {
        const secs = Math.round((t - firstFailure) / 1000);
        throw new StorageUnavailableError(`${label}: ${what} failed after ${attempt} attempts in ${secs} s: ${v.reason}`, { cause: e });
      }
      const delayMs = Math.min(backoffDelay(policy, attempt, policy.random), left);
      policy.onRetry?.({ store: label, what, attempt, delayMs, reason: v.reason, failingForMs: t - firstFailure, giveUpInMs: left });
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

/**
 * The HTTP statuses that mean "try again" (RFC 9110 §15; 429 from RFC 6585; 423 Locked from RFC
 * 4918 §11.3, which WebDAV servers such as rclone answer while another request holds the resource).
 */
export const transientStatus = (status: number): boolean =>
  status === 408 || status === 423 || status === 429 || (status >= 500 && status !== 501 && status !== 505 && status !== 507);
