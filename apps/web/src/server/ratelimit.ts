/** Token buckets by key (spec/web-app.md §2): `take` spends one token or says how long to wait. */
import { HttpError } from './http.js';

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** `perMinute` tokens come back each minute, up to `burst`; the clock is injectable for tests. */
  constructor(
    private readonly perMinute: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Spends a token for `key`, or throws 429 with Retry-After. */
  take(key: string, what: string): void {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 60_000) * this.perMinute);
    b.at = now;
    if (b.tokens < 1) {
      const wait = Math.ceil(((1 - b.tokens) / this.perMinute) * 60);
      this.buckets.set(key, b);
      throw new HttpError(429, 'rate-limited', `too many ${what}; try again in ${wait} s`, { 'retry-after': String(wait) });
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > 10_000) this.sweep(now);
  }

  /** Drops buckets that have filled up again (they hold nothing a new bucket would not). */
  private sweep(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 60_000) * this.perMinute >= this.burst) this.buckets.delete(k);
    }
  }
}
