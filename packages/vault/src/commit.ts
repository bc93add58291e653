// Durable steps (spec/vault-protocol.md §9, §9.1): read the account's record, run one protocol
// step on it, write the step's change by compare-and-set together with the request id, and hand
// back the step's answer only once that write is durable. On a conflict (another request or
// node changed the record first) the step runs again on the new record. Protocol-neutral: the
// OPAQUE route uses it, and so can any other protocol (see attempts.ts for the guess counter).

import type { CommitOptions, RecordChange, RecordStore, StoredRecord } from './store/types.js';

/** What a step decided: the change to make durable, and the answer that may leave only afterwards. */
export interface StepOutcome<T> {
  change: RecordChange;
  /** The change destroys secrets (tombstone, delete): see CommitOptions.erase. */
  erase?: boolean;
  answer: T;
}

export type CommitStepResult<T> = { kind: 'ok'; answer: T } | { kind: 'replayed' } | { kind: 'busy' };

export interface CommitStepOptions<T> {
  store: RecordStore;
  account: string;
  /** Claimed once per realm with the change (CommitOptions.requestId). */
  requestId?: { id: string; expiresAt: number };
  /** Runs on the current record; may run several times (on conflict), so it must not have effects of its own. */
  step: (stored: StoredRecord | null) => Promise<StepOutcome<T>>;
  /** Give up after this many conflicts (default 64): `busy`. */
  maxRetries?: number;
  onConflict?: () => void;
  /** Called after a durable write that changed the record, before the answer is returned (test hooks). */
  afterCommit?: () => Promise<void>;
}

/**
 * In-process serialisation per account avoids compare-and-set thrash between requests of one
 * node; correctness across processes and nodes still comes from compare-and-set alone.
 */
export class AccountLocks {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(account: string, f: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(account) ?? Promise.resolve();
    const run = prev.then(f, f);
    const tail = run.catch(() => undefined);
    this.#tails.set(account, tail);
    try {
      return await run;
    } finally {
      if (this.#tails.get(account) === tail) this.#tails.delete(account);
    }
  }
}

export async function commitStep<T>(o: CommitStepOptions<T>): Promise<CommitStepResult<T>> {
  const retries = o.maxRetries ?? 64;
  for (let i = 0; i < retries; i++) {
    const out = await o.step(await o.store.get(o.account));
    const opts: CommitOptions = {};
    if (o.requestId) opts.requestId = o.requestId;
    if (out.erase) opts.erase = true;
    const r = await o.store.commit(o.account, out.change, opts);
    if (r === 'replayed') return { kind: 'replayed' };
    if (r === 'ok') {
      if (out.change.kind !== 'none') await o.afterCommit?.();
      return { kind: 'ok', answer: out.answer };
    }
    o.onConflict?.();
    await new Promise((res) => setTimeout(res, Math.random() * 2));
  }
  return { kind: 'busy' };
}
