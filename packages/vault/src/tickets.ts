// Tickets (spec/vault-protocol.md §7): state the boundary hands to the client between two steps
// of one operation, sealed with the realm's ticket key (AES-256-GCM, node:crypto) and bound to
// the account, so any node of the realm can open it. Fixed plaintext size, so tickets of real
// and unknown accounts, and of any state, look alike.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { protocol } from '@coffer/core/vault';

const { PROTOCOL_LABEL, b64u, concat, fromB64u, lp, utf8 } = protocol;

export const TICKET_TTL_MS = 120_000;
const TICKET_PLAINTEXT_BYTES = 448;
const MAX_TICKET_CHARS = 2048;

export interface TicketBase {
  /** Kind (each operation opens only its own). */
  k: string;
  /** Account. */
  a: string;
  /** Expiry, unix ms. */
  exp: number;
}

export class TicketSealer {
  readonly #key: Buffer;
  readonly #now: () => number;

  constructor(key: Uint8Array, now: () => number) {
    this.#key = Buffer.from(key);
    this.#now = now;
  }

  #aad(account: string): Uint8Array {
    return concat(utf8(`${PROTOCOL_LABEL} ticket`), lp(account));
  }

  /** `exp` is set here: now + TICKET_TTL_MS. */
  seal<T extends TicketBase>(t: Omit<T, 'exp'>): string {
    const json = JSON.stringify({ ...t, exp: this.#now() + TICKET_TTL_MS });
    if (json.length > TICKET_PLAINTEXT_BYTES) throw new RangeError('ticket too large');
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#key, nonce);
    c.setAAD(this.#aad(t.a));
    const ct = Buffer.concat([c.update(json.padEnd(TICKET_PLAINTEXT_BYTES, ' ')), c.final(), c.getAuthTag()]);
    return b64u(concat(nonce, ct));
  }

  /** The ticket, or why not: `invalid` (not ours, another kind or account), `expired`. */
  open<T extends TicketBase>(account: string, text: unknown, kind: T['k']): T | 'invalid' | 'expired' {
    if (typeof text !== 'string' || text.length > MAX_TICKET_CHARS) return 'invalid';
    let t: T;
    try {
      const raw = fromB64u(text);
      const d = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, 12));
      d.setAAD(this.#aad(account));
      d.setAuthTag(raw.subarray(raw.length - 16));
      t = JSON.parse(Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8')) as T;
    } catch {
      return 'invalid';
    }
    if (t.k !== kind || t.a !== account) return 'invalid';
    if (t.exp < this.#now()) return 'expired';
    return t;
  }
}
