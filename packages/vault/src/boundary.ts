// The HSM boundary (spec/vault-protocol.md §6-§9). The only module where realm secrets (OPAQUE
// server setup, HPKE private key, ticket key, token secret) and plaintext records exist, together
// with the operations it runs (opaque-ops.ts). Its interface: openRequest(token, body) (token and
// channel), process(request, record) (one operation). Records and tickets leave it only sealed.

import { CofferError, ExitCode } from '@coffer/core';
import * as opaque from '@serenity-kit/opaque';
import { protocol } from '@coffer/core/vault';
import { DEFAULT_POLICY, type AttemptPolicy } from './attempts.js';
import { sealResponse } from './channel.js';
import type { StepOutcome } from './commit.js';
import { InvalidTokenError, UnsealFailedError } from './errors.js';
import type { Hsm } from './hsm/types.js';
import type { Outcome as MetricsOutcome } from './metrics.js';
import { HpkeRecipientKey, type HpkeExporter } from './hpke.js';
import { OPAQUE_OPS, type OpaqueRecord } from './opaque-ops.js';
import { RecordSealer } from './records.js';
import type { RecordChange, StoredRecord } from './store/types.js';
import { TicketSealer } from './tickets.js';
import { audienceFor, issueToken, realmTokenKey, TokenVerifierCache, vaultTokenRules, type TokenVerifier } from './token.js';

export { DEFAULT_POLICY, type AttemptPolicy } from './attempts.js';
export { TICKET_TTL_MS } from './tickets.js';

const { ENC_BYTES, PAD_BLOCK, PROTOCOL_LABEL, REQUEST_MAX_SKEW_MS, VAULT_OPS, WIRE_VERSION_BYTE, concat, fromB64u, fromUtf8, isRecord, isValidAccountId, requestAad, requestInfo, unpad, utf8 } =
  protocol;
type InnerRequest = protocol.InnerRequest;
type InnerResponse = protocol.InnerResponse;
type VaultErrorCode = protocol.VaultErrorCode;

/** Realm secrets, as sealed by `vault init` (spec §3). */
export interface RealmSecrets {
  opaqueServerSetup: string;
  hpkePrivateKey: string;
  ticketKey: string;
  tokenSecret?: string;
  /**
   * Channel keys being retired (docs/operating.md §4): requests sealed to them still open until
   * `retireAt` (unix ms), so clients that pin the previous realm public key keep working during
   * the overlap period.
   */
  previousHpkeKeys?: { privateKey: string; realmPublicKey: string; retireAt: number }[];
}

/**
 * Every answer to one operation has one size, whatever its status (spec §10): a login-start
 * answered "destroyed" is as long as one carrying a KE2 and a ticket.
 */
const RESPONSE_PADDED_BYTES: Partial<Record<protocol.VaultOp, number>> = { 'login-start': 2 * PAD_BLOCK };

/** A request the boundary refused before it could answer inside the channel (spec §5). */
export class RequestRejectedError extends CofferError {
  declare readonly code: VaultErrorCode;
  declare readonly hint: string;
  readonly httpStatus: number;
  constructor(code: VaultErrorCode, message: string, httpStatus = 400, hint = 'this request changed nothing; fix it and send a new one') {
    super(code, message, { hint, exitCode: ExitCode.vault });
    this.name = 'RequestRejectedError';
    this.httpStatus = httpStatus;
  }
}

/** What happened, for the operator's counters (metrics.ts). */
export interface Outcome extends MetricsOutcome {
  op: protocol.VaultOp;
  status: protocol.ResponseStatus;
}

/** The response, and what happened (for metrics). Released only after the step's change is durable. */
export interface Answered {
  response: Uint8Array;
  outcome: Outcome;
}

/** An opened request. Its contents are for the boundary module only (`parts`); the front end sees the account id. */
export class OpenedRequest {
  readonly #inner: InnerRequest;
  readonly #ctx: HpkeExporter;
  readonly #enc: Uint8Array;
  /** Account the token named; the front end uses it to fetch the record. */
  readonly accountId: string;
  /** The request id, claimed once per realm when the step commits (§6.2 step 6). */
  readonly requestId: string;
  constructor(inner: InnerRequest, ctx: HpkeExporter, enc: Uint8Array) {
    this.#inner = inner;
    this.#ctx = ctx;
    this.#enc = enc;
    this.accountId = inner.account;
    this.requestId = inner.id;
  }
  static parts(r: OpenedRequest): { inner: InnerRequest; ctx: HpkeExporter; enc: Uint8Array } {
    return { inner: r.#inner, ctx: r.#ctx, enc: r.#enc };
  }
  toJSON(): string {
    return '[OpenedRequest]';
  }
}

export interface BoundaryOptions {
  realmIdText: string;
  /** The published `coffer-realm-v1:` key; checked against the sealed private key at start. */
  realmPublicKey: string;
  hsm: Hsm;
  /** HSM key labels. */
  realmKeyLabel: string;
  recordKeyLabel: string;
  sealedSecrets: Uint8Array;
  /** For EdDSA tokens; HS256 uses the sealed token secret. */
  tokenVerifier?: TokenVerifier;
  policy?: AttemptPolicy;
  now?: () => number;
}

export function realmSecretsAad(realmId: Uint8Array): Uint8Array {
  return concat(utf8(`${PROTOCOL_LABEL} realm-secrets`), realmId);
}

/** The realm secrets (§3), unsealed by the HSM's realm key. The caller drops what it does not keep. */
export async function unsealRealmSecrets(hsm: Hsm, realmKeyLabel: string, sealed: Uint8Array, realmId: Uint8Array): Promise<RealmSecrets> {
  const plain = await hsm.unseal(realmKeyLabel, sealed, realmSecretsAad(realmId));
  const s = JSON.parse(fromUtf8(plain)) as RealmSecrets;
  plain.fill(0);
  return s;
}

/** The HSM boundary of a realm (spec/threat-model.md): opens requests, runs the OPAQUE steps and attempt counting over sealed records. */
export class Boundary {
  readonly realmIdText: string;
  readonly realmId: Uint8Array;
  readonly policy: AttemptPolicy;
  readonly #hsm: Hsm;
  readonly #recordKeyLabel: string;
  readonly #serverSetup: string;
  readonly #hpkeKey: HpkeRecipientKey;
  readonly #previousKeys: { key: HpkeRecipientKey; retireAt: number }[];
  readonly #tokenVerifier: TokenVerifier;
  readonly #tokens: TokenVerifierCache<string>;
  readonly #now: () => number;
  readonly #tickets: TicketSealer;
  readonly #records: RecordSealer<OpaqueRecord>;

  private constructor(
    o: BoundaryOptions,
    secrets: { serverSetup: string; hpkeKey: HpkeRecipientKey; previousKeys: { key: HpkeRecipientKey; retireAt: number }[]; ticketKey: Uint8Array; verifier: TokenVerifier },
  ) {
    this.realmIdText = o.realmIdText;
    this.realmId = fromB64u(o.realmIdText);
    this.policy = o.policy ?? DEFAULT_POLICY;
    this.#hsm = o.hsm;
    this.#recordKeyLabel = o.recordKeyLabel;
    this.#serverSetup = secrets.serverSetup;
    this.#hpkeKey = secrets.hpkeKey;
    this.#previousKeys = secrets.previousKeys;
    this.#tokenVerifier = secrets.verifier;
    this.#tokens = new TokenVerifierCache(vaultTokenRules(secrets.verifier, audienceFor(o.realmIdText)));
    this.#now = o.now ?? Date.now;
    this.#tickets = new TicketSealer(secrets.ticketKey, this.#now);
    this.#records = new RecordSealer<OpaqueRecord>({ hsm: o.hsm, recordKeyLabel: o.recordKeyLabel, aadLabel: `${PROTOCOL_LABEL} record`, realm: o.realmIdText });
  }

  /** Unseals the realm secrets through the HSM, and checks them against the published realm key. */
  static async start(o: BoundaryOptions): Promise<Boundary> {
    await opaque.ready;
    const s = await unsealRealmSecrets(o.hsm, o.realmKeyLabel, o.sealedSecrets, fromB64u(o.realmIdText));
    const hpkeKey = await channelKey(o, s.hpkePrivateKey, o.realmPublicKey);
    const previousKeys = await previousChannelKeys(o, s.previousHpkeKeys ?? []);
    const verifier = realmTokenKey(o.tokenVerifier, s.tokenSecret);
    return new Boundary(o, { serverSetup: s.opaqueServerSetup, hpkeKey, previousKeys, ticketKey: fromB64u(s.ticketKey), verifier });
  }

  /** For readiness: the HSM answers and still has the record key. Uses no key (no nonce spent). */
  async probeHsm(): Promise<void> {
    await this.#hsm.probe();
    if (!(await this.#hsm.hasKey(this.#recordKeyLabel))) throw new UnsealFailedError('readiness probe (the record key is missing from the HSM)');
  }

  get audience(): string {
    return audienceFor(this.realmIdText);
  }

  /** Verifies an account token; returns the account id. */
  async authenticate(token: string): Promise<string> {
    return this.#tokens.verify(token, this.#now());
  }

  /** Development helper: issues an HS256 token with the realm's own secret. */
  issueDevelopmentToken(account: string, ttlSeconds: number): string {
    if (this.#tokenVerifier.alg !== 'HS256') throw new TypeError('this realm verifies EdDSA tokens; issue them with the app auth server key');
    return issueToken({ alg: 'HS256', secret: this.#tokenVerifier.secret }, { account, audience: this.audience, ttlSeconds, nowMs: this.#now() });
  }

  // ------------------------------------------------------------ channel, §6.2

  /** Checks 0-5 of §6.2. Check 6 (the request id, once per realm) is the store's, at commit. */
  async openRequest(token: string, body: Uint8Array): Promise<OpenedRequest> {
    const account = await this.#authenticated(token);
    if (body.length < 1 + ENC_BYTES + PAD_BLOCK + 16 || body[0] !== WIRE_VERSION_BYTE) {
      throw new RequestRejectedError('malformed-request', `not a protocol v1 request (expected version byte 0x01 and at least ${1 + ENC_BYTES + PAD_BLOCK + 16} bytes)`);
    }
    const enc = body.slice(1, 1 + ENC_BYTES);
    const { pt, ctx } = this.#open(enc, body.subarray(1 + ENC_BYTES));
    const inner = parseInner(pt);
    if (inner.realm !== this.realmIdText) throw new RequestRejectedError('malformed-request', 'the request names another realm');
    if (inner.account !== account) throw new RequestRejectedError('account-mismatch', 'the request was made for another account than the token names', 400, 'use the token of the account the request is for');
    if (Math.abs(this.#now() - inner.ts) > REQUEST_MAX_SKEW_MS) {
      throw new RequestRejectedError('stale-request', 'the request timestamp is more than 2 minutes away from the vault clock', 400, "check the client's clock, then send a new request");
    }
    return new OpenedRequest(inner, ctx, enc);
  }

  async #authenticated(token: string): Promise<string> {
    try {
      return await this.authenticate(token);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw new RequestRejectedError('unauthorized', e.message, 401, e.hint);
      throw e;
    }
  }

  /** HPKE open with the current channel key, then with keys still in their overlap period (§3). */
  #open(enc: Uint8Array, ct: Uint8Array): { pt: Uint8Array; ctx: HpkeExporter } {
    const now = this.#now();
    for (const key of [this.#hpkeKey, ...this.#previousKeys.filter((p) => p.retireAt > now).map((p) => p.key)]) {
      try {
        const { plaintext, exporter } = key.open(enc, requestInfo(this.realmId), requestAad(this.realmId), ct);
        return { pt: plaintext, ctx: exporter };
      } catch {
        /* not sealed to this key */
      }
    }
    throw new RequestRejectedError('undecryptable-request', 'the request could not be decrypted: it was altered, or sealed to another realm key', 400, "check that the client pins this realm's public key (coffer vault init prints it)");
  }

  // ------------------------------------------------------------ operations, §7

  /**
   * Runs one operation for an opened request against the account's current record. The caller
   * (commitStep) must make `change` durable and only then release the answer; on conflict it
   * re-reads the record and calls process again.
   */
  async process(req: OpenedRequest, stored: StoredRecord | null): Promise<StepOutcome<Answered>> {
    const { inner, ctx, enc } = OpenedRequest.parts(req);
    const version = stored?.version ?? 0;
    const r = await OPAQUE_OPS[inner.op]({
      account: inner.account,
      requestId: inner.id,
      body: inner.body,
      rec: stored ? await this.#records.unseal(inner.account, stored) : null,
      version,
      realmIdText: this.realmIdText,
      serverSetup: this.#serverSetup,
      policy: this.policy,
      now: this.#now(),
      tickets: this.#tickets,
      records: this.#records,
    });
    let change: RecordChange = { kind: 'none' };
    if (r.write?.kind === 'put') change = await this.#records.put(r.write.record, stored);
    if (r.write?.kind === 'delete') change = { kind: 'delete', expectedVersion: version };
    const resp: InnerResponse = { ...r.fields, v: 1, id: inner.id, status: r.status };
    const outcome: Outcome = { op: inner.op, status: r.status, attempt: r.attempt === true, destroyed: r.destroyed === true, lockout: r.status === 'destroyed' };
    const response = await sealResponse(ctx, enc, resp, {}, RESPONSE_PADDED_BYTES[inner.op]);
    return { change, ...(r.erase ? { erase: true } : {}), answer: { response, outcome } };
  }
}

/** Step 3 of §6.2: the decrypted request follows protocol v1. */
function parseInner(pt: Uint8Array): InnerRequest {
  let inner: unknown;
  try {
    inner = JSON.parse(fromUtf8(unpad(pt)));
  } catch {
    throw new RequestRejectedError('malformed-request', 'the decrypted request is not padded JSON');
  }
  if (
    !isRecord(inner) ||
    inner['v'] !== 1 ||
    !VAULT_OPS.includes(inner['op'] as protocol.VaultOp) ||
    typeof inner['id'] !== 'string' ||
    !/^[A-Za-z0-9_-]{22}$/.test(inner['id']) ||
    typeof inner['ts'] !== 'number' ||
    typeof inner['realm'] !== 'string' ||
    !isValidAccountId(inner['account']) ||
    !isRecord(inner['body'])
  ) {
    throw new RequestRejectedError('malformed-request', 'the request does not follow protocol v1 (fields v, op, id, ts, realm, account, body)');
  }
  return inner as unknown as InnerRequest;
}

/**
 * A channel key from the sealed secrets, checked against the realm public key published for it:
 * a request sealed to that key by the client's own HPKE code (@hpke/core) must open here.
 */
async function channelKey(o: BoundaryOptions, privateKeyText: string, realmPublicKey: string): Promise<HpkeRecipientKey> {
  const sk = fromB64u(privateKeyText);
  const key = HpkeRecipientKey.fromPrivateKey(sk);
  sk.fill(0);
  const published = protocol.parseRealmPublicKey(realmPublicKey);
  try {
    if (published.realmIdText !== o.realmIdText) throw new Error('realm id differs');
    const probe = await protocol.sealRequest(published, { v: 1, op: 'status', id: 'probe', ts: 0, realm: o.realmIdText, account: 'probe', body: {} });
    key.open(probe.enc, requestInfo(published.realmId), requestAad(published.realmId), probe.body.subarray(1 + ENC_BYTES));
  } catch (cause) {
    throw new UnsealFailedError('realm configuration (the published realm public key does not match the sealed private key)', { cause });
  }
  return key;
}

/** Channel keys still in their overlap period (§3). */
async function previousChannelKeys(o: BoundaryOptions, previous: NonNullable<RealmSecrets['previousHpkeKeys']>): Promise<{ key: HpkeRecipientKey; retireAt: number }[]> {
  const now = (o.now ?? Date.now)();
  const out: { key: HpkeRecipientKey; retireAt: number }[] = [];
  for (const p of previous) {
    if (p.retireAt > now) out.push({ key: await channelKey(o, p.privateKey, p.realmPublicKey), retireAt: p.retireAt });
  }
  return out;
}
