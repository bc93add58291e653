// Sealing records with the HSM record key (spec/vault-protocol.md §8, spec/juicebox.md §6.1):
// AES-256-GCM inside the HSM, bound to the realm, the account and the version, so a row copied to
// another account or version, or rolled across protocols, fails to unseal. Generic over the
// record's plaintext type; each protocol names its own AAD label:
//
//     aad = label || lp(realm) || lp(account) || u64be(version)
//
// OPAQUE: label "coffer-vault-v1 record", realm = the realm id text; Juicebox: label
// "coffer-juicebox-v1 record", realm = the 16 realm id bytes, account = the record key.

import { protocol } from '@coffer/core/vault';
import { UnsealFailedError } from './errors.js';
import type { Hsm } from './hsm/types.js';
import type { RecordChange, StoredRecord } from './store/types.js';

const { concat, fromUtf8, lp, u64be, utf8 } = protocol;

export class RecordSealer<R extends { account: string }> {
  readonly #hsm: Hsm;
  readonly #label: string;
  readonly #aadPrefix: Uint8Array;

  /** `aadLabel` separates protocols; `realm` is the realm id as the protocol's AAD spells it. */
  constructor(o: { hsm: Hsm; recordKeyLabel: string; aadLabel: string; realm: string | Uint8Array }) {
    this.#hsm = o.hsm;
    this.#label = o.recordKeyLabel;
    this.#aadPrefix = concat(utf8(o.aadLabel), lp(o.realm));
  }

  aad(account: string, version: number): Uint8Array {
    return concat(this.#aadPrefix, lp(account), u64be(version));
  }

  async seal(r: R, version: number): Promise<Uint8Array> {
    return this.#hsm.seal(this.#label, utf8(JSON.stringify(r)), this.aad(r.account, version));
  }

  /** The change that replaces `stored` (or, if null, creates the record) with `r`, sealed at the next version. */
  async put(r: R, stored: StoredRecord | null): Promise<RecordChange> {
    const version = stored?.version ?? 0;
    return { kind: 'put', expectedVersion: stored ? version : null, newVersion: version + 1, sealed: await this.seal(r, version + 1) };
  }

  /** Unseals and checks that the record names the account it was stored under. */
  async unseal(account: string, stored: StoredRecord): Promise<R> {
    const pt = await this.#hsm.unseal(this.#label, stored.sealed, this.aad(account, stored.version));
    const r = JSON.parse(fromUtf8(pt)) as R;
    pt.fill(0);
    if (r.account !== account) throw new UnsealFailedError('record (inner account mismatch)');
    return r;
  }

  /**
   * The HSM work of one unseal and one seal of `bytes` zero bytes, for paths that have no record
   * (an unknown account), so that they cost what a real record costs.
   */
  async dummyRoundTrip(account: string, bytes: number): Promise<void> {
    const aad = this.aad(account, 0);
    const sealed = await this.#hsm.seal(this.#label, new Uint8Array(bytes), aad);
    await this.#hsm.unseal(this.#label, sealed, aad);
  }
}
