/**
 * Coffer Messenger: a messenger-style page whose chats back up end-to-end encrypted. Encryption
 * runs here, through @coffer/core with Web Crypto; the server only stores ciphertext (the HTTP
 * object store) and wrapped keys: the vault's (reached through OPAQUE and its HPKE channel with the
 * realm key pinned in the app's configuration), or shares of the key at three independent realms
 * (the Juicebox protocol over Noise, spec/web-app.md §4).
 */
import {
  backup, ConflictError, formatRecoveryKey, fromHex, generateBackupKey, parseRecoveryKey, Repository, restore, SecretKey, toHex,
  UsageError, webCryptoProvider as crypto, WrongKeyError, type BackupSource, type Progress,
} from '@coffer/core';
import {
  INSECURE_TEST_ONLY_FAST_PIN_HASHING, juiceboxRecoverBackupKey, juiceboxRegisterBackupKey, parseConfiguration, perRealmLimitFor, STANDARD_2019,
  type JuiceboxConnection, type PinHashingMode,
} from '@coffer/core/juicebox';
import {
  DEFAULT_MAX_ATTEMPTS, INSECURE_TEST_ONLY_FAST_KEY_STRETCHING, KeyDestroyedError, NotRegisteredError, recoverBackupKey, registerBackupKey,
  VaultClientError, WrongPasswordError, type KeyStretching,
} from '@coffer/core/vault';
import { addPasskey, codeScreen, currentAccount, signOut, welcomeScreen } from './account.js';
import { CHAT_DATABASE, ChatReader, type Attachment, type ChatOverview, type Message } from './chat-db.js';
import { OpfsSource, OpfsTarget, opfsFile, PhoneSource, phoneFileUrl, removeRestored } from './device.js';
import { api, h } from './dom.js';
import { HttpStorage } from '@coffer/http';
import { ReadGate } from './read-gate.js';
import { workerCodec } from './worker-codec.js';

interface Config {
  realmPublicKey: string;
  /** The realms, as the Juicebox SDK's Configuration without its pin_hashing_mode (this build's, below). */
  juicebox: { realms: { id: string; address: string; public_key: string | null }[]; register_threshold: number; recover_threshold: number };
  /** The server can send one-time codes (spec/web-app.md §2). */
  codeSignIn: boolean;
  /** Development server: codes go to /dev/inbox. */
  devInbox: boolean;
}

/**
 * How the password is stretched before OPAQUE is this build's, never the server's (spec/web-app.md
 * §5): a test bundle is built with the flag below, and then says so on every screen.
 */
declare const __COFFER_INSECURE_TEST_ONLY_FAST_KEY_STRETCHING__: boolean;
const INSECURE_TEST_BUILD = typeof __COFFER_INSECURE_TEST_ONLY_FAST_KEY_STRETCHING__ !== 'undefined' && __COFFER_INSECURE_TEST_ONLY_FAST_KEY_STRETCHING__;
const KEY_STRETCHING_NAME = INSECURE_TEST_BUILD ? 'insecure-test-only-fast' : 'memory-constrained';
const KEY_STRETCHING: KeyStretching = INSECURE_TEST_BUILD ? INSECURE_TEST_ONLY_FAST_KEY_STRETCHING : 'memory-constrained';
/** Over the realms the password is stretched by the Juicebox PIN hashing mode, likewise this build's. */
const PIN_HASHING: PinHashingMode = INSECURE_TEST_BUILD ? INSECURE_TEST_ONLY_FAST_PIN_HASHING : STANDARD_2019;

/** Where a password keeps the backup key: the Backup Key Vault (OPAQUE), or three realms (Juicebox). */
type PasswordStore = 'vault' | 'realms';
/** What is recorded with the account at registration (spec/web-app.md §5): the path and its stretching. */
const PRESET: Record<PasswordStore, string> = { vault: KEY_STRETCHING_NAME, realms: `juicebox:${PIN_HASHING}` };

interface BackupState {
  /** `password`: the vault; `realms`: a password over the realms. */
  protection: 'password' | 'realms' | 'recovery-key';
  /** K, hex. Kept in this origin's storage, as the CLI keeps it in its 0600 profile. */
  key: string;
  lastSeq: number | null;
  lastAt?: string;
  lastBytes?: number;
  lastFiles?: number;
}

interface DeviceState {
  account: string;
  data: 'phone' | 'restored';
  restoredDir?: string;
  restoredFrom?: { seq: number; createdAt: string; files: number; bytes: number };
  backup?: BackupState;
}

const app = document.getElementById('app')!;
let config: Config;
/** The signed-in account (spec/web-app.md §3), or null. */
let account: string | null = null;
/** How this session was opened: a device signed in with a code is offered a passkey of its own. */
let signedInWith: 'passkey' | 'code' | null = null;
/** The chats shown: a reader with the database open, its overview, and the threads read so far. */
interface Chat {
  reader: ChatReader;
  overview: ChatOverview;
  threads: Map<number, Promise<Message[]>>;
}
let chat: Promise<Chat> | null = null;
/** A reader started before its database is there (a restore loads SQLite while the database arrives). */
let preparedReader: ChatReader | null = null;

/** Forgets the chats shown (and ends their reader). */
function forgetChat(): void {
  void chat?.then((c) => c.reader.close(), () => {});
  chat = null;
  currentConversation = null;
}
let currentConversation: number | null = null;
let objectUrls: string[] = [];

/**
 * A restore under way whose chats are already shown (spec/format.md §6.3: the message database
 * comes first): the chats screen shows `state` (not yet this device's, which it becomes only when
 * every byte verified) and fills in media as they arrive.
 */
interface Restoring {
  state: DeviceState;
  /** Paths of the files complete and verified so far. */
  arrived: Set<string>;
  last: Progress | null;
  /** The chats screen's hooks while it is shown. */
  onProgress: ((p: Progress) => void) | null;
  onArrive: (() => void) | null;
  /** The restore's reads wait here while the first chat is read and shown. */
  readGate: ReadGate;
}
let restoring: Restoring | null = null;
/** The longest a restore's media wait for its first chat to show. */
const YIELD_TO_FIRST_CHAT_MS = 3000;

// ---- small helpers ------------------------------------------------------------------------

/** This device's state for the signed-in account (each account on a browser has its own). */
const stateKey = () => `coffer.device:${account}`;
function loadState(): DeviceState | null {
  if (!account) return null;
  try {
    const s = JSON.parse(localStorage.getItem(stateKey()) ?? 'null') as DeviceState | null;
    return s?.account === account ? s : null;
  } catch {
    return null;
  }
}
function saveState(s: DeviceState | null): void {
  if (s) localStorage.setItem(stateKey(), JSON.stringify(s));
  else localStorage.removeItem(stateKey());
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '…';
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}
const when = (iso: string) => new Date(iso).toLocaleString();

function storageFor(account: string, readGate?: ReadGate): HttpStorage {
  return new HttpStorage(new URL(`/store/${encodeURIComponent(account)}/`, location.href).href, readGate?.fetch);
}

/** A key stretching recorded at registration that is not this build's: using it would only burn a guess. */
class PresetMismatchError extends Error {
  override name = 'PresetMismatchError';
}

/** A password's way to the backup key: registering it, and recovering it (one counted guess). */
interface PasswordAccess {
  store: PasswordStore;
  register(password: string, key: SecretKey): Promise<void>;
  recover(password: string): Promise<SecretKey>;
}

/**
 * Short-lived tokens for the signed-in account (spec/web-app.md §4), and what to do with them.
 * `register` records where this build registers the password and how it stretches it; `use` learns
 * that from the account, and checks the stretching first (§5).
 */
async function passwordAccess(purpose: 'register', store: PasswordStore): Promise<PasswordAccess>;
async function passwordAccess(purpose: 'use'): Promise<PasswordAccess>;
async function passwordAccess(purpose: 'register' | 'use', chosen?: PasswordStore): Promise<PasswordAccess> {
  const r = await api<{ token?: string; realmTokens?: Record<string, string>; keyStretching: string | null }>(
    '/api/token',
    purpose === 'register' ? { purpose, keyStretching: PRESET[chosen!] } : { purpose },
  );
  const store: PasswordStore = r.realmTokens ? 'realms' : 'vault';
  if (chosen && store !== chosen) throw new Error('the server answered tokens for another kind of password backup; reload the page');
  if (purpose === 'use' && r.keyStretching !== null && r.keyStretching !== PRESET[store]) {
    throw new PresetMismatchError(
      `This backup password was registered by an app that stretches passwords with "${r.keyStretching}"; this app uses "${PRESET[store]}". ` +
        'No guess was spent. Restore with that app, or with your recovery key.',
    );
  }
  // The client's default calls fetch as a method of its config, which browsers refuse.
  const fetchFn: typeof fetch = (input, init) => fetch(input, init);
  if (store === 'vault') {
    const conn = { vaultUrl: location.origin, realmPublicKey: config.realmPublicKey, token: r.token!, fetch: fetchFn, keyStretching: KEY_STRETCHING };
    return {
      store,
      register: async (password, key) => void (await registerBackupKey({ ...conn, password, backupKey: key.expose() })),
      recover: async (password) => new SecretKey(await recoverBackupKey({ ...conn, password })),
    };
  }
  const tokens = r.realmTokens!;
  const conn: JuiceboxConnection = {
    configuration: parseConfiguration({ ...config.juicebox, pin_hashing_mode: PIN_HASHING }),
    token: (id) => tokens[id] ?? Promise.reject(new Error(`the server gave no token for realm ${id}; reload the page`)),
    fetch: fetchFn,
  };
  const { realms, recoverThreshold } = conn.configuration;
  return {
    store,
    register: (password, key) => juiceboxRegisterBackupKey(conn, account!, password, key, perRealmLimitFor(realms.length, recoverThreshold, DEFAULT_MAX_ATTEMPTS)),
    recover: (password) => juiceboxRecoverBackupKey(conn, account!, password),
  };
}

/** Progress as a bar and a line of text: bytes, rate and time left. */
function progressView(label: string): { el: HTMLElement; update(p: Progress): void; finish(text: string): void; fail(): void } {
  const bar = h('progress', { max: 1, value: 0, 'aria-label': label });
  const text = h('p', { class: 'progress-text', 'aria-live': 'polite' }, 'Starting…');
  const el = h('div', { class: 'progress', hidden: true }, bar, text);
  let start = 0;
  let lastPaint = 0;
  return {
    el,
    update(p) {
      if (!start) {
        start = performance.now();
        el.hidden = false;
      }
      const now = performance.now();
      if (now - lastPaint < 100 && p.bytesDone < p.bytesTotal) return;
      lastPaint = now;
      const secs = (now - start) / 1000;
      const rate = secs > 0 ? p.bytesDone / secs : 0;
      const left = rate > 0 ? (p.bytesTotal - p.bytesDone) / rate : Infinity;
      bar.max = Math.max(1, p.bytesTotal);
      bar.value = p.bytesDone;
      text.textContent = `${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)} · ${formatBytes(rate)}/s · ${p.bytesDone >= p.bytesTotal ? 'finishing' : `${formatDuration(left)} left`} · ${p.filesDone} of ${p.filesTotal} files`;
    },
    finish(t) {
      bar.value = bar.max;
      text.textContent = t;
    },
    fail() {
      el.hidden = true;
    },
  };
}

function focusHeading(): void {
  const heading = app.querySelector<HTMLElement>('main h1, main h2');
  heading?.setAttribute('tabindex', '-1');
  heading?.focus();
}

// ---- layout -------------------------------------------------------------------------------

type Screen = 'welcome' | 'code' | 'setup' | 'chats' | 'backups' | 'restore';

function render(screen: Screen): void {
  for (const u of objectUrls) URL.revokeObjectURL(u);
  objectUrls = [];
  if (restoring && screen !== 'chats') restoring.onProgress = restoring.onArrive = null;
  const state = restoring?.state ?? loadState();
  const nav = h('nav', { class: 'top', 'aria-label': 'Main' },
    h('span', { class: 'brand' }, 'Coffer Messenger'),
    state ? h('button', { type: 'button', 'aria-current': screen === 'chats' ? 'page' : undefined, onclick: () => render('chats') }, 'Chats') : null,
    state && !restoring ? h('button', { type: 'button', 'aria-current': screen === 'backups' ? 'page' : undefined, onclick: () => render('backups') }, 'Backups') : null,
    account ? h('span', { class: 'who' }, `Signed in as ${account}`) : null,
    account ? h('button', { type: 'button', class: 'quiet', onclick: () => void signOutAndClear() }, 'Sign out and clear this device') : null,
  );
  const main = h('main', { id: 'main' });
  app.replaceChildren(
    h('a', { href: '#main', class: 'skip' }, 'Skip to content'),
    INSECURE_TEST_BUILD ? h('p', { class: 'test-build', role: 'note' }, 'INSECURE TEST BUILD: passwords are stretched with Argon2id on 8 KiB, t=1. Never use it for real backups.') : '',
    h('header', {}, nav),
    main,
  );
  if (!account) screen = screen === 'code' && config.codeSignIn ? 'code' : 'welcome';
  else if (!state && screen !== 'restore') screen = 'setup';
  if (screen === 'welcome') welcomeScreen(main, signedIn, config.codeSignIn ? () => render('code') : null);
  else if (screen === 'code') codeScreen(main, signedIn, () => render('welcome'), config.devInbox);
  else if (screen === 'setup') setupScreen(main);
  else if (screen === 'restore') restoreScreen(main);
  else if (screen === 'backups') backupsScreen(main, state!);
  else void chatsScreen(main, state!);
  app.dataset['screen'] = screen;
  focusHeading();
}

function signedIn(who: string, how: 'passkey' | 'code'): void {
  account = who;
  signedInWith = how;
  forgetChat();
  render(loadState() ? 'chats' : 'setup');
}

async function signOutAndClear(): Promise<void> {
  // A restore under way stops, and keeps nothing.
  restoring?.readGate.stop();
  restoring = null;
  saveState(null);
  forgetChat();
  await removeRestored();
  await signOut().catch(() => {});
  account = null;
  signedInWith = null;
  render('welcome');
}

/** Signed in, and this device holds no chats of the account yet: this phone's, or a restore. */
function setupScreen(main: HTMLElement): void {
  const passkeyStatus = h('p', { role: 'status', id: 'passkey-status' });
  const addButton = h('button', { type: 'button', onclick: async () => {
    addButton.disabled = true;
    passkeyStatus.textContent = '';
    try {
      await addPasskey();
      passkeyStatus.textContent = 'Passkey added: this device signs in by itself from now on.';
      addButton.hidden = true;
    } catch (e) {
      passkeyStatus.textContent = (e as Error).message;
      addButton.disabled = false;
    }
  } }, 'Add a passkey on this device');
  main.append(
    h('h1', {}, `Welcome, ${account}`),
    signedInWith === 'code'
      ? h('div', { class: 'notice' }, h('p', {}, 'You signed in with a one-time code. Add a passkey so that this device can sign in by itself next time.'), addButton, passkeyStatus)
      : '',
    h('p', {}, 'Which chats should this device show?'),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', onclick: () => {
        saveState({ account: account!, data: 'phone' });
        render('chats');
      } }, "Use this phone's chats"),
      h('button', { type: 'button', onclick: () => render('restore') }, 'Restore on a new device'),
    ),
  );
}

// ---- chats --------------------------------------------------------------------------------

/** The chats of this device's data, read in the page (spec/web-app.md §7): no server sees a chat. */
function loadChat(state: DeviceState): Promise<Chat> {
  chat ??= (async () => {
    const reader = preparedReader ?? ChatReader.start();
    preparedReader = null;
    try {
      let db: Blob | null;
      if (state.data === 'phone') {
        const r = await fetch(phoneFileUrl(CHAT_DATABASE), { cache: 'no-store' });
        if (!r.ok) throw new Error(`this phone's message database could not be fetched (HTTP ${r.status})`);
        db = await r.blob();
      } else {
        db = await opfsFile(state.restoredDir!, CHAT_DATABASE);
        if (!db) throw new Error('the restored message database is missing from this device');
      }
      return { reader, overview: await reader.open(db), threads: new Map() };
    } catch (e) {
      reader.close();
      throw e;
    }
  })();
  // A failure is shown once; the next visit tries again.
  chat.catch(() => (chat = null));
  return chat;
}

function threadOf(c: Chat, id: number): Promise<Message[]> {
  let t = c.threads.get(id);
  if (!t) {
    c.threads.set(id, (t = c.reader.messages(id)));
    t.catch(() => c.threads.delete(id));
  }
  return t;
}

async function mediaUrl(state: DeviceState, path: string): Promise<string> {
  if (state.data === 'phone') return phoneFileUrl(path);
  const f = await opfsFile(state.restoredDir!, path);
  if (!f) return '';
  const u = URL.createObjectURL(f);
  objectUrls.push(u);
  return u;
}

/** A picture, a playable voice note or a video to download. */
function mediaFigure(a: Attachment, url: string): HTMLElement {
  const name = a.path.split('/').pop()!;
  if (a.kind === 'photo') {
    return h('figure', { class: 'photo', 'data-path': a.path, 'data-size': a.size },
      h('a', { href: url, download: name, 'aria-label': `Photo ${name}, ${formatBytes(a.size)}: download` }, h('img', { src: url, alt: '', decoding: 'async' })),
      h('figcaption', {}, `${name} · ${formatBytes(a.size)}`));
  }
  if (a.kind === 'voice') {
    return h('figure', { class: 'voice', 'data-path': a.path, 'data-size': a.size },
      h('audio', { controls: true, preload: 'metadata', src: url, 'aria-label': `Voice note, ${Math.round((a.durationMs ?? 0) / 1000)} seconds` }),
      h('figcaption', {}, `Voice note · ${Math.round((a.durationMs ?? 0) / 1000)} s · ${formatBytes(a.size)}`));
  }
  return h('figure', { class: 'video', 'data-path': a.path, 'data-size': a.size },
    h('a', { href: url, download: name, 'aria-label': `Video ${name}, ${formatBytes(a.size)}: download` }, `Video · ${Math.round((a.durationMs ?? 0) / 1000)} s`),
    h('figcaption', {}, `${name} · ${formatBytes(a.size)}`));
}

const KIND_NAME: Record<string, string> = { photo: 'Photo', voice: 'Voice note', video: 'Video' };

/** A medium still on its way during a restore. */
function pendingFigure(a: Attachment): HTMLElement {
  return h('figure', { class: `pending ${a.kind}`, 'data-path': a.path, 'data-size': a.size },
    h('div', { class: 'placeholder', role: 'img', 'aria-label': `${KIND_NAME[a.kind] ?? 'File'} ${a.path.split('/').pop()}, still being restored` }, `${KIND_NAME[a.kind] ?? 'File'} · ${formatBytes(a.size)}`),
    h('figcaption', {}, 'Arriving…'));
}

async function chatsScreen(main: HTMLElement, state: DeviceState): Promise<void> {
  main.append(h('h1', { class: 'visually-hidden' }, 'Chats'));
  const live = restoring?.state === state ? restoring : null;
  if (live) {
    // Messages first (spec/format.md §6.3): the chats are here; media fill in as they arrive.
    const progress = progressView('Restore progress');
    main.append(h('div', { class: 'notice restoring', id: 'restoring' },
      h('p', { role: 'status' }, 'Your chats are back. Photos and voice notes appear as they are restored and verified.'), progress.el));
    live.onProgress = (p) => progress.update(p);
    if (live.last) progress.update(live.last);
  } else if (state.restoredFrom) {
    main.append(h('p', { class: 'notice', role: 'status', id: 'restored' }, `Restored backup #${state.restoredFrom.seq} from ${when(state.restoredFrom.createdAt)}: ${state.restoredFrom.files} files, ${formatBytes(state.restoredFrom.bytes)}, every byte verified.`));
  }
  let c: Chat;
  try {
    c = await loadChat(state);
  } catch (e) {
    live?.readGate.open();
    main.append(h('p', { role: 'alert', class: 'error' }, `Could not open the chats: ${(e as Error).message}`));
    return;
  }
  const data = c.overview;
  const names = new Map(data.contacts.map((c) => [c.id, c.name]));
  currentConversation ??= data.conversations[0]?.id ?? null;
  const thread = h('section', { class: 'thread', 'aria-labelledby': 'thread-title' });
  const list = h('ul', { class: 'conversations' });
  const shownAttachments = new Map<string, Attachment>();
  /** Replaces the placeholders of media that have arrived (called after each render and arrival). */
  const fillIn = async () => {
    for (const f of thread.querySelectorAll<HTMLElement>('figure.pending')) {
      const path = f.dataset['path']!;
      if (!live?.arrived.has(path)) continue;
      f.classList.remove('pending');
      f.replaceWith(mediaFigure(shownAttachments.get(path)!, await mediaUrl(state, path)));
    }
  };
  if (live) live.onArrive = () => void fillIn();
  // Only the latest request to show a thread shows one: an older one still building is dropped.
  let latest = 0;
  const showThread = async (id: number) => {
    const mine = ++latest;
    currentConversation = id;
    thread.setAttribute('aria-busy', 'true');
    for (const b of list.querySelectorAll('button')) b.setAttribute('aria-current', String(b.dataset['id'] === String(id)));
    const conv = data.conversations.find((x) => x.id === id)!;
    let msgs: Message[];
    try {
      msgs = await threadOf(c, id);
    } catch (e) {
      if (mine !== latest) return;
      thread.replaceChildren(h('h2', { id: 'thread-title' }, conv.title), h('p', { role: 'alert', class: 'error' }, `Could not read this conversation: ${(e as Error).message}`));
      thread.removeAttribute('aria-busy');
      return;
    }
    const ol = h('ol', { class: 'messages', 'aria-label': `Messages with ${conv.title}` });
    for (const m of msgs) {
      const out = m.sender === data.self;
      const li = h('li', { class: `msg ${out ? 'out' : 'in'}`, 'data-id': m.id },
        h('span', { class: 'sender' }, out ? 'You' : names.get(m.sender) ?? 'Unknown'),
        m.body ? h('p', { class: 'body' }, m.body) : null,
      );
      for (const a of m.attachments) {
        shownAttachments.set(a.path, a);
        li.append(live && !live.arrived.has(a.path) ? pendingFigure(a) : mediaFigure(a, await mediaUrl(state, a.path)));
      }
      li.append(h('time', { datetime: new Date(m.ts).toISOString() }, new Date(m.ts).toLocaleString()));
      ol.append(li);
    }
    if (mine !== latest) return;
    thread.replaceChildren(h('h2', { id: 'thread-title' }, conv.title), h('p', { class: 'meta' }, `${conv.messages} messages; the latest ${msgs.length} shown`), ol);
    thread.removeAttribute('aria-busy');
    ol.lastElementChild?.scrollIntoView({ block: 'end' });
    await fillIn();
  };
  for (const conv of data.conversations) {
    list.append(h('li', {}, h('button', { type: 'button', 'data-id': conv.id, onclick: () => void showThread(conv.id) },
      h('span', { class: 'title' }, conv.title), h('span', { class: 'count' }, `${conv.messages} messages`))));
  }
  main.append(h('div', { class: 'chat-layout' }, h('nav', { class: 'conversation-list', 'aria-label': 'Conversations' }, list), thread));
  if (currentConversation !== null) await showThread(currentConversation);
  main.dataset['ready'] = 'true';
  // For bench/browser.mjs: when chats first show after a restore starts (time to first chat).
  performance.mark('coffer:chats-shown');
  live?.readGate.open();
}

// ---- backups ------------------------------------------------------------------------------

const realmCount = () => config.juicebox.realms.length;
const PROTECTION: Record<BackupState['protection'], string> = {
  get password() {
    return 'your password (Backup Key Vault)';
  },
  get realms() {
    return `your password (${realmCount()} independent realms, all ${config.juicebox.recover_threshold} needed)`;
  },
  'recovery-key': 'your 64-digit recovery key',
};

function backupsScreen(main: HTMLElement, state: DeviceState): void {
  main.append(h('h1', {}, 'Backups'));
  if (!state.backup) return turnOnView(main, state);
  const b = state.backup;
  const status = h('dl', { class: 'status' },
    h('dt', {}, 'Encrypted backup'), h('dd', {}, `On, protected by ${PROTECTION[b.protection]}`),
    h('dt', {}, 'Last backup'), h('dd', { id: 'last-backup' }, b.lastAt ? when(b.lastAt) : 'Never'),
    h('dt', {}, 'Size'), h('dd', { id: 'last-size' }, b.lastBytes !== undefined ? `${formatBytes(b.lastBytes)} in ${b.lastFiles} files` : '—'),
  );
  const progress = progressView('Backup progress');
  const error = h('p', { role: 'alert', class: 'error' });
  const button = h('button', { type: 'button', class: 'primary', onclick: () => void run() }, 'Back up now');
  main.append(status, h('div', { class: 'actions' }, button), progress.el, error);

  async function run(): Promise<void> {
    button.disabled = true;
    error.textContent = '';
    const started = performance.now();
    try {
      const storage = storageFor(state.account);
      const repo = await Repository.open(storage, crypto, new SecretKey(fromHex(b.key)));
      const source: BackupSource = state.data === 'phone' ? new PhoneSource() : new OpfsSource(state.restoredDir!);
      const codec = workerCodec(repo.keys, repo.config.segmentSize);
      let r;
      try {
        r = await backup(repo, source, { codec, lastSeenSeq: b.lastSeq, onProgress: (p) => progress.update(p) });
      } finally {
        await codec.close();
      }
      const secs = (performance.now() - started) / 1000;
      const next: DeviceState = { ...state, backup: { ...b, lastSeq: r.seq, lastAt: new Date().toISOString(), lastBytes: r.bytes, lastFiles: r.files } };
      saveState(next);
      Object.assign(state, next);
      status.querySelector('#last-backup')!.textContent = when(next.backup!.lastAt!);
      status.querySelector('#last-size')!.textContent = `${formatBytes(r.bytes)} in ${r.files} files`;
      progress.finish(`Backup #${r.seq} done: ${formatBytes(r.bytes)} in ${r.files} files, ${formatBytes(r.bytesUploaded)} new (encrypted) uploaded in ${secs.toFixed(1)} s.`);
      main.dataset['backupSeq'] = String(r.seq);
    } catch (e) {
      progress.fail();
      error.textContent = `The backup failed: ${(e as Error).message}`;
    } finally {
      button.disabled = false;
    }
  }
}

function turnOnView(main: HTMLElement, state: DeviceState): void {
  const error = h('p', { role: 'alert', class: 'error' });
  const choice = (value: string, label: string, checked: boolean) =>
    h('div', { class: 'radio' }, h('input', { type: 'radio', name: 'protection', id: `protect-${value}`, value, checked, onchange: () => show() }), h('label', { for: `protect-${value}` }, label));
  const pw = h('input', { type: 'password', id: 'new-password', autocomplete: 'new-password', minlength: 8 });
  const pw2 = h('input', { type: 'password', id: 'new-password-again', autocomplete: 'new-password' });
  const vaultNote = h('p', {}, `The vault keeps your backup key, unlocked only by this password. It never sees the password, and after ${DEFAULT_MAX_ATTEMPTS} wrong guesses it destroys the key for good.`);
  const realmsNote = h('p', { hidden: true },
    `Your backup key is split over ${realmCount()} independent realms, each with its own records and hardware key store; all ${config.juicebox.recover_threshold} are needed to unlock it with this password. ` +
      `None sees the password, each counts every wrong guess, and after ${DEFAULT_MAX_ATTEMPTS} each erases its share for good: whoever rolls back or seizes one or two realms gains no guess.`);
  const passwordPart = h('div', { class: 'part' },
    vaultNote, realmsNote,
    h('div', { class: 'field' }, h('label', { for: 'new-password' }, 'Password (at least 8 characters)'), pw),
    h('div', { class: 'field' }, h('label', { for: 'new-password-again' }, 'Password again'), pw2),
  );
  let key: SecretKey | null = null;
  const keyOut = h('output', { id: 'recovery-key', class: 'recovery-key', 'aria-label': 'Your recovery key' });
  const copied = h('span', { role: 'status', class: 'copied' });
  const confirm = h('textarea', { id: 'recovery-key-confirm', rows: 2, autocomplete: 'off', spellcheck: 'false' });
  const shown = h('div', { class: 'part', hidden: true },
    h('p', {}, 'This is your recovery key. It is shown only this once: write it down or keep it in a password manager. Anyone with it can read your backups; without it (and without a password) nobody can.'),
    keyOut,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => void copy() }, 'Copy recovery key'), copied),
    h('div', { class: 'field' }, h('label', { for: 'recovery-key-confirm' }, 'To confirm you saved it, type the recovery key again'), confirm),
  );
  const create = h('button', { type: 'button', onclick: () => {
    key = generateBackupKey(crypto);
    keyOut.textContent = formatRecoveryKey(key);
    shown.hidden = false;
    create.hidden = true;
    keyOut.focus();
  } }, 'Create recovery key');
  keyOut.setAttribute('tabindex', '0');
  const keyPart = h('div', { class: 'part', hidden: true },
    h('p', {}, 'No vault: a 64-digit recovery key is the only way to restore. Lose it and the backup cannot be opened.'), create, shown);
  const submit = h('button', { type: 'button', class: 'primary', onclick: () => void turnOn() }, 'Turn on encrypted backup');
  const progressNote = h('p', { role: 'status' });
  main.append(
    h('p', {}, 'Encrypted backup is off. Turn it on to keep an end-to-end encrypted copy of your chats, photos and voice notes in your cloud drive.'),
    h('fieldset', {}, h('legend', {}, 'Protect the backup with'),
      choice('password', 'A password, kept by the Backup Key Vault', true),
      choice('realms', `A password, spread over ${realmCount()} independent realms`, false),
      choice('recovery-key', 'A 64-digit recovery key', false)),
    passwordPart, keyPart, h('div', { class: 'actions' }, submit), progressNote, error,
  );
  const mode = () => (main.querySelector<HTMLInputElement>('input[name=protection]:checked')!.value as BackupState['protection']);
  function show(): void {
    passwordPart.hidden = mode() === 'recovery-key';
    vaultNote.hidden = mode() !== 'password';
    realmsNote.hidden = mode() !== 'realms';
    keyPart.hidden = mode() !== 'recovery-key';
  }
  async function copy(): Promise<void> {
    try {
      await navigator.clipboard.writeText(keyOut.textContent ?? '');
      copied.textContent = 'Copied.';
    } catch {
      getSelection()?.selectAllChildren(keyOut);
      copied.textContent = 'Copying is not allowed here: the key is selected, press Ctrl+C.';
    }
  }
  async function turnOn(): Promise<void> {
    error.textContent = '';
    const m = mode();
    if (m !== 'recovery-key') {
      if (pw.value.length < 8) return void ((error.textContent = 'The password needs at least 8 characters.'), pw.focus());
      if (pw.value !== pw2.value) return void ((error.textContent = 'The two passwords differ.'), pw2.focus());
    } else {
      if (!key) return void ((error.textContent = 'Create a recovery key first.'), create.focus());
      let typed: SecretKey;
      try {
        typed = parseRecoveryKey(confirm.value);
      } catch (e) {
        return void ((error.textContent = `${(e as Error).message}.`), confirm.focus());
      }
      if (toHex(typed.expose()) !== toHex(key.expose())) return void ((error.textContent = 'That is not the recovery key shown above; check each group of four.'), confirm.focus());
    }
    submit.disabled = true;
    try {
      const k = key ?? generateBackupKey(crypto);
      progressNote.textContent = 'Creating the encrypted backup store…';
      await Repository.init(storageFor(state.account), crypto, k);
      if (m !== 'recovery-key') {
        progressNote.textContent = m === 'password' ? 'Registering the backup key with the vault…' : `Registering the backup key with ${realmCount()} realms…`;
        await (await passwordAccess('register', m === 'password' ? 'vault' : 'realms')).register(pw.value, k);
      }
      const next: DeviceState = { ...state, backup: { protection: m, key: toHex(k.expose()), lastSeq: null } };
      saveState(next);
      render('backups');
      document.querySelector('main')!.prepend(h('p', { class: 'notice', role: 'status' }, 'Encrypted backup is on.'));
    } catch (e) {
      progressNote.textContent = '';
      error.textContent =
        e instanceof ConflictError ? `The cloud drive of ${state.account} already holds a backup: restore it on a new device instead.` : `Could not turn on backup: ${(e as Error).message}`;
      submit.disabled = false;
    }
  }
}

// ---- restore ------------------------------------------------------------------------------

function restoreScreen(main: HTMLElement): void {
  const acct = account!;
  const choice = (value: string, label: string, checked: boolean) =>
    h('div', { class: 'radio' }, h('input', { type: 'radio', name: 'unlock', id: `unlock-${value}`, value, checked, onchange: () => show() }), h('label', { for: `unlock-${value}` }, label));
  const pw = h('input', { type: 'password', id: 'restore-password', autocomplete: 'current-password' });
  const rk = h('textarea', { id: 'restore-recovery-key', rows: 2, autocomplete: 'off', spellcheck: 'false' });
  const pwPart = h('div', { class: 'field' }, h('label', { for: 'restore-password' }, 'Backup password'), pw);
  const rkPart = h('div', { class: 'field', hidden: true }, h('label', { for: 'restore-recovery-key' }, 'Recovery key (64 digits; spaces and dashes are ignored)'), rk);
  const error = h('div', { role: 'alert', class: 'error', id: 'restore-error' });
  const warning = h('p', { class: 'warning', id: 'restore-warning', hidden: true });
  const progress = progressView('Restore progress');
  const submit = h('button', { type: 'button', class: 'primary', onclick: () => void run() }, 'Restore');
  main.append(
    h('h1', {}, 'Restore on a new device'),
    h('p', {}, `Get every message, photo and voice note of ${acct} back from the encrypted backup in your cloud drive.`),
    h('fieldset', {}, h('legend', {}, 'Unlock the backup with'), choice('password', 'My password', true), choice('recovery-key', 'My 64-digit recovery key', false)),
    pwPart, rkPart, warning, h('div', { class: 'actions' }, submit, loadState() ? null : h('button', { type: 'button', onclick: () => render('setup') }, 'Back')),
    error, progress.el,
  );
  const mode = () => main.querySelector<HTMLInputElement>('input[name=unlock]:checked')!.value as 'password' | 'recovery-key';
  function show(): void {
    pwPart.hidden = mode() !== 'password';
    rkPart.hidden = mode() !== 'recovery-key';
  }
  async function run(): Promise<void> {
    error.textContent = '';
    const m = mode();
    if (m === 'password' && !pw.value) return void ((error.textContent = 'Type the backup password.'), pw.focus());
    submit.disabled = true;
    let key: SecretKey;
    /** Where the password keeps the key, once the server said (the account's record, spec/web-app.md §5). */
    let store: PasswordStore | null = null;
    const keeper = () => (store === 'realms' ? 'the realms' : 'the vault');
    try {
      if (m === 'password') {
        const access = await passwordAccess('use');
        store = access.store;
        key = await access.recover(pw.value);
      } else {
        key = parseRecoveryKey(rk.value);
      }
    } catch (e) {
      pw.value = '';
      if (e instanceof WrongPasswordError && e.guessesRemaining > 0) {
        error.replaceChildren(h('strong', {}, 'Wrong password. '), `${e.guessesRemaining} ${e.guessesRemaining === 1 ? 'guess remains' : 'guesses remain'} ${store === 'realms' ? 'before the realms erase their shares of the backup key' : 'before the vault destroys the backup key'}.`);
        error.dataset['guessesRemaining'] = String(e.guessesRemaining);
        warning.hidden = e.guessesRemaining !== 1;
        warning.textContent = 'Last attempt: one more wrong password and the backup key is destroyed for good. If you are not sure, use the recovery key instead.';
        pw.focus();
      } else if (e instanceof KeyDestroyedError || (e instanceof WrongPasswordError && e.guessesRemaining === 0)) {
        warning.hidden = true;
        error.replaceChildren(h('strong', {}, 'The backup key is gone for good. '), `${store === 'realms' ? 'The realms erased their shares of it' : 'The vault destroyed it'} after too many wrong passwords. Only the 64-digit recovery key, if you saved one, can still open this backup.`);
        error.dataset['destroyed'] = 'true';
        pw.disabled = true;
      } else if (e instanceof PresetMismatchError) {
        error.textContent = e.message;
        error.dataset['presetMismatch'] = 'true';
      } else if (e instanceof NotRegisteredError) {
        error.textContent = `${acct} has no backup key in ${keeper()}. ${e.hint}.`;
      } else if (e instanceof UsageError) {
        error.textContent = `${e.message}. ${e.hint ?? ''}`;
        rk.focus();
      } else {
        error.textContent = `Could not unlock the backup: ${(e as Error).message}${e instanceof VaultClientError ? `. ${e.hint}.` : ''}`;
      }
      submit.disabled = false;
      return;
    }
    performance.mark('coffer:restore-start');
    // SQLite loads while the database is on its way.
    preparedReader?.close();
    preparedReader = ChatReader.start();
    const target = new OpfsTarget();
    const live: Restoring = { state: { account: acct, data: 'restored', restoredDir: target.dirName }, arrived: new Set(), last: null, onProgress: null, onArrive: null, readGate: new ReadGate() };
    try {
      const repo = await Repository.open(storageFor(acct, live.readGate), crypto, key);
      restoring = live;
      const codec = workerCodec(repo.keys, repo.config.segmentSize);
      const r = await restore(repo, target, {
        codec,
        onProgress: (p) => {
          live.last = p;
          progress.update(p);
          live.onProgress?.(p);
        },
        // Messages first (spec/format.md §6.3): the chats open as soon as the database is verified.
        onFile: (e) => {
          live.arrived.add(e.path);
          if (e.path === CHAT_DATABASE) {
            performance.mark('coffer:database-verified');
            // The media wait (at most a few seconds) while the chats are read and shown.
            live.readGate.close();
            setTimeout(() => live.readGate.open(), YIELD_TO_FIRST_CHAT_MS);
            forgetChat();
            render('chats');
          } else live.onArrive?.();
        },
      }).finally(() => codec.close());
      performance.mark('coffer:restored');
      // Signed out meanwhile (after the last read): nothing of it is kept.
      if (live.readGate.stopped) return void (await removeRestored());
      await removeRestored(target.dirName);
      const state: DeviceState = {
        ...live.state,
        restoredFrom: { seq: r.seq, createdAt: r.createdAt, files: r.files, bytes: r.bytes },
        backup: { protection: m === 'password' && store === 'realms' ? 'realms' : m, key: toHex(key.expose()), lastSeq: r.seq, lastAt: r.createdAt, lastBytes: r.bytes, lastFiles: r.files },
      };
      saveState(state);
      restoring = null;
      // The chats stay as they are (the database read once); the screen now says it is all here.
      render('chats');
    } catch (e) {
      const shown = app.dataset['screen'] === 'chats';
      restoring = null;
      forgetChat();
      preparedReader?.close();
      preparedReader = null;
      progress.fail();
      const message = e instanceof WrongKeyError ? 'This recovery key does not open the backup of this account. Check each group of four digits.' : `The restore failed: ${(e as Error).message}`;
      if (shown) {
        render('restore');
        document.getElementById('restore-error')!.textContent = `${message} Nothing of it was kept on this device.`;
      } else {
        error.textContent = message;
        submit.disabled = false;
      }
    }
  }
}

// ---- start --------------------------------------------------------------------------------

[config, account] = await Promise.all([fetch('/config.json', { cache: 'no-store' }).then((r) => r.json() as Promise<Config>), currentAccount()]);
render(!account ? 'welcome' : loadState() ? 'chats' : 'setup');
