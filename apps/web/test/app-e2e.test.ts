/**
 * Coffer Messenger end to end in headless Chromium, each browser context a device with a virtual
 * passkey authenticator (CDP WebAuthn): sign up with a passkey, turn on backup (password, recovery
 * key), back up, sign in on a new device (with a one-time code from the dev inbox, or with a synced
 * passkey), restore and compare the thread message for message and photo for photo, with the
 * pictures shown and the voice notes playing; wrong passwords count down to the lockout; a key
 * stretching other than the one recorded at registration is refused before any guess. Screenshots
 * go to test-artifacts/web/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import Database from 'better-sqlite3';
import type { Browser, Page, Route } from 'playwright-core';
import { parseRecoveryKey, Repository, webCryptoProvider } from '@coffer/core';
import {
  ARTIFACTS, launchChromium, newDevice as device, recordRequestBodies, signInWithCode, signInWithPasskey, signUp, startTestApp, storeOf, syncPasskeys, type Device, type SentBody,
} from './helpers.js';

let app: Awaited<ReturnType<typeof startTestApp>>;
let browser: Browser;
const shotsDir = join(ARTIFACTS, 'web');

before(async () => {
  await mkdir(shotsDir, { recursive: true });
  [app, browser] = await Promise.all([startTestApp({ vaultArgs: ['--account-rate', '600/100'], sampleBytes: 3 * 2 ** 20 }), launchChromium()]);
});
after(async () => {
  await browser?.close();
  await app?.dispose();
});

const newDevice = (): Promise<Device> => device(browser, app.url, { failOnPageError: (m) => assert.fail(`page error: ${m}`) });
const shot = (page: Page, name: string) => page.screenshot({ path: join(shotsDir, `${name}.png`), fullPage: true });

/** Signs up (a new passkey on this device) and shows this phone's chats. */
async function usePhone(page: Page, account: string, shotName?: string): Promise<void> {
  await signUp(page, account);
  if (shotName) await shot(page, shotName);
  await page.getByRole('button', { name: "Use this phone's chats" }).click();
  await page.locator('main[data-ready=true]').waitFor();
}

interface Thread {
  title: string;
  messages: { sender: string; body: string; time: string; attachments: { kind: string; path: string; size: string; sha256: string }[] }[];
}

/** The open thread as data; every attachment's bytes hashed from the URL the page shows it with (unless `media` is false). */
function readThread(page: Page, media = true): Promise<Thread> {
  return page.evaluate(async (media) => {
    const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
    const messages = [];
    for (const li of document.querySelectorAll<HTMLElement>('ol.messages > li')) {
      const attachments = [];
      for (const f of media ? li.querySelectorAll<HTMLElement>('figure') : []) {
        const src = f.querySelector('a')?.getAttribute('href') ?? f.querySelector('audio')?.getAttribute('src') ?? '';
        const bytes = await (await fetch(src)).arrayBuffer();
        attachments.push({ kind: f.className, path: f.dataset['path']!, size: f.dataset['size']!, sha256: hex(await crypto.subtle.digest('SHA-256', bytes)) });
      }
      messages.push({
        sender: li.querySelector('.sender')?.textContent ?? '',
        body: li.querySelector('.body')?.textContent ?? '',
        time: li.querySelector('time')?.getAttribute('datetime') ?? '',
        attachments,
      });
    }
    return { title: document.querySelector('#thread-title')?.textContent ?? '', messages };
  }, media);
}

/** A restore's end: every byte verified, the chats shown as this device's own. */
const restored = (page: Page) => page.locator('main[data-ready=true] #restored').waitFor({ timeout: 60_000 });

/** Where a blob lies: a pack and a byte range of it. */
interface BlobPlace {
  name: string;
  start: number;
  end: number;
}

/**
 * Where the newest backup of `account` keeps the blobs of its message database, found as a client
 * of the store with the recovery key (the test's own, through the app server with `page`'s session).
 */
async function databasePlaces(page: Page, account: string, recoveryKey: string): Promise<BlobPlace[]> {
  const repo = await Repository.open(await storeOf(page.context(), app.url, account), webCryptoProvider, parseRecoveryKey(recoveryKey));
  const manifest = await repo.readManifest((await repo.manifests()).at(-1)!);
  const index = await repo.loadIndex();
  const db = manifest.entries.find((e) => e.path === 'messages.db')!;
  const chunk = repo.config.chunkSize;
  return db.chunks!.map((id, i) => {
    const loc = repo.locate(index, id, Math.min(chunk, db.size! - i * chunk));
    return { name: loc.name, start: loc.offset, end: loc.offset + loc.sealedLength };
  });
}

/**
 * Holds the page's reads of packs (the store's data) but those of the message database (`pass`),
 * until they are released all at once or failed: what a slow network does to the media of a
 * restore, made exact. A read that takes a piece of the database passes, whatever else it takes.
 */
async function holdMediaReads(page: Page, pass: BlobPlace[]): Promise<{ held: Route[]; passed: () => number; releaseAll(): Promise<void>; failAll(): Promise<void>; stop(): Promise<void> }> {
  const held: Route[] = [];
  let passed = 0;
  let then: 'hold' | 'pass' | 'fail' = 'hold';
  const packs = /\/store\/[^?]*\/packs\//;
  const handler = (route: Route) => {
    const req = route.request();
    if (req.method() !== 'GET' || then === 'pass') return route.fallback();
    if (then === 'fail') return route.abort('connectionreset');
    const name = decodeURIComponent(new URL(req.url()).pathname).replace(/^\/store\/[^/]+\//, '');
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers()['range'] ?? '');
    const [start, end] = range ? [Number(range[1]), Number(range[2]) + 1] : [0, Infinity];
    if (pass.some((p) => p.name === name && p.start < end && start < p.end)) {
      passed++;
      return route.fallback();
    }
    held.push(route);
  };
  await page.route(packs, handler);
  return {
    held,
    passed: () => passed,
    async releaseAll() {
      then = 'pass';
      for (const r of held.splice(0)) await r.fallback();
    },
    /** The network fails from now on: every read held, and every later one. */
    async failAll() {
      then = 'fail';
      for (const r of held.splice(0)) await r.abort('connectionreset');
    },
    stop: () => page.unroute(packs, handler),
  };
}

/**
 * Messages first, for real: the chats screen of a restore under way shows (and reads the database)
 * while every read of the media is held, and the restore then still waits for them.
 */
async function chatsShowWhileMediaHeld(page: Page, gate: Awaited<ReturnType<typeof holdMediaReads>>): Promise<void> {
  await page.locator('main[data-ready=true] #restoring').or(page.locator('main p.error')).or(page.locator('#restored')).waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('main p.error').count(), 0, `the chats did not open: ${await page.locator('main p.error').first().textContent().catch(() => '')}`);
  assert.equal(await page.locator('#restored').count(), 0, 'the restore finished before the chats were shown');
  assert.ok(gate.passed() > 0, 'the database was read');
  // The page holds its own next reads back for a moment while the first chat shows: they come a little later.
  for (const deadline = Date.now() + 10_000; gate.held.length === 0; await page.waitForTimeout(50)) {
    assert.ok(Date.now() < deadline, 'the restore had no media left to read when the chats showed');
  }
  assert.equal(await page.locator('#restored').count(), 0);
}

/** Names of this origin's restored trees in OPFS. */
const restoredTrees = (page: Page) =>
  page.evaluate(async () => {
    const out: string[] = [];
    for await (const [name] of (await navigator.storage.getDirectory() as unknown as { entries(): AsyncIterable<[string, unknown]> }).entries()) if (name.startsWith('restored-')) out.push(name);
    return out;
  });

/** path -> SHA-256 of every file of this device's restored tree (OPFS). */
function restoredFiles(page: Page): Promise<Record<string, string>> {
  return page.evaluate(async () => {
    const key = Object.keys(localStorage).find((k) => k.startsWith('coffer.device:'))!;
    const dirName = (JSON.parse(localStorage.getItem(key)!) as { restoredDir: string }).restoredDir;
    const out: Record<string, string> = {};
    const walk = async (d: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const [name, h] of (d as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        const path = prefix ? `${prefix}/${name}` : name;
        if (h.kind === 'directory') await walk(h as FileSystemDirectoryHandle, path);
        else {
          const digest = await crypto.subtle.digest('SHA-256', await (await (h as FileSystemFileHandle).getFile()).arrayBuffer());
          out[path] = Array.from(new Uint8Array(digest), (x) => x.toString(16).padStart(2, '0')).join('');
        }
      }
    };
    await walk(await (await navigator.storage.getDirectory()).getDirectoryHandle(dirName), '');
    return out;
  });
}

async function phoneFiles(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(app.phoneDir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out[relative(app.phoneDir, p).split(sep).join('/')] = createHash('sha256').update(await readFile(p)).digest('hex');
  }
  return out;
}

/**
 * Byte strings only a chat holds: SQLite's file header, the ten longest message texts, and 32
 * bytes from the middle of every file of the phone (the database's pages, the photos, the notes;
 * files under 64 bytes have nothing to tell).
 */
async function plaintextMarkers(): Promise<{ what: string; bytes: Buffer }[]> {
  const out = [{ what: 'the SQLite header', bytes: Buffer.from('SQLite format 3\0', 'latin1') }];
  const db = new Database(join(app.phoneDir, 'messages.db'), { readonly: true });
  try {
    const bodies = db.prepare('SELECT body FROM messages WHERE length(body) >= 24 ORDER BY length(body) DESC LIMIT 10').pluck().all() as string[];
    assert.equal(bodies.length, 10);
    for (const b of bodies) out.push({ what: `the message ${JSON.stringify(b.slice(0, 40))}`, bytes: Buffer.from(b, 'utf8') });
  } finally {
    db.close();
  }
  for (const e of await readdir(app.phoneDir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const bytes = await readFile(join(e.parentPath, e.name));
    if (bytes.length < 64) continue;
    const mid = Math.floor(bytes.length / 2);
    out.push({ what: `32 bytes of ${relative(app.phoneDir, join(e.parentPath, e.name))}`, bytes: bytes.subarray(mid, mid + 32) });
  }
  return out;
}

/** No request body (and no URL) a device sent holds any of `markers`. */
function assertNoPlaintextSent(sent: SentBody[], markers: { what: string; bytes: Buffer }[], device: string): void {
  assert.ok(sent.length > 0, `${device}: no requests recorded`);
  for (const r of sent) {
    for (const m of markers) {
      assert.equal(r.body.indexOf(m.bytes), -1, `${device} sent ${m.what} in the body of ${r.method} ${r.url}`);
      assert.ok(!Buffer.from(decodeURIComponent(r.url), 'utf8').includes(m.bytes), `${device} sent ${m.what} in the URL ${r.url}`);
    }
  }
}

/** Every object in `account`'s store arrived as the body of a PUT that `sent` holds: nothing uploaded went unscanned. */
async function assertStoreWasScanned(sent: SentBody[], account: string): Promise<number> {
  const dir = join(app.cloudDir, account);
  const puts = (path: string) => sent.filter((r) => r.method === 'PUT' && decodeURIComponent(new URL(r.url).pathname) === path).map((r) => r.body);
  let n = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || e.name.startsWith('.tmp-')) continue;
    const name = relative(dir, join(e.parentPath, e.name)).split(sep).join('/');
    const bodies = puts(`/store/${account}/${name}`);
    assert.ok(bodies.length > 0, `the store holds ${name}, which no recorded PUT sent`);
    const held = await readFile(join(e.parentPath, e.name));
    assert.ok(bodies.some((b) => b.equals(held)), `${name}: no recorded body is what the store holds (${bodies.map((b) => b.length)} against ${held.length} bytes)`);
    n++;
  }
  return n;
}

async function openConversation(page: Page, title: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: title }).click();
  // The thread built for this click (not one shown before it): the page marks a thread busy while it builds one.
  await page.waitForFunction((t) => {
    const thread = document.querySelector('section.thread');
    return thread !== null && !thread.hasAttribute('aria-busy') && thread.querySelector('#thread-title')?.textContent === t;
  }, title);
}

const conversationTitles = (page: Page) => page.locator('nav[aria-label=Conversations] .title').allTextContents();

/** The first conversation whose visible thread has attachments of `kind` (the sample has photos in most). */
async function conversationWith(page: Page, kind: 'photo' | 'voice'): Promise<string> {
  for (const t of await conversationTitles(page)) {
    await openConversation(page, t);
    if ((await page.locator(`ol.messages figure.${kind}`).count()) > 0) return t;
  }
  throw new Error(`no conversation with a ${kind} in the sample`);
}

/**
 * The open thread's pictures as decoded (width, height) and its voice notes as played: each starts
 * (muted), plays past its first 0.2 s and reports its duration.
 */
function shownMedia(page: Page): Promise<{ pictures: [number, number][]; voices: { duration: number; played: number; expected: number }[] }> {
  return page.evaluate(async () => {
    const imgs = [...document.querySelectorAll<HTMLImageElement>('ol.messages figure.photo img')];
    await Promise.all(imgs.map((i) => i.decode().catch(() => undefined)));
    const voices = [];
    for (const a of document.querySelectorAll<HTMLAudioElement>('ol.messages figure.voice audio')) {
      a.muted = true;
      await a.play();
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`a voice note did not play: ${JSON.stringify({ src: a.src.slice(0, 40), rs: a.readyState, ns: a.networkState, err: a.error?.code, msg: a.error?.message, conn: a.isConnected, t: a.currentTime, paused: a.paused, d: a.duration })}`)), 5000);
        a.addEventListener('timeupdate', () => a.currentTime > 0.2 && (clearTimeout(t), resolve()));
      });
      a.pause();
      voices.push({ duration: a.duration, played: a.currentTime, expected: Number(/(\d+) seconds/.exec(a.getAttribute('aria-label') ?? '')?.[1]) });
    }
    return { pictures: imgs.map((i) => [i.naturalWidth, i.naturalHeight] as [number, number]), voices };
  });
}

function assertMediaShown(m: Awaited<ReturnType<typeof shownMedia>>, where: string): void {
  assert.ok(m.pictures.length > 0 || m.voices.length > 0, `${where}: no media in the thread`);
  for (const [w, h] of m.pictures) assert.ok(w >= 240 && h >= 240, `${where}: a picture decoded to ${w}x${h}`);
  for (const v of m.voices) assert.ok(Math.abs(v.duration - v.expected) <= 1 && v.played > 0.2, `${where}: voice note ${JSON.stringify(v)}`);
}

async function turnOnWithPassword(page: Page, password: string): Promise<void> {
  await page.getByRole('button', { name: 'Backups' }).click();
  await page.getByLabel('Password (at least 8 characters)').fill(password);
  await page.getByLabel('Password again').fill(password);
  await page.getByRole('button', { name: 'Turn on encrypted backup' }).click();
  await page.getByText('Encrypted backup is on.').waitFor();
}

async function backUpNow(page: Page, seq = 1): Promise<void> {
  // Record every progress line the page shows while it backs up.
  await page.evaluate(() => {
    const seen: string[] = ((window as unknown as { __progress: string[] }).__progress = []);
    new MutationObserver(() => {
      const t = document.querySelector('.progress-text')?.textContent;
      if (t && seen[seen.length - 1] !== t) seen.push(t);
    }).observe(document.querySelector('main')!, { subtree: true, childList: true, characterData: true });
  });
  await page.getByRole('button', { name: 'Back up now' }).click();
  await page.getByText(`Backup #${seq} done`).waitFor({ timeout: 60_000 });
  const lines = await page.evaluate(() => (window as unknown as { __progress: string[] }).__progress);
  assert.ok(
    lines.some((l) => /^[\d.]+ (B|KiB|MiB) of [\d.]+ MiB · [\d.]+ (B|KiB|MiB)\/s · (.+ left|finishing) · \d+ of \d+ files$/.test(l)),
    `progress shows bytes, rate and time left: ${JSON.stringify(lines)}`,
  );
  assert.equal(await page.getByRole('progressbar', { name: 'Backup progress' }).getAttribute('value'), await page.getByRole('progressbar', { name: 'Backup progress' }).getAttribute('max'));
  assert.notEqual(await page.locator('#last-backup').textContent(), 'Never');
  assert.match((await page.locator('#last-size').textContent()) ?? '', /MiB in \d+ files/);
}

async function startRestore(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Restore on a new device' }).click();
  await page.getByRole('heading', { name: 'Restore on a new device' }).waitFor();
}

async function tryPassword(page: Page, password: string): Promise<string> {
  const alert = page.locator('#restore-error');
  const before = await alert.textContent();
  await page.getByLabel('Backup password').fill(password);
  await page.getByRole('button', { name: 'Restore' }).click();
  // Wait until the page answered this attempt (the alert changes, or the restore finishes).
  await page.waitForFunction((b) => {
    const el = document.querySelector('#restore-error');
    return (el && el.textContent !== b && el.textContent !== '') || document.querySelector('main[data-ready=true]') !== null || document.querySelector('main p.error')?.textContent;
  }, before, { timeout: 30_000 });
  const failed = await page.evaluate(() => document.querySelector('main p.error')?.textContent ?? null);
  if (failed) throw new Error(`the restored chats did not open: ${failed}`);
  return (await alert.count()) ? ((await alert.textContent()) ?? '') : '';
}

test('password: sign up with a passkey, back up; a new device signs in with a one-time code, adds a passkey, and restores the thread exactly, pictures shown and voice notes playing', async () => {
  const { page: phone, context: phoneCtx } = await newDevice();
  const phoneSent = await recordRequestBodies(phoneCtx);
  await shot(phone, '01-welcome');
  await usePhone(phone, 'maria@example', '01b-signed-up');
  const titles = await conversationTitles(phone);
  const original = new Map<string, Thread>();
  for (const t of titles) {
    await openConversation(phone, t);
    original.set(t, await readThread(phone));
  }
  const voiceTitle = await conversationWith(phone, 'voice');
  assertMediaShown(await shownMedia(phone), 'phone');
  const title = await conversationWith(phone, 'photo');
  assert.ok(original.get(title)!.messages.length > 10);
  const phoneMedia = await shownMedia(phone);
  assert.ok(phoneMedia.pictures.length > 0);
  assertMediaShown(phoneMedia, 'phone');
  await phone.locator('ol.messages figure.photo').last().scrollIntoViewIfNeeded();
  await shot(phone, '02-chats');
  await phone.getByRole('button', { name: 'Backups' }).click();
  await shot(phone, '03-backups-off');
  await turnOnWithPassword(phone, 'correct horse battery staple');
  await shot(phone, '04-backup-on');
  await backUpNow(phone);
  await shot(phone, '05-backup-done');

  const { page: fresh, context: freshCtx } = await newDevice();
  const freshSent = await recordRequestBodies(freshCtx);
  await signInWithCode(fresh, app.url, 'maria@example', { form: join(shotsDir, '06a-code-sign-in.png'), inbox: join(shotsDir, '06b-dev-inbox.png') });
  await fresh.getByRole('button', { name: 'Add a passkey on this device' }).click();
  await fresh.getByText('Passkey added').waitFor();
  await shot(fresh, '06c-new-device-passkey-added');
  await startRestore(fresh);
  await shot(fresh, '06-restore');
  assert.match(await tryPassword(fresh, 'not my password'), /Wrong password\. 9 guesses remain/);
  await shot(fresh, '07-wrong-password');
  assert.match(await tryPassword(fresh, 'still not it'), /8 guesses remain/);
  await tryPassword(fresh, 'correct horse battery staple');
  await restored(fresh);
  await fresh.getByText(/Restored backup #1 from .*every byte verified/).waitFor();
  assert.deepEqual(await conversationTitles(fresh), titles);
  for (const t of titles) {
    await openConversation(fresh, t);
    const restored = await readThread(fresh);
    assert.equal(restored.messages.length, original.get(t)!.messages.length, `${t}: message count`);
    assert.deepEqual(restored, original.get(t), `${t}: messages and attachments`);
  }
  await openConversation(fresh, voiceTitle);
  assertMediaShown(await shownMedia(fresh), 'restored device');
  await openConversation(fresh, title);
  const restoredMedia = await shownMedia(fresh);
  assert.deepEqual(restoredMedia.pictures, phoneMedia.pictures, 'the restored pictures are the phone\'s');
  await fresh.locator('ol.messages figure.photo').last().scrollIntoViewIfNeeded();
  await shot(fresh, '08-restored-chats');
  // Below the thread view: every restored file in the new device's storage equals the phone's, byte for byte.
  assert.deepEqual(await restoredFiles(fresh), await phoneFiles());

  // End to end means end to end: no request either device sent, during and after the backup and
  // the restore, carried a message, a picture, a voice note or the database (spec/web-app.md §7).
  const markers = await plaintextMarkers();
  assert.ok((await assertStoreWasScanned(phoneSent, 'maria@example')) > 3, 'the backup\'s uploads were recorded');
  assertNoPlaintextSent(phoneSent, markers, 'the phone');
  assertNoPlaintextSent(freshSent, markers, 'the new device');
  // The check can fail: a body that carries the database is caught.
  const leak = [...freshSent];
  await fresh.evaluate(async () => {
    const db = await (await fetch('/api/phone/file/messages.db')).blob();
    await fetch('/api/no-such-path', { method: 'POST', body: db });
  });
  await fresh.waitForTimeout(100);
  assert.throws(() => assertNoPlaintextSent(freshSent.slice(leak.length), markers, 'the new device'), /sent the SQLite header in the body of POST/);

  // The passkey added on the new device signs it in by itself after signing out.
  await fresh.getByRole('button', { name: 'Sign out and clear this device' }).click();
  await fresh.getByRole('heading', { name: 'Welcome to Coffer Messenger' }).waitFor();
  await signInWithPasskey(fresh, 'maria@example');
  await fresh.getByRole('heading', { name: 'Welcome, maria@example' }).waitFor();
  await shot(fresh, '08b-signed-in-with-passkey');
  await freshCtx.close();
  await phoneCtx.close();
});

test('recovery key: shown once, copied, confirmed; a wrong key is refused; a synced passkey signs in on the new device, and the right key restores', async () => {
  const phoneDevice = await newDevice();
  const phone = phoneDevice.page;
  await phone.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  await usePhone(phone, 'sam@example');
  const title = await conversationWith(phone, 'photo');
  const original = await readThread(phone);
  await phone.getByRole('button', { name: 'Backups' }).click();
  await phone.getByLabel('A 64-digit recovery key').check();
  await phone.getByRole('button', { name: 'Create recovery key' }).click();
  const key = (await phone.locator('#recovery-key').textContent())!;
  assert.match(key, /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
  await phone.getByRole('button', { name: 'Copy recovery key' }).click();
  await phone.getByText('Copied.').waitFor();
  assert.equal(await phone.evaluate(() => navigator.clipboard.readText()), key);
  await shot(phone, '09-recovery-key-shown');
  // The confirmation step refuses a key that is not the one shown.
  await phone.getByLabel('To confirm you saved it, type the recovery key again').fill(key.replace(/^./, key[0] === 'A' ? 'B' : 'A'));
  await phone.getByRole('button', { name: 'Turn on encrypted backup' }).click();
  await phone.getByText('That is not the recovery key shown above').waitFor();
  await phone.getByLabel('To confirm you saved it, type the recovery key again').fill(key.toLowerCase().replace(/ /g, '-'));
  await phone.getByRole('button', { name: 'Turn on encrypted backup' }).click();
  await phone.getByText('Encrypted backup is on.').waitFor();
  assert.equal(await phone.locator('#recovery-key').count(), 0, 'the key is not shown again');
  await backUpNow(phone);

  // A new device whose password manager has the passkey (synced): it signs in without a code.
  const freshDevice = await newDevice();
  const fresh = freshDevice.page;
  await fresh.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await fresh.getByText('this passkey does not open an account here').or(fresh.getByText('Signing in was cancelled')).waitFor();
  await syncPasskeys(phoneDevice, freshDevice);
  await signInWithPasskey(fresh, 'sam@example');
  await startRestore(fresh);
  await fresh.getByLabel('My 64-digit recovery key').check();
  const keyField = fresh.getByLabel('Recovery key (64 digits; spaces and dashes are ignored)');
  await keyField.fill(key.slice(0, -1));
  await fresh.getByRole('button', { name: 'Restore' }).click();
  await fresh.getByText('a recovery key has 64 digits; 63 were given').waitFor();
  const wrong = key.split('').reverse().join('').trim();
  await keyField.fill(wrong === key ? key.replace(/^./, 'F') : wrong);
  await fresh.getByRole('button', { name: 'Restore' }).click();
  await fresh.getByText('This recovery key does not open the backup of this account').waitFor();
  await keyField.fill(key);
  // A restore whose network fails after the chats showed: nothing of it stays, the device is not restored.
  const database = await databasePlaces(fresh, 'sam@example', key);
  const failing = await holdMediaReads(fresh, database);
  await fresh.getByRole('button', { name: 'Restore' }).click();
  await chatsShowWhileMediaHeld(fresh, failing);
  await failing.failAll();
  await fresh.locator('#restore-error', { hasText: /The restore failed: .*Nothing of it was kept on this device\./ }).waitFor();
  assert.equal(await fresh.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('coffer.device:')).length), 0, 'a failed restore left device state');
  assert.deepEqual(await restoredTrees(fresh), [], 'a failed restore left files');
  await failing.stop();
  // Signing out while a restore is under way stops it, and it keeps nothing either.
  const leaving = await holdMediaReads(fresh, database);
  await fresh.getByLabel('My 64-digit recovery key').check();
  await keyField.fill(key);
  await fresh.getByRole('button', { name: 'Restore' }).click();
  await chatsShowWhileMediaHeld(fresh, leaving);
  await fresh.getByRole('button', { name: 'Sign out and clear this device' }).click();
  await fresh.getByRole('heading', { name: 'Welcome to Coffer Messenger' }).waitFor();
  await leaving.releaseAll();
  for (const deadline = Date.now() + 10_000; (await restoredTrees(fresh)).length > 0; await fresh.waitForTimeout(100)) {
    assert.ok(Date.now() < deadline, 'a restore stopped by signing out left files');
  }
  assert.equal(await fresh.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('coffer.device:')).length), 0, 'a stopped restore left device state');
  await fresh.getByRole('heading', { name: 'Welcome to Coffer Messenger' }).waitFor();
  await leaving.stop();
  await signInWithPasskey(fresh, 'sam@example');
  await startRestore(fresh);
  // Messages first: the chats open while every read of the media is held.
  const gate = await holdMediaReads(fresh, database);
  await fresh.getByLabel('My 64-digit recovery key').check();
  await keyField.fill(key);
  await fresh.getByRole('button', { name: 'Restore' }).click();
  await chatsShowWhileMediaHeld(fresh, gate);
  await openConversation(fresh, title);
  assert.ok((await fresh.locator('ol.messages figure.pending').count()) > 0, 'no medium was still missing');
  assert.equal(await fresh.locator('ol.messages figure.photo:not(.pending) img').count(), 0, 'a picture was shown before it was restored');
  assert.deepEqual(await readThread(fresh, false), { ...original, messages: original.messages.map((m) => ({ ...m, attachments: [] })) }, 'the messages are all there while the media arrive');
  assert.match((await fresh.locator('#restoring').textContent()) ?? '', /Your chats are back\. Photos and voice notes appear as they are restored and verified\./);
  await shot(fresh, '10a-chats-first-media-arriving');
  await gate.releaseAll();
  await restored(fresh);
  await openConversation(fresh, title);
  assert.equal(await fresh.locator('ol.messages figure.pending').count(), 0);
  assertMediaShown(await shownMedia(fresh), 'restored with the recovery key');
  await shot(fresh, '10-restored-with-recovery-key');
  assert.deepEqual(await readThread(fresh), original);
  // The new device keeps backing up to the same store: nothing new to upload.
  await fresh.getByRole('button', { name: 'Backups' }).click();
  await backUpNow(fresh, 2);
  assert.match((await fresh.locator('.progress-text').textContent()) ?? '', /Backup #2 done: .* 0 B new/);
  await freshDevice.context.close();
  await phoneDevice.context.close();
});

test('lockout: wrong passwords count down, the last attempt is announced, then the key is gone for good', async () => {
  const { page: phone, context: phoneCtx } = await newDevice();
  await usePhone(phone, 'ana@example');
  await turnOnWithPassword(phone, 'the right password');
  await phoneCtx.close();

  const { page: fresh, context: freshCtx } = await newDevice();
  await signInWithCode(fresh, app.url, 'ana@example');
  await startRestore(fresh);
  for (let remaining = 9; remaining >= 2; remaining--) {
    assert.match(await tryPassword(fresh, `wrong guess ${remaining}`), new RegExp(`Wrong password\\. ${remaining} guesses remain`));
    assert.equal(await fresh.locator('#restore-warning').isVisible(), false, 'no last-attempt warning yet');
  }
  assert.match(await tryPassword(fresh, 'wrong guess 1'), /Wrong password\. 1 guess remains/);
  assert.match((await fresh.locator('#restore-warning').textContent()) ?? '', /Last attempt: one more wrong password and the backup key is destroyed for good/);
  assert.ok(await fresh.locator('#restore-warning').isVisible());
  await shot(fresh, '11-last-attempt');
  assert.match(await tryPassword(fresh, 'wrong guess 0'), /The backup key is gone for good/);
  assert.equal(await fresh.locator('#restore-warning').isVisible(), false);
  await shot(fresh, '12-key-gone');
  // Even the right password cannot bring it back.
  await fresh.reload();
  await startRestore(fresh);
  assert.match(await tryPassword(fresh, 'the right password'), /The backup key is gone for good/);
  await freshCtx.close();
});

test('key stretching: a recovery with another preset than the one recorded at registration stops before spending a guess', async () => {
  const { page: phone, context: phoneCtx } = await newDevice();
  await usePhone(phone, 'lena@example');
  await turnOnWithPassword(phone, 'lena password 1');
  await phoneCtx.close();
  // This (test) build registered with its own preset, and the server recorded it.
  const db = new Database(join(app.dataDir, 'accounts.sqlite'));
  try {
    const recorded = () => db.prepare('SELECT key_stretching FROM accounts WHERE id = ?').pluck().get('lena@example');
    assert.equal(recorded(), 'insecure-test-only-fast');
    // As if a production build had registered: this test build must not try its weaker preset.
    db.prepare('UPDATE accounts SET key_stretching = ? WHERE id = ?').run('memory-constrained', 'lena@example');
    const { page: fresh, context: freshCtx } = await newDevice();
    await signInWithCode(fresh, app.url, 'lena@example');
    await startRestore(fresh);
    assert.match(await tryPassword(fresh, 'lena password 1'), /registered by an app that stretches passwords with "memory-constrained"; this app uses "insecure-test-only-fast"\. No guess was spent/);
    await shot(fresh, '13-preset-mismatch');
    // No guess was spent: with the record back, a wrong password is the first one counted.
    db.prepare('UPDATE accounts SET key_stretching = ? WHERE id = ?').run('insecure-test-only-fast', 'lena@example');
    assert.match(await tryPassword(fresh, 'not lena password'), /Wrong password\. 9 guesses remain/);
    await freshCtx.close();
  } finally {
    db.close();
  }
});

test('three realms: the password spread over three independent realms (Juicebox over Noise); all three are needed, and a wrong password counts; the new device restores with it', async () => {
  const password = 'rae spreads her key thrice';
  const { page: phone, context: phoneCtx } = await newDevice();
  const phoneSent = await recordRequestBodies(phoneCtx);
  await usePhone(phone, 'rae@example');
  const title = await conversationWith(phone, 'photo');
  const original = await readThread(phone);
  await phone.getByRole('button', { name: 'Backups' }).click();
  await phone.getByLabel('A password, spread over 3 independent realms').check();
  assert.match((await phone.locator('main .part').first().textContent()) ?? '', /split over 3 independent realms/);
  await phone.getByLabel('Password (at least 8 characters)').fill(password);
  await phone.getByLabel('Password again').fill(password);
  await phone.getByRole('button', { name: 'Turn on encrypted backup' }).click();
  await phone.getByText('Encrypted backup is on.').waitFor();
  assert.match((await phone.locator('dl.status').textContent()) ?? '', /your password \(3 independent realms, all 3 needed\)/);
  await shot(phone, '14-realms-on');
  await backUpNow(phone);
  const backupKey = Buffer.from(await phone.evaluate(() => (JSON.parse(localStorage.getItem('coffer.device:rae@example')!) as { backup: { key: string } }).backup.key), 'hex');
  assert.equal(backupKey.length, 32);
  // Registered at the three realms (through this server's /realms/<n>/req), not at the vault.
  const paths = (sent: SentBody[]) => new Set(sent.map((r) => new URL(r.url).pathname).filter((p) => p.startsWith('/realms/') || p === '/v1/vault'));
  assert.deepEqual(paths(phoneSent), new Set(['/realms/1/req', '/realms/2/req', '/realms/3/req']));
  const db = new Database(join(app.dataDir, 'accounts.sqlite'), { readonly: true });
  try {
    assert.equal(db.prepare('SELECT key_stretching FROM accounts WHERE id = ?').pluck().get('rae@example'), 'juicebox:FastInsecure');
  } finally {
    db.close();
  }
  await phoneCtx.close();

  const { page: fresh, context: freshCtx } = await newDevice();
  const freshSent = await recordRequestBodies(freshCtx);
  await signInWithCode(fresh, app.url, 'rae@example');
  await startRestore(fresh);
  // 3-of-3: with one realm out of reach the recovery stops before any guess is counted.
  await fresh.route('**/realms/2/req', (r) => r.abort('connectionrefused'));
  assert.match(await tryPassword(fresh, password), /Could not unlock the backup: realm [0-9a-f]{32} at .*\/realms\/2\/ is unreachable/);
  await fresh.unroute('**/realms/2/req');
  assert.match(await tryPassword(fresh, 'not rae password'), /Wrong password\. 9 guesses remain before the realms erase their shares of the backup key/);
  await shot(fresh, '15-realms-wrong-password');
  await tryPassword(fresh, password);
  await restored(fresh);
  await openConversation(fresh, title);
  assert.deepEqual(await readThread(fresh), original);
  assert.deepEqual(paths(freshSent), new Set(['/realms/1/req', '/realms/2/req', '/realms/3/req']));
  // Neither the password nor the backup key ever leaves the page.
  for (const r of [...phoneSent, ...freshSent]) {
    assert.equal(r.body.indexOf(Buffer.from(password, 'utf8')), -1, `the password in the body of ${r.method} ${r.url}`);
    assert.equal(r.body.indexOf(backupKey), -1, `the backup key in the body of ${r.method} ${r.url}`);
  }
  await fresh.getByRole('button', { name: 'Backups' }).click();
  assert.match((await fresh.locator('dl.status').textContent()) ?? '', /3 independent realms/);
  await freshCtx.close();
});

test('keyboard: every control on each screen is reachable with Tab and has an accessible name', async () => {
  const { page, context } = await newDevice();
  const audit = () =>
    page.evaluate(() => {
      const controls = [...document.querySelectorAll<HTMLElement>('button, input, textarea, select, a[href], audio[controls], output[tabindex]')].filter(
        (el) => !el.closest('[hidden]') && el.getClientRects().length > 0 && !(el as HTMLButtonElement).disabled &&
          // A radio group is one Tab stop (arrow keys move within it).
          !(el instanceof HTMLInputElement && el.type === 'radio' && !el.checked),
      );
      const unnamed = controls.filter((el) => {
        const id = el.id;
        const label = (id && document.querySelector(`label[for="${id}"]`)?.textContent) || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' || el.tagName === 'A' ? el.textContent : '');
        return !label?.trim();
      });
      return { count: controls.length, unnamed: unnamed.map((el) => el.outerHTML.slice(0, 80)), ids: controls.map((el, i) => (el.dataset['kb'] = String(i))) };
    });
  const tabThrough = async (n: number) => {
    const seen = new Set<string>();
    // An audio element with its metadata loaded takes several stops (play, timeline, volume, menu).
    for (let i = 0; i < n * 4 && seen.size < n; i++) {
      await page.keyboard.press('Tab');
      const kb = await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset['kb'] ?? null);
      if (kb !== null) seen.add(kb);
    }
    return seen.size;
  };
  for (const screen of ['welcome', 'code', 'setup', 'chats', 'backups', 'restore']) {
    if (screen === 'code') await page.getByRole('button', { name: 'Sign in with a one-time code' }).click();
    if (screen === 'setup') {
      await page.getByRole('button', { name: 'Back' }).click();
      await signUp(page, 'keyboard@example');
    }
    if (screen === 'chats') {
      await page.getByRole('button', { name: "Use this phone's chats" }).click();
      await page.locator('main[data-ready=true]').waitFor();
    }
    if (screen === 'backups') await page.getByRole('button', { name: 'Backups' }).click();
    if (screen === 'restore') {
      await page.getByRole('button', { name: 'Sign out and clear this device' }).click();
      await signInWithPasskey(page, 'keyboard@example');
      await page.getByRole('button', { name: 'Restore on a new device' }).click();
    }
    assert.equal(await page.locator('#app').getAttribute('data-screen'), screen);
    const a = await audit();
    assert.deepEqual(a.unnamed, [], `unnamed controls on ${screen}`);
    // The chats screen has many messages: the first 40 controls are enough to show the order works.
    const n = Math.min(a.count, 40);
    assert.ok((await tabThrough(n)) >= n, `only some controls on ${screen} are reachable by Tab`);
  }
  await context.close();
});
