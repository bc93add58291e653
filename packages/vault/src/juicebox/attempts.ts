// The guess counter of a Juicebox record: count, limit, destruction (spec/juicebox.md §6.2).
// A small interface on purpose: the vault's shared attempts module (issue 13) will own these
// for both protocols, and this file then goes. Same names and meaning.

export interface Counted {
  maxAttempts: number;
  attemptsUsed: number;
  /** Set once the limit was reached: a tombstone, its secrets erased (unix ms). */
  destroyedAt?: number;
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

/** One more guess, or none. `next` must be durable before the guess is released. */
export function spendGuess<R extends Counted>(r: R): { kind: 'granted'; next: R } | { kind: 'exhausted' } {
  if (isExhausted(r)) return { kind: 'exhausted' };
  return { kind: 'granted', next: { ...r, attemptsUsed: r.attemptsUsed + 1 } };
}

/** The password was right. */
export function resetGuesses<R extends Counted>(r: R): R {
  return { ...r, attemptsUsed: 0 };
}

/** The final message was wrong; the guess was paid when it was granted. */
export function afterWrongGuess(r: Counted): { destroy: true } | { destroy: false; guessesRemaining: number } {
  return isExhausted(r) ? { destroy: true } : { destroy: false, guessesRemaining: guessesRemaining(r) };
}

/** A tombstone: `erase` blanks every field that could recover the secret. */
export function destroy<R extends Counted>(r: R, erase: (r: R) => R, now: number): R {
  return { ...erase(r), attemptsUsed: r.maxAttempts, destroyedAt: now };
}
