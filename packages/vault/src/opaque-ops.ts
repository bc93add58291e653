// The operations of vault protocol v1 (spec/vault-protocol.md §7), one function each, inside the
// boundary: they see the realm secrets and the unsealed record, and return the answer and the
// record change that must be durable before the answer leaves (commit.ts). The guess counter
// rules are attempts.ts.

import { randomBytes } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';
import { protocol } from '@coffer/core/vault';
import {
  afterWrongGuess,
  carriedOverAttempts,
  checkMaxAttempts,
  destroy,
  guessesRemaining,
  isDestroyed,
  isExhausted,
  resetGuesses,
  spendGuess,
  type AttemptPolicy,
  type Counted,
} from './attempts.js';
import type { TicketBase, TicketSealer } from './tickets.js';
import type { RecordSealer } from './records.js';
import { sealRelease } from './channel.js';

const { WRAPPED_KEY_BYTES, b64u, fromB64u, isRecord, opaqueIdentifiers } = protocol;

/** The plaintext of a v1 record (§8). Sealed by RecordSealer. */
export interface OpaqueRecord extends Counted {
  v: 1;
  account: string;
  /** Random id of this registration: new on register-finish and change-password (§8). Absent in records written before it existed (read as ""). */
  rid?: string;
  opaqueRecord: string;
  wrappedKey: string;
  loginSeq: number;
  finishedSeq: number;
  createdAt: number;
}

interface RegisterTicket extends TicketBase {
  k: 'register';
  /** Record version at register-start (0 = none). */
  n: number;
}

interface LoginTicket extends TicketBase {
  k: 'login';
  /** Login sequence number (0 for an unknown account). */
  n: number;
  /** The record's registration id at login-start. */
  r?: string;
  fake?: boolean;
  /** OPAQUE server login state. */
  st?: string;
}

/** Everything one operation needs. Built by the boundary for one request. */
export interface OpContext {
  account: string;
  requestId: string;
  body: Record<string, unknown>;
  /** The current record, unsealed, and its version (0 = none). */
  rec: OpaqueRecord | null;
  version: number;
  realmIdText: string;
  serverSetup: string;
  policy: AttemptPolicy;
  now: number;
  tickets: TicketSealer;
  records: RecordSealer<OpaqueRecord>;
}

/** What an operation decided. `write` must be durable before the answer is released. */
export interface OpResult {
  status: protocol.ResponseStatus;
  fields?: Record<string, unknown>;
  write?: { kind: 'put'; record: OpaqueRecord } | { kind: 'delete' };
  /** The write destroys secrets (tombstone, delete). */
  erase?: boolean;
  /** A guess was paid (login-start on a live record). */
  attempt?: boolean;
  /** This step turned the record into a tombstone. */
  destroyed?: boolean;
}

/** Size of an unknown account's dummy record, for the HSM work of §10. */
const DUMMY_RECORD_BYTES = 700;

const invalid = (message: string): OpResult => ({ status: 'invalid', fields: { message } });
const rid = (r: OpaqueRecord): string => r.rid ?? '';
const newRid = (): string => b64u(randomBytes(16));

/** The limit is reached: answer "destroyed", and leave a tombstone if there is none yet (§8). */
function destroyed(c: OpContext, rec: OpaqueRecord): OpResult {
  if (isDestroyed(rec)) return { status: 'destroyed' };
  const tomb = destroy(rec, (r) => ({ ...r, opaqueRecord: '', wrappedKey: '' }), c.now);
  return { status: 'destroyed', write: { kind: 'put', record: tomb }, erase: true, destroyed: true };
}

/** Checks a registration (register-finish, or the change of a change-password) (§7.2). */
function checkRegistration(c: OpContext, b: Record<string, unknown>, currentMax?: number): { registrationRecord: string; wrappedKey: string; maxAttempts: number } | string {
  const rr = b['registrationRecord'];
  if (typeof rr !== 'string' || rr.length < 64 || rr.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(rr)) return 'registrationRecord missing or malformed';
  try {
    // A record the OPAQUE library cannot use would only surface at the first login; try it now
    // with a throwaway KE1 (no state is kept).
    const probe = opaque.client.startLogin({ password: b64u(randomBytes(16)) });
    opaque.server.startLogin({ serverSetup: c.serverSetup, registrationRecord: rr, startLoginRequest: probe.startLoginRequest, userIdentifier: 'probe' });
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
  const m = checkMaxAttempts(c.policy, b['maxAttempts'] ?? currentMax);
  if (typeof m === 'string') return m;
  return { registrationRecord: rr, wrappedKey: wk as string, maxAttempts: m };
}

// ------------------------------------------------------------------------- §7.1

export async function registerStart(c: OpContext): Promise<OpResult> {
  const req = c.body['registrationRequest'];
  if (typeof req !== 'string' || req.length > 1024) return invalid('registrationRequest missing');
  let registrationResponse: string;
  try {
    ({ registrationResponse } = opaque.server.createRegistrationResponse({ serverSetup: c.serverSetup, userIdentifier: c.account, registrationRequest: req }));
  } catch {
    return invalid('registrationRequest is not a valid OPAQUE registration request');
  }
  const ticket = c.tickets.seal<RegisterTicket>({ k: 'register', a: c.account, n: c.version });
  return { status: 'ok', fields: { registrationResponse, ticket } };
}

// ------------------------------------------------------------------------- §7.2

export async function registerFinish(c: OpContext): Promise<OpResult> {
  const t = c.tickets.open<RegisterTicket>(c.account, c.body['ticket'], 'register');
  if (t === 'invalid') return invalid('registration ticket invalid');
  if (t === 'expired') return { status: 'ticket-expired' };
  if (t.n !== c.version) return { status: 'conflict' };
  const reg = checkRegistration(c, c.body);
  if (typeof reg === 'string') return invalid(reg);
  const { rec } = c;
  const record: OpaqueRecord = {
    v: 1,
    account: c.account,
    rid: newRid(),
    opaqueRecord: reg.registrationRecord,
    wrappedKey: reg.wrappedKey,
    maxAttempts: reg.maxAttempts,
    attemptsUsed: carriedOverAttempts(rec), // never lowered (§7.2)
    loginSeq: rec?.loginSeq ?? 0,
    finishedSeq: rec?.loginSeq ?? 0,
    createdAt: c.now,
  };
  // An exhausted record is destroyed by being replaced: its secrets must go from the files too.
  const erase = rec !== null && isExhausted(rec);
  return { status: 'ok', fields: { maxAttempts: record.maxAttempts, guessesRemaining: guessesRemaining(record) }, write: { kind: 'put', record }, erase };
}

// ------------------------------------------------------------------------- §7.3

export async function loginStart(c: OpContext): Promise<OpResult> {
  const ke1 = c.body['startLoginRequest'];
  if (typeof ke1 !== 'string' || ke1.length > 1024) return invalid('startLoginRequest missing');
  const { rec } = c;
  const spent = rec ? spendGuess(rec) : null;
  if (rec && spent?.kind === 'exhausted') return destroyed(c, rec);
  let started: { loginResponse: string; serverLoginState: string };
  try {
    started = opaque.server.startLogin({
      serverSetup: c.serverSetup,
      registrationRecord: rec ? rec.opaqueRecord : null,
      startLoginRequest: ke1,
      userIdentifier: c.account,
      identifiers: opaqueIdentifiers(c.realmIdText, c.account),
    });
  } catch {
    return invalid('startLoginRequest is not a valid OPAQUE KE1');
  }
  if (!rec || spent?.kind !== 'granted') {
    // Unknown account (§10): fake KE2 from the library, a ticket of the same shape, and the HSM
    // work of a record so both paths cost the same.
    await c.records.dummyRoundTrip(c.account, DUMMY_RECORD_BYTES);
    const ticket = c.tickets.seal<LoginTicket>({ k: 'login', a: c.account, n: 0, fake: true, st: started.serverLoginState });
    return { status: 'ok', fields: { loginResponse: started.loginResponse, ticket } };
  }
  const next: OpaqueRecord = { ...spent.next, loginSeq: rec.loginSeq + 1 };
  const ticket = c.tickets.seal<LoginTicket>({ k: 'login', a: c.account, n: next.loginSeq, r: rid(rec), st: started.serverLoginState });
  return { status: 'ok', fields: { loginResponse: started.loginResponse, ticket }, write: { kind: 'put', record: next }, attempt: true };
}

// ------------------------------------------------------------------------- §7.4

export async function loginFinish(c: OpContext): Promise<OpResult> {
  const t = c.tickets.open<LoginTicket>(c.account, c.body['ticket'], 'login');
  if (t === 'invalid') return invalid('login ticket invalid');
  if (t === 'expired') return { status: 'ticket-expired' };
  const { rec } = c;
  if (t.fake || !rec) return { status: 'not-registered' };
  if (isDestroyed(rec)) return { status: 'destroyed' };
  // A ticket belongs to one registration and one login (§7.4): not to a record registered
  // after a delete, and not twice.
  if ((t.r ?? '') !== rid(rec) || t.n <= rec.finishedSeq || t.n > rec.loginSeq) return { status: 'ticket-expired' };
  const action = c.body['action'];
  if (action !== 'recover' && action !== 'change-password') return invalid('action must be recover or change-password');
  const ke3 = c.body['finishLoginRequest'];
  let sessionKey: Uint8Array | null = null;
  if (typeof ke3 === 'string' && ke3.length <= 1024 && t.st) {
    try {
      sessionKey = fromB64u(opaque.server.finishLogin({ serverLoginState: t.st, finishLoginRequest: ke3, identifiers: opaqueIdentifiers(c.realmIdText, c.account) }).sessionKey);
    } catch {
      sessionKey = null;
    }
  } else if (ke3 !== null) {
    return invalid('finishLoginRequest must be a string or null');
  }
  if (!sessionKey) {
    const w = afterWrongGuess(rec);
    return w.destroy ? destroyed(c, rec) : { status: 'wrong-password', fields: { guessesRemaining: w.guessesRemaining } };
  }
  const next: OpaqueRecord = { ...resetGuesses(rec), finishedSeq: rec.loginSeq };
  if (action === 'change-password') {
    const reg = checkRegistration(c, isRecord(c.body['change']) ? c.body['change'] : {}, rec.maxAttempts);
    if (typeof reg === 'string') return invalid(reg);
    next.opaqueRecord = reg.registrationRecord;
    next.wrappedKey = reg.wrappedKey;
    next.maxAttempts = reg.maxAttempts;
    next.rid = newRid();
  }
  const released = sealRelease(sessionKey, c.requestId, fromB64u(next.wrappedKey));
  sessionKey.fill(0);
  return { status: 'ok', fields: { released: b64u(released), maxAttempts: next.maxAttempts, guessesRemaining: next.maxAttempts }, write: { kind: 'put', record: next } };
}

// ------------------------------------------------------------------------- §7.5

export async function deleteRecord(c: OpContext): Promise<OpResult> {
  const id = c.body['recordId'];
  if (typeof id !== 'string' || id.length > 64) return invalid('recordId missing: ask `status` for it first (§7.5)');
  if (!c.rec) return { status: 'ok', fields: { deleted: false } };
  // Bound to the registration the client saw: a delete held back and delivered after a new
  // registration does not delete that one.
  if (id !== rid(c.rec)) return { status: 'conflict' };
  return { status: 'ok', fields: { deleted: true }, write: { kind: 'delete' }, erase: true };
}

// ------------------------------------------------------------------------- §7.6

export async function status(c: OpContext): Promise<OpResult> {
  const { rec } = c;
  if (!rec) return { status: 'ok', fields: { registered: false } };
  if (isDestroyed(rec)) return { status: 'ok', fields: { registered: false, destroyed: true, recordId: rid(rec) } };
  return { status: 'ok', fields: { registered: true, guessesRemaining: guessesRemaining(rec), maxAttempts: rec.maxAttempts, recordId: rid(rec) } };
}

export const OPAQUE_OPS: Record<protocol.VaultOp, (c: OpContext) => Promise<OpResult>> = {
  'register-start': registerStart,
  'register-finish': registerFinish,
  'login-start': loginStart,
  'login-finish': loginFinish,
  delete: deleteRecord,
  status,
};
