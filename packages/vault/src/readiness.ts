// Readiness of one node (spec/vault-protocol.md §5): not draining, the database answers, the HSM
// answers. Checked every few seconds on its own, so `coffer_vault_ready` is current without
// anyone calling /readyz, and at most once a second however often /readyz is called. The HSM
// check uses no key (Hsm.probe): an unauthenticated caller must not spend the record key's
// nonce budget.

import type { Gauge } from 'prom-client';

export interface ReadinessState {
  ready: boolean;
  store: boolean;
  hsm: boolean;
  draining: boolean;
}

export interface ReadinessOptions {
  store: () => Promise<void>;
  hsm: () => Promise<void>;
  gauge: Gauge;
  /** Each check times out after this (default 2000 ms). */
  timeoutMs?: number;
  /** A result younger than this is reused (default 1000 ms). */
  cacheMs?: number;
  /** Background check period (default 5000 ms). */
  intervalMs?: number;
  now?: () => number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

export class Readiness {
  readonly #o: ReadinessOptions;
  readonly #now: () => number;
  #draining = false;
  #last: { at: number; state: ReadinessState } | null = null;
  #running: Promise<ReadinessState> | null = null;
  #timer: NodeJS.Timeout | null = null;

  constructor(o: ReadinessOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Starts the background checks (the first one at once). */
  start(): void {
    if (this.#timer) return;
    void this.check();
    this.#timer = setInterval(() => void this.check(true), this.#o.intervalMs ?? 5000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Not ready from now on (graceful shutdown). */
  drain(): void {
    this.#draining = true;
    this.#o.gauge.set(0);
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** The current state: a cached one if younger than cacheMs, else a fresh check (shared by concurrent callers). */
  async check(fresh = false): Promise<ReadinessState> {
    const last = this.#last;
    if (!fresh && last && this.#now() - last.at < (this.#o.cacheMs ?? 1000)) return { ...last.state, draining: this.#draining, ready: last.state.store && last.state.hsm && !this.#draining };
    this.#running ??= this.#run().finally(() => (this.#running = null));
    return this.#running;
  }

  async #run(): Promise<ReadinessState> {
    const ms = this.#o.timeoutMs ?? 2000;
    const [store, hsm] = await Promise.all([
      withTimeout(this.#o.store(), ms, 'store ping').then(() => true, () => false),
      withTimeout(this.#o.hsm(), ms, 'HSM probe').then(() => true, () => false),
    ]);
    const state = { ready: store && hsm && !this.#draining, store, hsm, draining: this.#draining };
    this.#last = { at: this.#now(), state };
    this.#o.gauge.set(state.ready ? 1 : 0);
    return state;
  }
}
