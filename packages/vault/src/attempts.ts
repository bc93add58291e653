// The attempt counter of one record: the count, the limit and destruction (spec/vault-protocol.md
// §9). Protocol-neutral: the OPAQUE operations (opaque-ops.ts) use it, and so can any other
// protocol whose records count password guesses (a Juicebox realm: Recover2 spends a guess,
// a correct Recover3 resets, NoGuesses at the limit with the secrets erased).
//
// How a protocol uses it
// ----------------------
//   1. Its plaintext record type extends `Counted` ({ maxAttempts, attemptsUsed, destroyedAt? }).
//      The limit comes from the client within the operator's bounds: `checkMaxAttempts`.
//   2. Before releasing anything that lets the client test one password (OPAQUE: KE2 at
//      login-start; Juicebox: the Recover2 answer), call `spendGuess(record)`:
//        { kind: 'granted', next }  write `next` (count + 1), then answer;
//        { kind: 'exhausted' }      answer "no guesses" (OPAQUE `destroyed`, Juicebox NoGuesses)
//                                   and write `destroy(record, erase, now)` unless
//                                   `isDestroyed(record)` already.
//   3. A correct guess (valid KE3; Juicebox Recover3 with the right tag): write `resetGuesses(record)`.
//   4. A wrong final message (KE3 null or invalid; a wrong Recover3 tag): `afterWrongGuess(record)`
//      says whether to destroy now (the last guess was spent) or how many guesses remain.
//   5. `destroy` keeps a tombstone: `erase` must blank every field that could recover the secret
//      (OPAQUE record and wrapped key; Juicebox shares, masked secret, commitments). Mark the
//      write with `erase: true` (RecordChange) so the store also removes earlier versions from
//      its files (store/types.ts).
//   6. Durability: run every step through `commitStep` (commit.ts). It reads the record, runs the
//      step, writes its change by compare-and-set together with the request id (once per realm),
//      retries on conflict, and returns only once the write is durable. Only then may the answer
//      leave. That is what makes "at most maxAttempts guesses" hold across nodes and crashes.

export interface Counted {
  maxAttempts: number;
  attemptsUsed: number;
  /** Set once the limit was reached: a tombstone, its secrets erased (unix ms). */
  destroyedAt?: number;
}

/** Operator bounds for the per-record limit (realm.json `policy`). */
export interface AttemptPolicy {
  defaultMaxAttempts: number;
  minMaxAttempts: number;
  maxMaxAttempts: number;
}

/** The default attempt policy: 10 wrong passwords, registrations may choose 3 to 100 (spec/vault-protocol.md §7.2). */
export const DEFAULT_POLICY: AttemptPolicy = { defaultMaxAttempts: 10, minMaxAttempts: 3, maxMaxAttempts: 100 };

/** The limit a client asked for (or the default), or a message saying why it is refused. */
export function checkMaxAttempts(policy: AttemptPolicy, requested: unknown): number | string {
  const m = requested ?? policy.defaultMaxAttempts;
  if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < policy.minMaxAttempts || m > policy.maxMaxAttempts) {
    return `maxAttempts must be an integer from ${policy.minMaxAttempts} to ${policy.maxMaxAttempts} (operator bounds)`;
  }
  return m;
}

export function isDestroyed(r: Counted): boolean {
  return r.destroyedAt !== undefined;
}

/** No guess may be granted any more: destroyed, or every guess spent. */
export function isExhausted(r: Counted): boolean {
  return isDestroyed(r) || r.attemptsUsed >= r.maxAttempts;
}

export function guessesRemaining(r: Counted): number {
  return isDestroyed(r) ? 0 : Math.max(0, r.maxAttempts - r.attemptsUsed);
}

/** Step 2: one more guess, or none. `next` must be durable before the guess is released. */
export function spendGuess<R extends Counted>(r: R): { kind: 'granted'; next: R } | { kind: 'exhausted' } {
  if (isExhausted(r)) return { kind: 'exhausted' };
  return { kind: 'granted', next: { ...r, attemptsUsed: r.attemptsUsed + 1 } };
}

/** Step 3: the password was right. */
export function resetGuesses<R extends Counted>(r: R): R {
  return { ...r, attemptsUsed: 0 };
}

/** Step 4: the final message was wrong. The guess was already paid at step 2. */
export function afterWrongGuess(r: Counted): { destroy: true } | { destroy: false; guessesRemaining: number } {
  return isExhausted(r) ? { destroy: true } : { destroy: false, guessesRemaining: guessesRemaining(r) };
}

/** Step 5: the tombstone that replaces an exhausted record. Idempotent. */
export function destroy<R extends Counted>(r: R, erase: (r: R) => R, now: number): R {
  if (isDestroyed(r)) return r;
  return { ...erase(r), destroyedAt: now };
}

/**
 * A new registration over an existing record keeps the guesses already spent (re-registering
 * never lowers the count), unless nothing is left to protect: then it starts at 0.
 */
export function carriedOverAttempts(existing: Counted | null): number {
  return existing && !isExhausted(existing) ? existing.attemptsUsed : 0;
}
