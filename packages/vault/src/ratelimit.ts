// Token-bucket rate limits per key (client address, verified account), in the memory of one node.
// They sit on top of the attempt limit, which is the security property and is counted durably in
// the record; these only shed load and slow down a flood. With N nodes the realm-wide rate is up
// to N times the per-node rate (docs/operating.md).

export interface RateLimit {
  /** Sustained requests per minute. */
  perMinute: number;
  /** Bucket size: requests allowed at once after a quiet period. */
  burst: number;
}

const MAX_KEYS = 100_000;

export class RateLimiter {
  readonly #rate: number; // tokens per ms
  readonly #burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(limit: RateLimit, now: () => number = Date.now) {
    if (!(limit.perMinute > 0) || !(limit.burst >= 1)) throw new RangeError('rate limit needs perMinute > 0 and burst >= 1');
    this.#rate = limit.perMinute / 60_000;
    this.#burst = limit.burst;
    this.#now = now;
  }

  /** Takes one token for `key`. Returns 0 if allowed, else the ms until a token is available. */
  take(key: string): number {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#rate);
      b.at = now;
    } else {
      if (this.#buckets.size >= MAX_KEYS) this.#prune(now);
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(key, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.#rate);
  }

  /** Drops buckets that are full again (they carry no state); if none, the oldest. */
  #prune(now: number): void {
    for (const [k, b] of this.#buckets) if (b.tokens + (now - b.at) * this.#rate >= this.#burst) this.#buckets.delete(k);
    while (this.#buckets.size >= MAX_KEYS) this.#buckets.delete(this.#buckets.keys().next().value as string);
  }

  get size(): number {
    return this.#buckets.size;
  }
}
