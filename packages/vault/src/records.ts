// Sealing records with the HSM record key (spec/vault-protocol.md §8): AES-256-GCM inside the HSM,
// bound to the realm, the account and the version, so a row copied to another account or
// version, or rolled across protocols, fails to unseal. Generic over the record's plaintext
// type; each protocol names its own `kind` (the OPAQUE records use "record").

import { protocol } from '@coffer/core/vault';
import { UnsealFailedError } from './errors.js';
import type { Hsm } from './hsm/types.js';
import type { StoredRecord } from './store/types.js';

const { PROTOCOL_LABEL, concat, fromUtf8, lp, u64be, utf8 } = protocol;

export class RecordSealer<R extends { account: string }> {
  readonly #hsm: Hsm;
  readonly #label: string;
  readonly #realmIdText: string;
  readonly #kind: string;

  /** `kind` separates protocols: "record" for OPAQUE (the v1 AAD), another word for any other. */
  constructor(o: { hsm: Hsm; recordKeyLabel: string; realmIdText: string; kind: string }) {
    this.#hsm = o.hsm;
    this.#label = o.recordKeyLabel;
    this.#realmIdText = o.realmIdText;
    this.#kind = o.kind;
  }

  aad(account: string, version: number): Uint8Array {
    return concat(utf8(`${PROTOCOL_LABEL} ${this.#kind}`), lp(this.#realmIdText), lp(account), u64be(version));
  }

  async seal(r: R, version: number): Promise<Uint8Array> {
    return this.#hsm.seal(this.#label, utf8(JSON.stringify(r)), this.aad(r.account, version));
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
