/**
 * Signing up and in (spec/web-app.md §2-§3): passkeys through @simplewebauthn/server, one-time
 * codes for a device without a passkey through a pluggable sender, sessions in HttpOnly,
 * SameSite=Strict cookies, and rate limits on all of it.
 */
import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse,
  type AuthenticationResponseJSON, type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { ACCOUNT, ACCOUNT_HINT, AccountTakenError, SESSION_DAYS, type Accounts } from './accounts.js';
import { field, HttpError, json, readJson } from './http.js';
import { RateLimiter } from './ratelimit.js';

/** Delivers one-time codes to an account's owner (SMS, e-mail, ...): spec/web-app.md §2. */
export interface CodeSender {
  send(account: string, code: string): Promise<void>;
}

/** Development only (`--dev`): codes go to the server's console and to the `/dev/inbox` page. */
export class DevInbox implements CodeSender {
  readonly entries: { account: string; code: string; at: number }[] = [];
  constructor(private readonly log: (line: string) => void) {}
  async send(account: string, code: string): Promise<void> {
    this.entries.unshift({ account, code, at: Date.now() });
    this.entries.length = Math.min(this.entries.length, 20);
    this.log(`[dev inbox] one-time code for ${account}: ${code}`);
  }
  page(): string {
    const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const rows = this.entries.map((e) => `<li><span class="account">${esc(e.account)}</span>: <strong class="code">${e.code}</strong> <time>${new Date(e.at).toLocaleTimeString('en-GB')}</time></li>`).join('\n');
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dev inbox · Coffer Messenger</title><link rel="stylesheet" href="/app.css"></head>
<body><main><h1>Dev inbox</h1><p class="warning">Development only (the server runs with --dev): one-time codes that a real server would send by SMS or e-mail. Reload for new ones.</p>
${rows ? `<ol class="inbox">${rows}</ol>` : '<p>No codes sent yet.</p>'}</main></body></html>\n`;
  }
}

const COOKIE = 'coffer_session';
const CEREMONY_MS = 5 * 60_000;
const CODE_MS = 10 * 60_000;
const CODE_TRIES = 5;

type Ceremony = { kind: 'signup'; challenge: string; account: string; userHandle: Uint8Array; expires: number }
  | { kind: 'signin'; challenge: string; expires: number }
  | { kind: 'add'; challenge: string; account: string; expires: number };

export function sessionToken(req: IncomingMessage): string | null {
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) return part.slice(eq + 1).trim();
  }
  return null;
}

const clientAddress = (req: IncomingMessage) => req.socket.remoteAddress ?? 'unknown';

export class Auth {
  private readonly ceremonies = new Map<string, Ceremony>();
  private readonly codes = new Map<string, { mac: Buffer; expires: number; tries: number }>();
  private readonly codeKey = randomBytes(32);
  private readonly perAddress = new RateLimiter(60, 30);
  private readonly codeSends = new RateLimiter(0.3, 3);
  private readonly codeTries = new RateLimiter(10 / 60, 10);
  readonly rpID: string;

  constructor(
    private readonly accounts: Accounts,
    private readonly origin: URL,
    private readonly codeSender: CodeSender | null,
    private readonly log: (line: string) => void,
  ) {
    this.rpID = origin.hostname;
  }

  get codesAvailable(): boolean {
    return this.codeSender !== null;
  }

  private cookie(token: string | null): string {
    const secure = this.origin.protocol === 'https:' ? '; Secure' : '';
    return `${COOKIE}=${token ?? ''}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${token ? SESSION_DAYS * 86_400 : 0}${secure}`;
  }

  /** Answers with a new session for `account` (the cookie, and who is signed in). */
  private signedIn(res: ServerResponse, account: string, how: 'passkey' | 'code'): void {
    json(res, 200, { account }, { 'set-cookie': this.cookie(this.accounts.newSession(account, how)) });
  }

  private newCeremony(c: Ceremony): string {
    const now = Date.now();
    if (this.ceremonies.size > 10_000) for (const [k, v] of this.ceremonies) if (v.expires < now) this.ceremonies.delete(k);
    if (this.ceremonies.size > 10_000) throw new HttpError(503, 'busy', 'too many sign-ins under way; try again in a minute', { 'retry-after': '60' });
    const id = randomBytes(16).toString('base64url');
    this.ceremonies.set(id, c);
    return id;
  }

  /** Takes (and so uses up) the ceremony named in `body`, which must be of `kind`. */
  private takeCeremony<K extends Ceremony['kind']>(body: Record<string, unknown>, kind: K): Extract<Ceremony, { kind: K }> {
    const id = field(body, 'ceremony', /^[A-Za-z0-9_-]{22}$/);
    const c = this.ceremonies.get(id);
    this.ceremonies.delete(id);
    if (!c || c.kind !== kind || c.expires < Date.now()) throw new HttpError(400, 'ceremony-expired', 'this sign-in step expired or was used; start again');
    return c as Extract<Ceremony, { kind: K }>;
  }

  private static response<T>(body: Record<string, unknown>): T {
    const r = body['response'];
    if (typeof r !== 'object' || r === null || typeof (r as { id?: unknown }).id !== 'string') throw new HttpError(400, 'bad-request', '"response" must be the passkey\'s answer');
    return r as T;
  }

  private account(body: Record<string, unknown>): string {
    const raw = field(body, 'account', /^.{1,64}$/s, ACCOUNT_HINT).trim().toLowerCase();
    if (!ACCOUNT.test(raw)) throw new HttpError(400, 'bad-account', `an account name is ${ACCOUNT_HINT}`);
    return raw;
  }

  private async registrationOptions(account: string, userHandle: Uint8Array, exclude: string[]) {
    return generateRegistrationOptions({
      rpName: 'Coffer Messenger', rpID: this.rpID, userName: account, userID: userHandle as Uint8Array<ArrayBuffer>,
      attestationType: 'none', timeout: CEREMONY_MS,
      authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      excludeCredentials: exclude.map((id) => ({ id })),
    });
  }

  private async verifyRegistration(c: { challenge: string }, body: Record<string, unknown>) {
    let v;
    try {
      v = await verifyRegistrationResponse({
        response: Auth.response<RegistrationResponseJSON>(body), expectedChallenge: c.challenge, expectedOrigin: this.origin.origin,
        expectedRPID: this.rpID, requireUserVerification: true,
      });
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(400, 'passkey-refused', 'the new passkey could not be verified; try again');
    }
    if (!v.verified) throw new HttpError(400, 'passkey-refused', 'the new passkey could not be verified; try again');
    const { credential } = v.registrationInfo;
    return { id: credential.id, publicKey: credential.publicKey, counter: credential.counter, transports: credential.transports ?? [] };
  }

  /** Routes of spec/web-app.md §2; false if `path` is none of them. `session` is the signed-in account. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, session: string | null): Promise<boolean> {
    const post = req.method === 'POST';
    switch (path) {
      case '/api/signup/options': {
        if (!post) return false;
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        const account = this.account(await readJson(req));
        if (this.accounts.exists(account)) throw new HttpError(409, 'account-taken', `${account} already has an account: sign in instead, or choose another name`);
        const userHandle = randomBytes(16);
        const options = await this.registrationOptions(account, userHandle, []);
        const ceremony = this.newCeremony({ kind: 'signup', challenge: options.challenge, account, userHandle, expires: Date.now() + CEREMONY_MS });
        json(res, 200, { ceremony, options });
        return true;
      }
      case '/api/signup/verify': {
        if (!post) return false;
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        const body = await readJson(req);
        const c = this.takeCeremony(body, 'signup');
        const passkey = await this.verifyRegistration(c, body);
        try {
          this.accounts.create(c.account, c.userHandle, passkey);
        } catch (e) {
          if (e instanceof AccountTakenError) throw new HttpError(409, 'account-taken', `${c.account} was taken meanwhile; choose another name`);
          throw e;
        }
        this.signedIn(res, c.account, 'passkey');
        return true;
      }
      case '/api/signin/options': {
        if (!post) return false;
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        await readJson(req);
        // No allowCredentials: the browser offers the passkeys it holds, so nobody learns which accounts exist.
        const options = await generateAuthenticationOptions({ rpID: this.rpID, userVerification: 'required', timeout: CEREMONY_MS });
        const ceremony = this.newCeremony({ kind: 'signin', challenge: options.challenge, expires: Date.now() + CEREMONY_MS });
        json(res, 200, { ceremony, options });
        return true;
      }
      case '/api/signin/verify': {
        if (!post) return false;
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        const body = await readJson(req);
        const c = this.takeCeremony(body, 'signin');
        const response = Auth.response<AuthenticationResponseJSON>(body);
        const passkey = this.accounts.passkey(response.id);
        const refused = new HttpError(401, 'passkey-refused', 'this passkey does not open an account here; sign up, or use a one-time code on a new device');
        if (!passkey) throw refused;
        let v;
        try {
          v = await verifyAuthenticationResponse({
            response, expectedChallenge: c.challenge, expectedOrigin: this.origin.origin, expectedRPID: this.rpID, requireUserVerification: true,
            credential: { id: passkey.id, publicKey: passkey.publicKey as Uint8Array<ArrayBuffer>, counter: passkey.counter, transports: passkey.transports as never },
          });
        } catch {
          throw refused;
        }
        if (!v.verified) throw refused;
        this.accounts.usedPasskey(passkey.id, v.authenticationInfo.newCounter);
        this.signedIn(res, passkey.accountId, 'passkey');
        return true;
      }
      case '/api/passkeys/options': {
        if (!post) return false;
        if (!session) throw notSignedIn();
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        await readJson(req);
        const options = await this.registrationOptions(session, this.accounts.userHandle(session)!, this.accounts.passkeyIds(session));
        const ceremony = this.newCeremony({ kind: 'add', challenge: options.challenge, account: session, expires: Date.now() + CEREMONY_MS });
        json(res, 200, { ceremony, options });
        return true;
      }
      case '/api/passkeys/verify': {
        if (!post) return false;
        if (!session) throw notSignedIn();
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        const body = await readJson(req);
        const c = this.takeCeremony(body, 'add');
        if (c.account !== session) throw new HttpError(400, 'ceremony-expired', 'this step belongs to another session; start again');
        this.accounts.addPasskey({ ...(await this.verifyRegistration(c, body)), accountId: session });
        json(res, 200, { account: session, passkeys: this.accounts.passkeyIds(session).length });
        return true;
      }
      case '/api/code/send': {
        if (!post) return false;
        if (!this.codeSender) throw new HttpError(501, 'codes-unavailable', 'this server cannot send one-time codes; sign in with your passkey');
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        const account = this.account(await readJson(req));
        this.codeSends.take(account, 'codes for this account');
        // The same answer, at once, whether or not the account exists.
        if (this.accounts.exists(account)) {
          const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
          this.codes.set(account, { mac: this.mac(account, code), expires: Date.now() + CODE_MS, tries: 0 });
          this.codeSender.send(account, code).catch((e: unknown) => this.log(`could not send a one-time code: ${(e as Error).message}`));
        }
        json(res, 202, { sent: true, message: `If ${account} has an account, a code is on its way. It is valid for 10 minutes.` });
        return true;
      }
      case '/api/code/verify': {
        if (!post) return false;
        this.perAddress.take(clientAddress(req), 'sign-in attempts');
        const body = await readJson(req);
        const account = this.account(body);
        const code = field(body, 'code', /^\s*\d{3}\s?\d{3}\s*$/, 'six digits').replace(/\s/g, '');
        this.codeTries.take(account, 'code attempts for this account');
        const entry = this.codes.get(account);
        const wrong = new HttpError(401, 'wrong-code', 'wrong or expired code: check it, or ask for a new one');
        if (!entry || entry.expires < Date.now()) throw wrong;
        const ok = timingSafeEqual(this.mac(account, code), entry.mac);
        if (ok || ++entry.tries >= CODE_TRIES) this.codes.delete(account);
        if (!ok) throw wrong;
        this.signedIn(res, account, 'code');
        return true;
      }
      case '/api/session':
        if (req.method !== 'GET') return false;
        json(res, 200, { account: session });
        return true;
      case '/api/signout': {
        if (!post) return false;
        const token = sessionToken(req);
        if (token) this.accounts.endSession(token);
        json(res, 200, { signedOut: true }, { 'set-cookie': this.cookie(null) });
        return true;
      }
      default:
        return false;
    }
  }

  private mac(account: string, code: string): Buffer {
    return createHmac('sha256', this.codeKey).update(`${account}\0${code}`).digest();
  }
}

export const notSignedIn = () => new HttpError(401, 'not-signed-in', 'sign in first');
