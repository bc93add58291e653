// The HSM boundary (spec/vault-protocol.md §6-§9). The only module where realm secrets (OPAQUE
// server setup, HPKE private key, ticket key, token secret) and plaintext records exist.
// Its interface: authenticate(token), openRequest(token, body), process(request, record).
// Records and tickets leave it only sealed.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { protocol } from '@coffer/core/vault';
import { sealRelease, sealResponse } from './channel.js';
import { InvalidTokenError, UnsealFailedError } from './errors.js';
import type { Hsm } from './hsm/types.js';
import type { StoredRecord } from './store/types.js';
import { audienceFor, issueToken, verifyToken, type TokenVerifier } from './token.js';

const {
  ENC_BYTES,
  PAD_BLOCK,
  PROTOCOL_LABEL,
  REQUEST_MAX_SKEW_MS,
  VAULT_OPS,
  WIRE_VERSION_BYTE,
  WRAPPED_KEY_BYTES,
  b64u,
  concat,
  fromB64u,
  fromUtf8,
  hpkeSuite,
  isRecord,
  isValidAccountId,
  lp,
  opaqueIdentifiers,
  requestAad,
  requestInfo,
  u64be,
  unpad,
  utf8,
} = protocol;
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

export interface AttemptPolicy {
  defaultMaxAttempts: number;
  minMaxAttempts: number;
  maxMaxAttempts: number;
}

export const DEFAULT_POLICY: AttemptPolicy = { defaultMaxAttempts: 10, minMaxAttempts: 3, maxMaxAttempts: 100 };
export const TICKET_TTL_MS = 120_000;
const TICKET_PLAINTEXT_BYTES = 448;
const REPLAY_WINDOW_MS = 2 * REQUEST_MAX_SKEW_MS;
const REPLAY_CACHE_MAX = 200_000;

/** A request the boundary refused before it could answer inside the channel (spec §5). */
export class RequestRejectedError extends Error {
  readonly code: VaultErrorCode;
  readonly httpStatus: number;
  readonly hint: string;
  constructor(code: VaultErrorCode, message: string, httpStatus = 400, hint = 'this request changed nothing; fix it and send a new one') {
    super(message);
    this.name = 'RequestRejectedError';
    this.code = code;
    this.httpStatus = httpStatus;
    this.hint = hint;
  }
}

/** What the front end must make durable before it may send `response`. */
export type Effect =
  | { kind: 'none' }
  | { kind: 'put'; expectedVersion: number | null; newVersion: number; sealed: Uint8Array }
  | { kind: 'delete'; expectedVersion: number };

/**
 * What happened, for the operator's counters (metrics). Aggregate only: the front end never
 * labels a metric with the account.
 */
export interface Outcome {
  op: protocol.VaultOp;
  status: protocol.ResponseStatus;
  /** A guess was paid (login-start on a live record). */
  attempt: boolean;
  /** This step turned a record into a tombstone (attempt limit reached). */
  destroyed: boolean;
}

export interface ProcessResult {
  response: Uint8Array;
  effect: Effect;
  outcome: Outcome;
}

interface RecordPlain {
  v: 1;
  account: string;
  opaqueRecord: string;
  wrappedKey: string;
  maxAttempts: number;
  attemptsUsed: number;
  loginSeq: number;
  finishedSeq: number;
  createdAt: number;
  /** Set when the attempt limit was reached: a tombstone without OPAQUE record or wrapped key (§8). */
  destroyedAt?: number;
}

interface Ticket {
  k: 'login' | 'register';
  a: string;
  exp: number;
  /** register: record version at issue (0 = none). login: login sequence number. */
  n: number;
  fake?: boolean;
  st?: string;
}

/** An opened request. Its contents are for the boundary module only (`parts`); the front end sees the account id. */
export class OpenedRequest {
  readonly #inner: InnerRequest;
  readonly #ctx: protocol.Exporter;
  readonly #enc: Uint8Array;
  /** Account the token named; the front end uses it to fetch the record. */
  readonly accountId: string;
  constructor(inner: InnerRequest, ctx: protocol.Exporter, enc: Uint8Array) {
    this.#inner = inner;
    this.#ctx = ctx;
    this.#enc = enc;
    this.accountId = inner.account;
  }
  static parts(r: OpenedRequest): { inner: InnerRequest; ctx: protocol.Exporter; enc: Uint8Array } {
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

export class Boundary {
  readonly realmIdText: string;
  readonly realmId: Uint8Array;
  readonly policy: AttemptPolicy;
  readonly #hsm: Hsm;
  readonly #recordKeyLabel: string;
  readonly #serverSetup: string;
  readonly #hpkeKey: CryptoKeyPair;
  readonly #previousKeys: { key: CryptoKeyPair; retireAt: number }[];
  readonly #ticketKey: Buffer;
  readonly #tokenVerifier: TokenVerifier;
  readonly #now: () => number;
  readonly #seen = new Map<string, number>();
  readonly #dummyRecordBytes: number;

  private constructor(
    o: BoundaryOptions,
    secrets: { serverSetup: string; hpkeKey: CryptoKeyPair; previousKeys: { key: CryptoKeyPair; retireAt: number }[]; ticketKey: Buffer; verifier: TokenVerifier },
  ) {
    this.realmIdText = o.realmIdText;
    this.realmId = fromB64u(o.realmIdText);
    this.policy = o.policy ?? DEFAULT_POLICY;
    this.#hsm = o.hsm;
    this.#recordKeyLabel = o.recordKeyLabel;
    this.#serverSetup = secrets.serverSetup;
    this.#hpkeKey = secrets.hpkeKey;
    this.#previousKeys = secrets.previousKeys;
    this.#ticketKey = secrets.ticketKey;
    this.#tokenVerifier = secrets.verifier;
    this.#now = o.now ?? Date.now;
    this.#dummyRecordBytes = 700;
  }

  /** Unseals the realm secrets through the HSM. */
  static async start(o: BoundaryOptions): Promise<Boundary> {
    await opaque.ready;
    const realmId = fromB64u(o.realmIdText);
    const plain = await o.hsm.unseal(o.realmKeyLabel, o.sealedSecrets, realmSecretsAad(realmId));
    const s = JSON.parse(fromUtf8(plain)) as RealmSecrets;
    plain.fill(0);
    const suite = hpkeSuite();
    const skBytes = fromB64u(s.hpkePrivateKey);
    const privateKey = await suite.kem.deserializePrivateKey(skBytes);
    skBytes.fill(0);
    const published = protocol.parseRealmPublicKey(o.realmPublicKey);
    // Self-test: a request sealed to the published key must open with the sealed private key.
    const probe = await protocol.sealRequest(published, { v: 1, op: 'status', id: 'probe', ts: 0, realm: o.realmIdText, account: 'probe', body: {} });
    try {
      if (published.realmIdText !== o.realmIdText) throw new Error('realm id differs');
      const rc = await suite.createRecipientContext({ recipientKey: privateKey, enc: probe.enc, info: requestInfo(published.realmId) });
      await rc.open(probe.body.slice(1 + ENC_BYTES), requestAad(published.realmId));
    } catch (cause) {
      throw new UnsealFailedError('realm configuration (the published realm public key does not match the sealed private key)', { cause });
    }
    const hpkeKey: CryptoKeyPair = { privateKey, publicKey: await suite.kem.deserializePublicKey(published.publicKey) };
    let verifier: TokenVerifier;
    if (o.tokenVerifier) verifier = o.tokenVerifier;
    else if (s.tokenSecret) verifier = { alg: 'HS256', secret: fromB64u(s.tokenSecret) };
    else throw new TypeError('no token verification key: the realm has no HS256 secret and no EdDSA public key was configured');
    const now = (o.now ?? Date.now)();
    const previousKeys: { key: CryptoKeyPair; retireAt: number }[] = [];
    for (const p of s.previousHpkeKeys ?? []) {
      if (p.retireAt <= now) continue;
      const old = protocol.parseRealmPublicKey(p.realmPublicKey);
      if (old.realmIdText !== o.realmIdText) throw new UnsealFailedError('realm configuration (a previous channel key belongs to another realm)');
      const sk = fromB64u(p.privateKey);
      previousKeys.push({ key: { privateKey: await suite.kem.deserializePrivateKey(sk), publicKey: await suite.kem.deserializePublicKey(old.publicKey) }, retireAt: p.retireAt });
      sk.fill(0);
    }
    return new Boundary(o, { serverSetup: s.opaqueServerSetup, hpkeKey, previousKeys, ticketKey: Buffer.from(fromB64u(s.ticketKey)), verifier });
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
  authenticate(token: string): string {
    return verifyToken(this.#tokenVerifier, token, this.audience, this.#now());
  }

  /** Development helper: issues an HS256 token with the realm's own secret. */
  issueDevelopmentToken(account: string, ttlSeconds: number): string {
    if (this.#tokenVerifier.alg !== 'HS256') throw new TypeError('this realm verifies EdDSA tokens; issue them with the app auth server key');
    return issueToken({ alg: 'HS256', secret: this.#tokenVerifier.secret }, { account, audience: this.audience, ttlSeconds, nowMs: this.#now() });
  }

  // ------------------------------------------------------------ channel, §6.2

  async openRequest(token: string, body: Uint8Array): Promise<OpenedRequest> {
    let account: string;
    try {
      account = this.authenticate(token);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw new RequestRejectedError('unauthorized', e.message, 401, e.hint);
      throw e;
    }
    if (body.length < 1 + ENC_BYTES + PAD_BLOCK + 16 || body[0] !== WIRE_VERSION_BYTE) {
      throw new RequestRejectedError('malformed-request', `not a protocol v1 request (expected version byte 0x01 and at least ${1 + ENC_BYTES + PAD_BLOCK + 16} bytes)`);
    }
    const enc = body.slice(1, 1 + ENC_BYTES);
    const suite = hpkeSuite();
    let opened: { pt: Uint8Array; ctx: protocol.Exporter } | null = null;
    // The current channel key first, then keys still in their overlap period (§3).
    const now0 = this.#now();
    for (const key of [this.#hpkeKey, ...this.#previousKeys.filter((p) => p.retireAt > now0).map((p) => p.key)]) {
      try {
        const rc = await suite.createRecipientContext({ recipientKey: key, enc, info: requestInfo(this.realmId) });
        opened = { pt: new Uint8Array(await rc.open(body.slice(1 + ENC_BYTES), requestAad(this.realmId))), ctx: rc };
        break;
      } catch {
        /* not sealed to this key */
      }
    }
    if (!opened) {
      throw new RequestRejectedError('undecryptable-request', 'the request could not be decrypted: it was altered, or sealed to another realm key', 400, 'check that the client pins this realm\'s public key (coffer vault init prints it)');
    }
    const { pt, ctx } = opened;
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
      !isValidAccountId(inner['account']) ||
      !isRecord(inner['body'])
    ) {
      throw new RequestRejectedError('malformed-request', 'the request does not follow protocol v1 (fields v, op, id, ts, realm, account, body)');
    }
    if (inner['realm'] !== this.realmIdText) throw new RequestRejectedError('malformed-request', 'the request names another realm');
    if (inner['account'] !== account) throw new RequestRejectedError('account-mismatch', 'the request was made for another account than the token names', 400, 'use the token of the account the request is for');
    const now = this.#now();
    if (Math.abs(now - (inner['ts'] as number)) > REQUEST_MAX_SKEW_MS) {
      throw new RequestRejectedError('stale-request', 'the request timestamp is more than 2 minutes away from the vault clock', 400, "check the client's clock, then send a new request");
    }
    this.#remember(inner['id'] as string, now);
    return new OpenedRequest(inner as unknown as InnerRequest, ctx, enc);
  }

  #remember(id: string, now: number): void {
    const seen = this.#seen.get(id);
    if (seen !== undefined && seen > now) throw new RequestRejectedError('replayed-request', 'this request was already received (replay)', 400, 'send a new request; a replay is never processed twice');
    if (this.#seen.size >= REPLAY_CACHE_MAX) {
      for (const [k, exp] of this.#seen) {
        if (exp <= now || this.#seen.size >= REPLAY_CACHE_MAX) this.#seen.delete(k);
        else break;
      }
    }
    this.#seen.set(id, now + REPLAY_WINDOW_MS);
  }

  // ------------------------------------------------------------ records, §8

  #recordAad(account: string, version: number): Uint8Array {
    return concat(utf8(`${PROTOCOL_LABEL} record`), lp(this.realmIdText), lp(account), u64be(version));
  }

  async #unsealRecord(account: string, stored: StoredRecord): Promise<RecordPlain> {
    const pt = await this.#hsm.unseal(this.#recordKeyLabel, stored.sealed, this.#recordAad(account, stored.version));
    const r = JSON.parse(fromUtf8(pt)) as RecordPlain;
    pt.fill(0);
    if (r.v !== 1 || r.account !== account) throw new UnsealFailedError('record (inner account mismatch)');
    return r;
  }

  async #sealRecord(r: RecordPlain, version: number): Promise<Uint8Array> {
    return this.#hsm.seal(this.#recordKeyLabel, utf8(JSON.stringify(r)), this.#recordAad(r.account, version));
  }

  // ------------------------------------------------------------ tickets, §7

  #ticketAad(account: string): Uint8Array {
    return concat(utf8(`${PROTOCOL_LABEL} ticket`), lp(account));
  }

  #sealTicket(t: Ticket): string {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#ticketKey, nonce);
    c.setAAD(this.#ticketAad(t.a));
    // Fixed length, so real and fake tickets (and any sequence number) look the same.
    const json = JSON.stringify(t);
    if (json.length > TICKET_PLAINTEXT_BYTES) throw new RangeError('ticket too large');
    const ct = Buffer.concat([c.update(json.padEnd(TICKET_PLAINTEXT_BYTES, ' ')), c.final(), c.getAuthTag()]);
    return b64u(concat(nonce, ct));
  }

  #openTicket(account: string, text: unknown, kind: Ticket['k']): Ticket | 'invalid' | 'expired' {
    if (typeof text !== 'string' || text.length > 2048) return 'invalid';
    try {
      const raw = fromB64u(text);
      const d = createDecipheriv('aes-256-gcm', this.#ticketKey, raw.subarray(0, 12));
      d.setAAD(this.#ticketAad(account));
      d.setAuthTag(raw.subarray(raw.length - 16));
      const t = JSON.parse(Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8')) as Ticket;
      if (t.k !== kind || t.a !== account) return 'invalid';
      if (t.exp < this.#now()) return 'expired';
      return t;
    } catch {
      return 'invalid';
    }
  }

  // ------------------------------------------------------------ operations, §7

  /**
   * Runs one step for an opened request against the account's current record. The caller must
   * apply `effect` (compare-and-set) and only then send `response`; on conflict, re-read the
   * record and call process again.
   */
  async process(req: OpenedRequest, stored: StoredRecord | null): Promise<ProcessResult> {
    const { inner, ctx, enc } = OpenedRequest.parts(req);
    const account = inner.account;
    const answer = async (status: protocol.ResponseStatus, fields: Record<string, unknown> = {}, effect: Effect = { kind: 'none' }): Promise<ProcessResult> => {
      const resp: InnerResponse = { ...fields, v: 1, id: inner.id, status };
      const outcome: Outcome = {
        op: inner.op,
        status,
        attempt: inner.op === 'login-start' && status === 'ok' && effect.kind === 'put',
        destroyed: status === 'destroyed' && effect.kind === 'put',
      };
      return { response: await sealResponse(ctx, enc, resp), effect, outcome };
    };
    const invalid = (message: string) => answer('invalid', { message });
    const rec = stored ? await this.#unsealRecord(account, stored) : null;
    const version = stored?.version ?? 0;
    const b = inner.body;
    const ids = opaqueIdentifiers(this.realmIdText, account);
    const put = (r: RecordPlain): Promise<Effect> =>
      this.#sealRecord(r, version + 1).then((sealed) => ({ kind: 'put', expectedVersion: stored ? version : null, newVersion: version + 1, sealed }));
    // The limit is reached: the OPAQUE record and the wrapped key are erased for good, and a
    // tombstone remains so that the account's owner is told "destroyed", not "never registered".
    const destroy = async (r: RecordPlain) =>
      answer('destroyed', {}, r.destroyedAt ? { kind: 'none' } : await put({ ...r, opaqueRecord: '', wrappedKey: '', destroyedAt: this.#now() }));

    switch (inner.op) {
      case 'register-start': {
        if (typeof b['registrationRequest'] !== 'string' || b['registrationRequest'].length > 1024) return invalid('registrationRequest missing');
        let registrationResponse: string;
        try {
          ({ registrationResponse } = opaque.server.createRegistrationResponse({ serverSetup: this.#serverSetup, userIdentifier: account, registrationRequest: b['registrationRequest'] }));
        } catch {
          return invalid('registrationRequest is not a valid OPAQUE registration request');
        }
        const ticket = this.#sealTicket({ k: 'register', a: account, exp: this.#now() + TICKET_TTL_MS, n: version });
        return answer('ok', { registrationResponse, ticket });
      }

      case 'register-finish': {
        const t = this.#openTicket(account, b['ticket'], 'register');
        if (t === 'invalid') return invalid('registration ticket invalid');
        if (t === 'expired') return answer('ticket-expired');
        if (t.n !== version) return answer('conflict');
        const reg = this.#checkRegistration(b);
        if (typeof reg === 'string') return invalid(reg);
        const live = rec && !rec.destroyedAt && rec.attemptsUsed < rec.maxAttempts ? rec : null;
        const attemptsUsed = live ? live.attemptsUsed : 0; // never lowered (§7.2)
        const r: RecordPlain = {
          v: 1,
          account,
          opaqueRecord: reg.registrationRecord,
          wrappedKey: reg.wrappedKey,
          maxAttempts: reg.maxAttempts,
          attemptsUsed,
          loginSeq: rec?.loginSeq ?? 0,
          finishedSeq: rec?.loginSeq ?? 0,
          createdAt: this.#now(),
        };
        return answer('ok', { maxAttempts: r.maxAttempts, guessesRemaining: Math.max(0, r.maxAttempts - attemptsUsed) }, await put(r));
      }

      case 'login-start': {
        const ke1 = b['startLoginRequest'];
        if (typeof ke1 !== 'string' || ke1.length > 1024) return invalid('startLoginRequest missing');
        if (rec && (rec.destroyedAt || rec.attemptsUsed >= rec.maxAttempts)) return destroy(rec);
        let started: { loginResponse: string; serverLoginState: string };
        try {
          started = opaque.server.startLogin({
            serverSetup: this.#serverSetup,
            registrationRecord: rec ? rec.opaqueRecord : null,
            startLoginRequest: ke1,
            userIdentifier: account,
            identifiers: ids,
          });
        } catch {
          return invalid('startLoginRequest is not a valid OPAQUE KE1');
        }
        if (!rec) {
          // Unknown account (§10): fake KE2 from the library, a ticket of the same shape, and an
          // HSM unseal and seal of a record-sized dummy so both paths do the same HSM work.
          const dummyAad = this.#recordAad(account, 0);
          const dummy = await this.#hsm.seal(this.#recordKeyLabel, new Uint8Array(this.#dummyRecordBytes), dummyAad);
          await this.#hsm.unseal(this.#recordKeyLabel, dummy, dummyAad);
          const ticket = this.#sealTicket({ k: 'login', a: account, exp: this.#now() + TICKET_TTL_MS, n: 0, fake: true, st: started.serverLoginState });
          return answer('ok', { loginResponse: started.loginResponse, ticket });
        }
        const next: RecordPlain = { ...rec, attemptsUsed: rec.attemptsUsed + 1, loginSeq: rec.loginSeq + 1 };
        const ticket = this.#sealTicket({ k: 'login', a: account, exp: this.#now() + TICKET_TTL_MS, n: next.loginSeq, st: started.serverLoginState });
        return answer('ok', { loginResponse: started.loginResponse, ticket }, await put(next));
      }

      case 'login-finish': {
        const t = this.#openTicket(account, b['ticket'], 'login');
        if (t === 'invalid') return invalid('login ticket invalid');
        if (t === 'expired') return answer('ticket-expired');
        if (t.fake) return answer('not-registered');
        if (!rec) return answer('not-registered');
        if (rec.destroyedAt) return answer('destroyed');
        if (t.n <= rec.finishedSeq || t.n > rec.loginSeq) return answer('ticket-expired');
        const action = b['action'];
        if (action !== 'recover' && action !== 'change-password') return invalid('action must be recover or change-password');
        const ke3 = b['finishLoginRequest'];
        let sessionKey: Uint8Array | null = null;
        if (typeof ke3 === 'string' && ke3.length <= 1024 && t.st) {
          try {
            sessionKey = fromB64u(opaque.server.finishLogin({ serverLoginState: t.st, finishLoginRequest: ke3, identifiers: ids }).sessionKey);
          } catch {
            sessionKey = null;
          }
        } else if (ke3 !== null) {
          return invalid('finishLoginRequest must be a string or null');
        }
        if (!sessionKey) {
          if (rec.attemptsUsed >= rec.maxAttempts) return destroy(rec);
          return answer('wrong-password', { guessesRemaining: rec.maxAttempts - rec.attemptsUsed });
        }
        const next: RecordPlain = { ...rec, attemptsUsed: 0, finishedSeq: rec.loginSeq };
        if (action === 'change-password') {
          const reg = this.#checkRegistration(isRecord(b['change']) ? b['change'] : {}, rec.maxAttempts);
          if (typeof reg === 'string') return invalid(reg);
          next.opaqueRecord = reg.registrationRecord;
          next.wrappedKey = reg.wrappedKey;
          next.maxAttempts = reg.maxAttempts;
        }
        const released = sealRelease(sessionKey, inner.id, fromB64u(next.wrappedKey));
        sessionKey.fill(0);
        return answer('ok', { released: b64u(released), maxAttempts: next.maxAttempts, guessesRemaining: next.maxAttempts }, await put(next));
      }

      case 'delete':
        if (!stored) return answer('ok', { deleted: false });
        return answer('ok', { deleted: true }, { kind: 'delete', expectedVersion: version });

      case 'status':
        if (!rec) return answer('ok', { registered: false });
        if (rec.destroyedAt) return answer('ok', { registered: false, destroyed: true });
        return answer('ok', { registered: true, guessesRemaining: Math.max(0, rec.maxAttempts - rec.attemptsUsed), maxAttempts: rec.maxAttempts });
    }
  }

  #checkRegistration(b: Record<string, unknown>, currentMax?: number): { registrationRecord: string; wrappedKey: string; maxAttempts: number } | string {
    const rr = b['registrationRecord'];
    if (typeof rr !== 'string' || rr.length < 64 || rr.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(rr)) return 'registrationRecord missing or malformed';
    try {
      // A record the OPAQUE library cannot use would only surface at the first login; try it now
      // with a throwaway KE1 (no state is kept).
      const probe = opaque.client.startLogin({ password: b64u(randomBytes(16)) });
      opaque.server.startLogin({ serverSetup: this.#serverSetup, registrationRecord: rr, startLoginRequest: probe.startLoginRequest, userIdentifier: 'probe' });
    } catch {
      return 'registrationRecord is not a valid OPAQUE registration record';
    }
    const wk = b['wrappedKey'];
    let wkBytes: Uint8Array;
    try {
      wkBytes = fromB64u(typeof wk === 'string' ? wk : '');
    } catch {
      return 'wrappedKey is not base64url';
    }
    if (wkBytes.length !== WRAPPED_KEY_BYTES) return `wrappedKey must be ${WRAPPED_KEY_BYTES} bytes`;
    const m = b['maxAttempts'] ?? currentMax ?? this.policy.defaultMaxAttempts;
    if (typeof m !== 'number' || !Number.isSafeInteger(m) || m < this.policy.minMaxAttempts || m > this.policy.maxMaxAttempts) {
      return `maxAttempts must be an integer from ${this.policy.minMaxAttempts} to ${this.policy.maxMaxAttempts} (operator bounds)`;
    }
    return { registrationRecord: rr, wrappedKey: wk as string, maxAttempts: m };
  }
}
