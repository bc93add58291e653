/**
 * Coffer Messenger end to end in headless Chromium: turn on backup (password, recovery key), back
 * up, restore in a fresh browser context (a new device) and compare the thread message for message
 * and photo for photo; wrong passwords count down to the lockout. Screenshots go to test-artifacts/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ARTIFACTS, launchChromium, startTestApp } from './helpers.js';

let app: Awaited<ReturnType<typeof startTestApp>>;
let browser: Browser;
const shotsDir = join(ARTIFACTS, 'web');

before(async () => {
  await mkdir(shotsDir, { recursive: true });
  [app, browser] = await Promise.all([startTestApp({ vaultArgs: ['--account-rate', '600/100'] }), launchChromium()]);
});
after(async () => {
  await browser?.close();
  await app?.dispose();
});

async function newDevice(): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 850 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => assert.fail(`page error: ${e.message}`));
  await page.goto(app.url + '/');
  return page;
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(shotsDir, `${name}.png`), fullPage: true });

async function usePhone(page: Page, account: string): Promise<void> {
  await page.getByLabel('Account').fill(account);
  await page.getByRole('button', { name: "Use this phone's chats" }).click();
  await page.locator('main[data-ready=true]').waitFor();
}

interface Thread {
  title: string;
  messages: { sender: string; body: string; time: string; attachments: { kind: string; path: string; size: string; sha256: string }[] }[];
}

/** The open thread as data; every attachment's bytes hashed from the URL the page shows it with. */
function readThread(page: Page): Promise<Thread> {
  return page.evaluate(async () => {
    const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
    const messages = [];
    for (const li of document.querySelectorAll<HTMLElement>('ol.messages > li')) {
      const attachments = [];
      for (const f of li.querySelectorAll<HTMLElement>('figure')) {
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
  });
}

/** path -> SHA-256 of every file of this device's restored tree (OPFS). */
function restoredFiles(page: Page): Promise<Record<string, string>> {
  return page.evaluate(async () => {
    const dirName = (JSON.parse(localStorage.getItem('coffer.device')!) as { restoredDir: string }).restoredDir;
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

async function openConversation(page: Page, title: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Conversations' }).getByRole('button', { name: title }).click();
  await page.locator('#thread-title', { hasText: title }).waitFor();
}

const conversationTitles = (page: Page) => page.locator('nav[aria-label=Conversations] .title').allTextContents();

/** The first conversation whose visible thread has a photo (the sample has some in most). */
async function conversationWithPhotos(page: Page): Promise<string> {
  for (const t of await conversationTitles(page)) {
    await openConversation(page, t);
    if ((await page.locator('ol.messages figure.photo').count()) > 0) return t;
  }
  throw new Error('no conversation with photos in the sample');
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

async function startRestore(page: Page, account: string): Promise<void> {
  await page.getByRole('button', { name: 'Restore on a new device' }).click();
  await page.getByRole('heading', { name: 'Restore on a new device' }).waitFor();
  await page.getByLabel('Account').fill(account);
}

async function tryPassword(page: Page, password: string): Promise<string> {
  const alert = page.locator('#restore-error');
  const before = await alert.textContent();
  await page.getByLabel('Backup password').fill(password);
  await page.getByRole('button', { name: 'Restore' }).click();
  // Wait until the page answered this attempt (the alert changes, or the restore finishes).
  await page.waitForFunction((b) => {
    const el = document.querySelector('#restore-error');
    return (el && el.textContent !== b && el.textContent !== '') || document.querySelector('main[data-ready=true]') !== null;
  }, before, { timeout: 30_000 });
  return (await alert.count()) ? ((await alert.textContent()) ?? '') : '';
}

test('password: turn on, back up, wrong password counted, right one restores the thread exactly', async () => {
  const phone = await newDevice();
  await shot(phone, '01-welcome');
  await usePhone(phone, 'maria@example');
  const titles = await conversationTitles(phone);
  const original = new Map<string, Thread>();
  for (const t of titles) {
    await openConversation(phone, t);
    original.set(t, await readThread(phone));
  }
  const title = await conversationWithPhotos(phone);
  assert.ok(original.get(title)!.messages.length > 10);
  await phone.locator('ol.messages figure.photo').last().scrollIntoViewIfNeeded();
  await shot(phone, '02-chats');
  await phone.getByRole('button', { name: 'Backups' }).click();
  await shot(phone, '03-backups-off');
  await turnOnWithPassword(phone, 'correct horse battery staple');
  await shot(phone, '04-backup-on');
  await backUpNow(phone);
  await shot(phone, '05-backup-done');

  const fresh = await newDevice();
  await startRestore(fresh, 'maria@example');
  await shot(fresh, '06-restore');
  assert.match(await tryPassword(fresh, 'not my password'), /Wrong password\. 9 guesses remain/);
  await shot(fresh, '07-wrong-password');
  assert.match(await tryPassword(fresh, 'still not it'), /8 guesses remain/);
  await tryPassword(fresh, 'correct horse battery staple');
  await fresh.locator('main[data-ready=true]').waitFor();
  await fresh.getByText(/Restored backup #1 from .*every byte verified/).waitFor();
  assert.deepEqual(await conversationTitles(fresh), titles);
  for (const t of titles) {
    await openConversation(fresh, t);
    const restored = await readThread(fresh);
    assert.equal(restored.messages.length, original.get(t)!.messages.length, `${t}: message count`);
    assert.deepEqual(restored, original.get(t), `${t}: messages and attachments`);
  }
  await openConversation(fresh, title);
  await fresh.locator('ol.messages figure.photo').last().scrollIntoViewIfNeeded();
  await shot(fresh, '08-restored-chats');
  // Below the thread view: every restored file in the new device's storage equals the phone's, byte for byte.
  assert.deepEqual(await restoredFiles(fresh), await phoneFiles());
  await fresh.context().close();
  await phone.context().close();
});

test('recovery key: shown once, copied, confirmed; a wrong key is refused; the right one restores', async () => {
  const phone = await newDevice();
  await phone.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  await usePhone(phone, 'sam@example');
  const title = (await phone.locator('#thread-title').textContent())!;
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

  const fresh = await newDevice();
  await startRestore(fresh, 'sam@example');
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
  await fresh.getByRole('button', { name: 'Restore' }).click();
  await fresh.locator('main[data-ready=true]').waitFor();
  await openConversation(fresh, title);
  await shot(fresh, '10-restored-with-recovery-key');
  assert.deepEqual(await readThread(fresh), original);
  // The new device keeps backing up to the same store: nothing new to upload.
  await fresh.getByRole('button', { name: 'Backups' }).click();
  await backUpNow(fresh, 2);
  assert.match((await fresh.locator('.progress-text').textContent()) ?? '', /Backup #2 done: .* 0 B new/);
  await fresh.context().close();
  await phone.context().close();
});

test('lockout: wrong passwords count down, the last attempt is announced, then the key is gone for good', async () => {
  const phone = await newDevice();
  await usePhone(phone, 'ana@example');
  await turnOnWithPassword(phone, 'the right password');
  await phone.context().close();

  const fresh = await newDevice();
  await startRestore(fresh, 'ana@example');
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
  await startRestore(fresh, 'ana@example');
  assert.match(await tryPassword(fresh, 'the right password'), /The backup key is gone for good/);
  await fresh.context().close();
});

test('keyboard: every control on each screen is reachable with Tab and has an accessible name', async () => {
  const page = await newDevice();
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
    for (let i = 0; i < n + 5; i++) {
      await page.keyboard.press('Tab');
      const kb = await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset['kb'] ?? null);
      if (kb !== null) seen.add(kb);
    }
    return seen.size;
  };
  for (const screen of ['welcome', 'chats', 'backups', 'restore']) {
    if (screen === 'chats') await usePhone(page, 'keyboard@example');
    if (screen === 'backups') await page.getByRole('button', { name: 'Backups' }).click();
    if (screen === 'restore') {
      await page.getByRole('button', { name: 'Sign out and clear this device' }).click();
      await page.getByRole('button', { name: 'Restore on a new device' }).click();
    }
    const a = await audit();
    assert.deepEqual(a.unnamed, [], `unnamed controls on ${screen}`);
    // The chats screen has many messages: the first 40 controls are enough to show the order works.
    const n = Math.min(a.count, 40);
    assert.ok((await tabThrough(n)) >= n, `only some controls on ${screen} are reachable by Tab`);
  }
  await page.context().close();
});
