/**
 * A gate on a restore's requests to the store: while it is closed, new requests wait (those under
 * way finish). A restore closes it for a moment once the message database is verified, so that
 * reading and showing the first chat has the network and the CPU to itself (spec/web-app.md §8).
 * Signing out stops a restore under way through it.
 */
export class ReadGate {
  #opened: Promise<void> = Promise.resolve();
  #release: (() => void) | null = null;
  #stopped = false;
  close(): void {
    if (!this.#release) this.#opened = new Promise((r) => (this.#release = r));
  }
  open(): void {
    this.#release?.();
    this.#release = null;
    this.#opened = Promise.resolve();
  }
  /** Every request from now on fails: the restore stops (and removes what it wrote). */
  stop(): void {
    this.#stopped = true;
    this.open();
  }
  get stopped(): boolean {
    return this.#stopped;
  }
  /** A fetch that waits while the gate is closed (HttpStorage's transport). */
  readonly fetch: typeof fetch = async (...a) => {
    await this.#opened;
    if (this.#stopped) throw new Error('the restore was stopped');
    return fetch(...a);
  };
}
