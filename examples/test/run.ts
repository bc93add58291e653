/**
 * Runs each example of examples/ as a user would (a child process in a project where the packages
 * are installed) and checks what it did, beyond what it prints: the store holds no plaintext, the
 * restored files are the originals. Used in this repository (examples.test.ts) and in a temporary
 * project installed from the `npm pack` tarballs (pack.test.ts).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);

/** Every file below `dir`, recursively. */
async function filesBelow(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** No file below `dir` holds any of `secrets` (UTF-8). */
async function holdsNone(dir: string, secrets: string[]): Promise<void> {
  const files = await filesBelow(dir);
  assert.ok(files.length > 0, `${dir} is empty`);
  for (const f of files) {
    const bytes = await readFile(f);
    for (const s of secrets) assert.equal(bytes.indexOf(Buffer.from(s)), -1, `${f} holds "${s}" in the clear`);
  }
}

async function withWorkDir<T>(fn: (work: string) => Promise<T>): Promise<T> {
  const work = await mkdtemp(join(tmpdir(), 'coffer-example-test-'));
  try {
    return await fn(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Runs `node <project>/examples/<file> WORK` from the project folder. */
async function node(project: string, file: string, work: string): Promise<string> {
  const { stdout } = await run(process.execPath, [join(project, 'examples', file), work], { cwd: project, timeout: 60_000 });
  return stdout;
}

export const examples: Record<string, (project: string) => Promise<void>> = {
  async 'node-backup-restore.mjs'(project) {
    await withWorkDir(async (work) => {
      const out = await node(project, 'node-backup-restore.mjs', work);
      assert.match(out, /^backed up 2 files \(300047 bytes\) as backup #1$/m);
      assert.match(out, /^restored 2 files \(300047 bytes\) from backup #1$/m);
      assert.match(out, /^the restored files are identical to the originals$/m);
      assert.deepEqual(await readFile(join(work, 'restored', 'messages.txt')), await readFile(join(work, 'chat', 'messages.txt')));
      assert.equal((await readdir(join(work, 'cloud', 'manifests'))).length, 1);
      await holdsNone(join(work, 'cloud'), ['the keys are under the mat']);
    });
  },

  async 'vault-password.mjs'(project) {
    await withWorkDir(async (work) => {
      const out = await node(project, 'vault-password.mjs', work);
      assert.match(out, /^backup key registered with the vault: 10 guesses allowed$/m);
      assert.match(out, /^wrong password: 9 guesses remain$/m);
      assert.match(out, /^the right password recovered the backup key$/m);
      assert.match(out, /^restored: alice: see you at noon$/m);
      // Neither the vault nor the store sees the password or the chats.
      await holdsNone(join(work, 'vault'), ['correct horse battery', 'see you at noon']);
      await holdsNone(join(work, 'cloud'), ['correct horse battery', 'see you at noon']);
    });
  },

  async 'cli.sh'(project) {
    await withWorkDir(async (work) => {
      const PATH = `${join(project, 'node_modules', '.bin')}${delimiter}${process.env['PATH']}`;
      const { stdout } = await run('bash', [join(project, 'examples', 'cli.sh'), work], { cwd: project, env: { ...process.env, PATH }, timeout: 60_000 });
      assert.match(stdout, /^Backup #1 done/m);
      assert.match(stdout, /^Backup #2 done .* 0 files read, 0 new chunks/m, 'the second backup uploads nothing');
      assert.match(stdout, /^Restored backup #2 .* every byte verified\.$/m);
      assert.match(stdout, /^the restored folder is identical to the original$/m);
      const chat = (await filesBelow(join(work, 'chat'))).map((f) => f.slice(join(work, 'chat').length)).sort();
      const restored = (await filesBelow(join(work, 'restored'))).map((f) => f.slice(join(work, 'restored').length)).sort();
      assert.ok(chat.length >= 5);
      assert.deepEqual(restored, chat);
    });
  },

  async 'browser/'(project) {
    await withWorkDir(async (work) => {
      const server = spawn(process.execPath, [join(project, 'examples', 'browser', 'serve.mjs'), work, '--port', '0'], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      try {
        const url = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`serve.mjs printed no URL in 30 s:\n${output}`)), 30_000);
          const seen = (d: Buffer) => {
            output += d.toString();
            const m = /^open (http:\S+)$/m.exec(output);
            if (m) {
              clearTimeout(timer);
              resolve(m[1]!);
            }
          };
          server.stdout.on('data', seen);
          server.stderr.on('data', seen);
          server.once('exit', (code) => reject(new Error(`serve.mjs exited ${code}:\n${output}`)));
        });
        const browser = await chromium.launch({ executablePath: process.env['COFFER_CHROMIUM'] ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox'], timeout: 30_000 });
        try {
          const page = await browser.newPage();
          await page.goto(url);
          await page.waitForSelector('body[data-result]', { timeout: 60_000 });
          const log = await page.textContent('#log');
          assert.equal(await page.getAttribute('body', 'data-result'), 'ok', log ?? '');
          assert.match(log!, /^backed up 2 files \(200042 bytes\) over HTTP$/m);
          assert.match(log!, /^restored 2 files \(200042 bytes\)$/m);
          assert.match(log!, /^the restored files are identical to the originals$/m);
        } finally {
          await browser.close();
        }
        // What reached the server went through the HTTP store: packs, and no plaintext.
        assert.ok((await readdir(join(work, 'cloud', 'packs'))).length > 0);
        await holdsNone(join(work, 'cloud'), ['lunch at noon']);
      } finally {
        server.kill();
      }
    });
  },
};
