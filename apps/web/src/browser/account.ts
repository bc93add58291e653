/**
 * Signing up and in (spec/web-app.md §2): a passkey made or used through @simplewebauthn/browser,
 * or a one-time code for a new device that has no passkey yet.
 */
import { startAuthentication, startRegistration, type PublicKeyCredentialCreationOptionsJSON, type PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/browser';
import { api, h } from './dom.js';

export type SignedIn = (account: string, how: 'passkey' | 'code') => void;

/** The signed-in account, or null. */
export async function currentAccount(): Promise<string | null> {
  const r = await fetch('/api/session', { cache: 'no-store' });
  if (!r.ok) throw new Error(`the app server answered HTTP ${r.status}`);
  return ((await r.json()) as { account: string | null }).account;
}

export async function signOut(): Promise<void> {
  await api('/api/signout');
}

/** What the browser or the user said about a passkey request, in words. */
function passkeyTrouble(e: unknown, what: string): string {
  const name = (e as { name?: string })?.name;
  const code = (e as { code?: string })?.code;
  if (code === 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED') return 'This device already has a passkey for this account.';
  if (name === 'NotAllowedError' || name === 'AbortError') return `${what} was cancelled or timed out. Try again when you are ready.`;
  if (name === 'SecurityError') return `${what} is not allowed on this address: open the app at its https:// or localhost address.`;
  return `${what} failed: ${(e as Error)?.message ?? String(e)}`;
}

/** Makes a passkey for the signed-in account on this device. */
export async function addPasskey(): Promise<void> {
  const { ceremony, options } = await api<{ ceremony: string; options: PublicKeyCredentialCreationOptionsJSON }>('/api/passkeys/options');
  let response;
  try {
    response = await startRegistration({ optionsJSON: options });
  } catch (e) {
    throw new Error(passkeyTrouble(e, 'Adding a passkey'));
  }
  await api('/api/passkeys/verify', { ceremony, response });
}

const ACCOUNT_HINT = 'Letters, digits and . _ @ - (for example maria@example)';

/** Signed out: create an account, sign in with a passkey, or go to the one-time code. */
export function welcomeScreen(main: HTMLElement, done: SignedIn, useCode: (() => void) | null): void {
  const account = h('input', { id: 'signup-account', autocomplete: 'username webauthn', required: true, 'aria-describedby': 'signup-hint', spellcheck: 'false', autocapitalize: 'none' });
  const signupError = h('p', { role: 'alert', class: 'error', id: 'signup-error' });
  const signinError = h('p', { role: 'alert', class: 'error', id: 'signin-error' });
  const signup = h('button', { type: 'submit', class: 'primary' }, 'Create account with a passkey');
  const signin = h('button', { type: 'button', class: 'primary', onclick: () => void doSignIn() }, 'Sign in with a passkey');
  main.append(
    h('h1', {}, 'Welcome to Coffer Messenger'),
    h('p', {}, 'Your chats are backed up end-to-end encrypted: only your devices (and you, with your password or recovery key) can read them. Your account is a passkey: no password to remember for signing in.'),
    h('div', { class: 'cards' },
      h('section', { class: 'card', 'aria-labelledby': 'signin-title' },
        h('h2', { id: 'signin-title' }, 'Sign in'),
        h('p', {}, 'With the passkey this device (or your password manager) keeps.'),
        h('div', { class: 'actions' }, signin),
        signinError,
        useCode ? h('p', {}, 'New device without your passkey? ', h('button', { type: 'button', class: 'link', onclick: useCode }, 'Sign in with a one-time code')) : null,
      ),
      h('section', { class: 'card', 'aria-labelledby': 'signup-title' },
        h('h2', { id: 'signup-title' }, 'Create an account'),
        h('form', { onsubmit: (e: Event) => { e.preventDefault(); void doSignUp(); } },
          h('div', { class: 'field' }, h('label', { for: 'signup-account' }, 'Account name'), account, h('small', { id: 'signup-hint' }, ACCOUNT_HINT)),
          h('div', { class: 'actions' }, signup),
        ),
        signupError,
      ),
    ),
  );

  async function doSignUp(): Promise<void> {
    signupError.textContent = '';
    const name = account.value.trim().toLowerCase();
    if (!name) return void ((signupError.textContent = 'Choose an account name.'), account.focus());
    signup.disabled = true;
    try {
      const { ceremony, options } = await api<{ ceremony: string; options: PublicKeyCredentialCreationOptionsJSON }>('/api/signup/options', { account: name });
      let response;
      try {
        response = await startRegistration({ optionsJSON: options });
      } catch (e) {
        throw new Error(passkeyTrouble(e, 'Creating the passkey'));
      }
      const r = await api<{ account: string }>('/api/signup/verify', { ceremony, response });
      done(r.account, 'passkey');
    } catch (e) {
      signupError.textContent = (e as Error).message;
      signup.disabled = false;
      account.focus();
    }
  }

  async function doSignIn(): Promise<void> {
    signinError.textContent = '';
    signin.disabled = true;
    try {
      const { ceremony, options } = await api<{ ceremony: string; options: PublicKeyCredentialRequestOptionsJSON }>('/api/signin/options');
      let response;
      try {
        response = await startAuthentication({ optionsJSON: options });
      } catch (e) {
        throw new Error(passkeyTrouble(e, 'Signing in'));
      }
      const r = await api<{ account: string }>('/api/signin/verify', { ceremony, response });
      done(r.account, 'passkey');
    } catch (e) {
      signinError.textContent = (e as Error).message;
      signin.disabled = false;
    }
  }
}

/** A new device: a one-time code sent to the account (in development: to the dev inbox). */
export function codeScreen(main: HTMLElement, done: SignedIn, back: () => void, devInbox: boolean): void {
  const account = h('input', { id: 'code-account', autocomplete: 'username', spellcheck: 'false', autocapitalize: 'none' });
  const code = h('input', { id: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 7, pattern: '[0-9 ]*' });
  const status = h('p', { role: 'status', id: 'code-status' });
  const error = h('p', { role: 'alert', class: 'error', id: 'code-error' });
  const send = h('button', { type: 'submit' }, 'Send code');
  const verify = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const codePart = h('form', { hidden: true, onsubmit: (e: Event) => { e.preventDefault(); void doVerify(); } },
    h('div', { class: 'field' }, h('label', { for: 'code' }, 'One-time code (6 digits)'), code),
    h('div', { class: 'actions' }, verify),
  );
  main.append(
    h('h1', {}, 'Sign in on a new device'),
    h('p', {}, 'No passkey on this device? We send a one-time code to your account, as a messenger sends one by SMS. After signing in you can add a passkey here.'),
    devInbox ? h('p', { class: 'warning' }, 'Development server: codes are not sent anywhere; they appear on the server console and on the ', h('a', { href: '/dev/inbox', target: '_blank' }, 'dev inbox page'), '.') : '',
    h('form', { onsubmit: (e: Event) => { e.preventDefault(); void doSend(); } },
      h('div', { class: 'field' }, h('label', { for: 'code-account' }, 'Account name'), account),
      h('div', { class: 'actions' }, send, h('button', { type: 'button', onclick: back }, 'Back')),
    ),
    status,
    codePart,
    error,
  );

  let sentTo = '';
  async function doSend(): Promise<void> {
    error.textContent = '';
    const name = account.value.trim().toLowerCase();
    if (!name) return void ((error.textContent = 'Type your account name.'), account.focus());
    send.disabled = true;
    try {
      status.textContent = (await api<{ message: string }>('/api/code/send', { account: name })).message;
      sentTo = name;
      codePart.hidden = false;
      code.focus();
    } catch (e) {
      error.textContent = (e as Error).message;
    } finally {
      send.disabled = false;
    }
  }
  async function doVerify(): Promise<void> {
    error.textContent = '';
    if (!/^\d{3} ?\d{3}$/.test(code.value.trim())) return void ((error.textContent = 'The code has 6 digits.'), code.focus());
    verify.disabled = true;
    try {
      const r = await api<{ account: string }>('/api/code/verify', { account: sentTo, code: code.value.trim() });
      done(r.account, 'code');
    } catch (e) {
      error.textContent = (e as Error).message;
      verify.disabled = false;
      code.select();
    }
  }
}
