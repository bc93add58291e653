#!/usr/bin/env node
// The main job on embedded defaults (`npm start`): makes realistic chat data, starts a Backup Key
// Vault (SQLite records; SoftHSM2 when installed, else the development-only software HSM), turns on
// backups protected by a password, backs up end-to-end encrypted to a local folder standing in for
// the cloud, simulates a day of chatting and an incremental backup, then restores on a "new phone"
// with only the password (after one wrong guess) and shows that every byte came back. Last, the
// same with a 64-digit recovery key instead of the vault, and over three independent realms (the
// Juicebox protocol) so that no single operator can defeat the guess limit. Everything lives in
// .coffer-demo/.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, rm, mkdir, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addActivity, generateChatData, parseSize } from '../packages/sample/dist/src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(root, '.coffer-demo');
const coffer = join(root, 'packages/cli/bin/coffer.js');
const size = parseSize(process.env.COFFER_DEMO_SIZE ?? '64MiB');
const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s) => console.log(`\n${bold('==> ' + s)}`);

// Realm keys and tokens are long; the demo shows their start only.
const shown = (args) => args.map((a) => (/^(coffer-realm-v1:|eyJ)/.test(a) ? a.slice(0, 24) + '…' : a)).join(' ');

function run(args, { home, input, capture, expect = 0, what = 'key' } = {}) {
  console.log(`$ coffer ${shown(args)}${input ? `   (${what} typed on stdin)` : ''}`);
  const r = spawnSync(process.execPath, [coffer, ...args], {
    env: { ...process.env, COFFER_HOME: home },
    input,
    stdio: [input ? 'pipe' : 'ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    encoding: 'utf8',
  });
  if (r.status !== expect) {
    console.error(`coffer ${args[0]} exited with ${r.status}, expected ${expect}`);
    process.exit(1);
  }
  return r.stdout;
}

/** `coffer vault serve` on a free port; resolves with its URL, realm public key and Juicebox realm id and key. */
function startVault(dataDir) {
  const child = spawn(process.execPath, [coffer, 'vault', 'serve', '--port', '0', '--data-dir', dataDir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d) => {
      out += d;
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      const realmKey = /realm public key: (\S+)/.exec(out)?.[1];
      const hsm = /HSM: ([^\n]+)/.exec(out)?.[1];
      const jb = /Juicebox realm: \S+ id ([0-9a-f]{32}) public_key ([0-9a-f]{64})/.exec(out);
      if (url && realmKey && hsm && jb) resolve({ url, realmKey, hsm, realmId: jb[1], publicKey: jb[2], stop: () => child.kill('SIGTERM') });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`the vault exited with ${code}:\n${out}`)));
  });
}

async function snapshot(dir) {
  const out = new Map();
  for (const e of await readdir(dir, { recursive: true })) {
    const p = join(dir, e);
    const st = await lstat(p);
    const hash = st.isFile() ? createHash('sha256').update(await readFile(p)).digest('hex') : st.isDirectory() ? 'dir' : 'other';
    out.set(relative(dir, p), `${hash} ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)}`);
  }
  return out;
}

await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const chat = join(work, 'phone/chat');
const cloud = join(work, 'cloud');

step(`Phone: ${(size / 2 ** 20).toFixed(0)} MiB of chat data (a SQLite message database, photos, voice notes, videos)`);
const s = await generateChatData(chat, { seed: 'demo', targetBytes: size });
console.log(`${s.messages} messages in ${s.conversations} conversations, ${s.photos} photos, ${s.voiceNotes} voice notes, ${s.videos} videos: ${s.files} files`);

step('Start the Backup Key Vault (embedded defaults: SQLite records, HSM boundary)');
const vault = await startVault(join(work, 'vault'));
console.log(`vault at ${vault.url}\nHSM: ${vault.hsm}\nrealm public key (pinned by the app): ${vault.realmKey}`);
const token = JSON.parse(run(['vault', 'token', '--account', 'maria@example', '--data-dir', join(work, 'vault'), '--json'], { capture: true })).token;
console.log('account token for maria@example issued (as the app\'s sign-in server would)');
const password = 'purple elephants dance at dawn';
const vaultArgs = ['--vault', vault.url, '--realm-key', vault.realmKey, '--token', token];

try {
  step('Turn on encrypted backups protected by a password (the vault never sees it: OPAQUE)');
  run(['init', '--storage', cloud, ...vaultArgs, '--password-stdin'], { home: join(work, 'phone/profile'), input: password + '\n', what: 'password' });

  step('Back up (everything is encrypted on the phone; the cloud folder only gets ciphertext)');
  run(['backup', chat], { home: join(work, 'phone/profile') });

  step('A day of chatting later: new messages and photos, then an incremental backup that keeps only the newest (forget and prune)');
  const act = await addActivity(chat, { seed: 'demo-day-2', messages: 200, photos: 3 });
  console.log(`${act.messagesAdded} new messages, ${act.newFiles.length} new photos`);
  run(['backup', chat, '--keep-last', '1'], { home: join(work, 'phone/profile') });

  step('What the cloud sees');
  const packs = (await readdir(join(cloud, 'packs'), { recursive: true })).filter((n) => n.includes('/'));
  const sizes = await Promise.all(packs.map(async (n) => (await stat(join(cloud, 'packs', n))).size));
  console.log(`${packs.length} packs of sealed chunks under random names (e.g. packs/${packs[0]?.split('/')[1]?.slice(0, 16) ?? ''}…),`);
  console.log(`padded to sizes that hide the chunks inside: ${sizes.map((s) => `${(s / 1048576).toFixed(2)} MiB`).join(', ')}`);
  const found = await plaintextIn(cloud);
  console.log(found === 0 ? 'no plaintext: the word "messages" from the database appears in no stored object' : `WARNING: ${found} objects contain plaintext`);

  step('The phone is lost. On a new phone, the user types the password (first a typo)');
  const restored = join(work, 'new-phone/chat');
  const restoreArgs = ['restore', restored, '--storage', cloud, ...vaultArgs, '--password-stdin'];
  run(restoreArgs, { home: join(work, 'new-phone/profile'), input: 'purple elephants dance at dusk\n', expect: 3, what: 'wrong password' });
  run(restoreArgs, { home: join(work, 'new-phone/profile'), input: password + '\n', what: 'password' });
  await compare(chat, restored, found);

  step('The same with a 64-digit recovery key instead of a password');
  const cloud2 = join(work, 'cloud-recovery-key');
  const init = JSON.parse(run(['init', '--storage', cloud2, '--json'], { home: join(work, 'phone/profile-rk'), capture: true }));
  console.log(`Recovery key (the user writes this down):\n\n    ${init.recoveryKey}\n`);
  run(['backup', chat, '--quiet'], { home: join(work, 'phone/profile-rk') });
  const restored2 = join(work, 'new-phone/chat-rk');
  run(['restore', restored2, '--storage', cloud2, '--recovery-key-stdin', '--quiet'], { home: join(work, 'new-phone/profile-rk'), input: init.recoveryKey + '\n' });
  await compare(chat, restored2, await plaintextIn(cloud2));

  step('Trust past one operator: three independent realms (Juicebox protocol), each its own SQLite file and HSM token');
  const realms = [];
  for (const name of ['realm-a', 'realm-b', 'realm-c']) realms.push(await startVault(join(work, name)));
  for (const [i, r] of realms.entries()) console.log(`${['realm-a', 'realm-b', 'realm-c'][i]} at ${r.url}: id ${r.realmId}${i === 0 ? ' (spoken to over Noise, key ' + r.publicKey.slice(0, 16) + '…)' : ''}`);
  const realmsFile = join(work, 'realms.json');
  const tokensFile = join(work, 'realm-tokens.json');
  await writeFile(realmsFile, JSON.stringify({
    realms: realms.map((r, i) => ({ id: r.realmId, address: `${r.url}/`, public_key: i === 0 ? r.publicKey : null })),
    register_threshold: 3, recover_threshold: 3, pin_hashing_mode: 'Standard2019',
  }, null, 2));
  // The app's sign-in server would issue these; here each realm's development token command does.
  await writeFile(tokensFile, JSON.stringify(Object.fromEntries(realms.map((r, i) => [r.realmId, { command: `node ${JSON.stringify(coffer)} vault token --data-dir ${JSON.stringify(join(work, ['realm-a', 'realm-b', 'realm-c'][i]))} --account maria@example --audience juicebox` }])), null, 2));
  console.log(`realms file (the Juicebox SDK's Configuration, 3-of-3): ${relative(process.cwd(), realmsFile)}`);
  const cloud3 = join(work, 'cloud-realms');
  const realmArgs = ['--realms', realmsFile, '--tokens', tokensFile];
  run(['init', '--storage', cloud3, ...realmArgs, '--password-stdin'], { home: join(work, 'phone/profile-realms'), input: password + '\n', what: 'password' });
  run(['backup', chat, '--quiet'], { home: join(work, 'phone/profile-realms') });
  run(['status'], { home: join(work, 'phone/profile-realms') });
  step('New phone: the password recovers K from all three realms (a typo first: every realm counts it)');
  const restored3 = join(work, 'new-phone/chat-realms');
  const restore3 = ['restore', restored3, '--storage', cloud3, ...realmArgs, '--password-stdin', '--quiet'];
  run(restore3, { home: join(work, 'new-phone/profile-realms'), input: 'purple elephants dance at dusk\n', expect: 3, what: 'wrong password' });
  run(restore3, { home: join(work, 'new-phone/profile-realms'), input: password + '\n', what: 'password' });
  await compare(chat, restored3, await plaintextIn(cloud3));
  console.log('Rolling back or seizing one or two of these realms gains an attacker no guess: the third still counts (spec/threat-model.md §5).');
  for (const r of realms) r.stop();
} finally {
  vault.stop();
}
console.log(`\nEverything is in ${relative(process.cwd(), work) || work}/ (vault/, realm-a..c/, cloud*/, phone/, new-phone/).`);

async function plaintextIn(dir) {
  const probe = Buffer.from('messages'); // SQLite stores table names in the clear; the cloud must not
  let found = 0;
  for (const n of await readdir(dir, { recursive: true })) {
    const p = join(dir, n);
    if ((await lstat(p)).isFile() && (await readFile(p)).includes(probe)) found++;
  }
  return found;
}

async function compare(a, b, plaintextObjects) {
  const [x, y] = await Promise.all([snapshot(a), snapshot(b)]);
  const diff = [...x].filter(([k, v]) => y.get(k) !== v).map(([k]) => k).concat([...y.keys()].filter((k) => !x.has(k)));
  if (plaintextObjects !== 0 || diff.length) {
    console.error(`MISMATCH in ${diff.length} entries: ${diff.slice(0, 5).join(', ')}`);
    process.exit(1);
  }
  console.log(`Check: all ${x.size} files and folders identical, byte for byte, with modes and modification times. Every message came back.`);
}
