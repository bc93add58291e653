/** `coffer-web`: the app server on embedded defaults; prints the URL to open. */
import { parseArgs } from 'node:util';
import { parseSize } from '@coffer/sample';
import { startApp } from './app.js';

const HELP = `usage: coffer-web [--dev] [--port N] [--host ADDR] [--origin URL] [--data-dir DIR] [--size 16MiB]

Serves Coffer Messenger: the page, accounts (passkeys; one-time codes for a new device), three
realms on embedded defaults (the first is also the Backup Key Vault; a password is kept by the
vault, or spread over all three), and an HTTP object store standing in for each account's cloud
drive.
  --dev            development mode: one-time codes are printed here and listed on /dev/inbox
                   (without it this server has no way to send codes: sign-in is by passkey only)
  --port N         default 8080 (0 picks a free port)
  --host ADDR      address to listen on, default 127.0.0.1
  --origin URL     the address people open, default http://localhost:PORT; only its host is
                   served. Passkeys need a name, not an IP address, and https unless localhost.
  --data-dir DIR   where the accounts, the realms, the cloud store and the demo phone's chats live
                   (default .coffer-web)
  --size SIZE      size of the demo phone's generated chat data (default 16MiB)
`;

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      dev: { type: 'boolean' }, port: { type: 'string' }, host: { type: 'string' }, origin: { type: 'string' }, 'data-dir': { type: 'string' },
      size: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const port = Number(v.port ?? 8080);
  if (!/^\d+$/.test(v.port ?? '8080') || port > 65535) throw new Error('--port must be 0 to 65535');
  const dataDir = v['data-dir'] ?? '.coffer-web';
  process.stdout.write(`Starting Coffer Messenger (data in ${dataDir}/; the first start generates the demo phone's chats)…\n`);
  const options = { dataDir, port, host: v.host ?? '127.0.0.1', sampleBytes: parseSize(v.size ?? '16MiB'), dev: v.dev === true, ...(v.origin ? { origin: v.origin } : {}) };
  let app;
  try {
    app = await startApp(options);
  } catch (e) {
    // The default port is taken: any free one will do (an explicit --port is kept to).
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || v.port !== undefined) throw e;
    process.stdout.write(`port ${port} is in use; picking a free one\n`);
    app = await startApp({ ...options, port: 0 });
  }
  process.stdout.write(
    `\nCoffer Messenger is running: open ${app.url}/\n` +
      `  accounts: sign up with a passkey (your browser or password manager keeps it)\n` +
      (app.devInbox
        ? `  DEVELOPMENT MODE: one-time codes for new devices are printed here and listed on ${app.url}/dev/inbox\n`
        : `  one-time codes: no sender configured, so a new device signs in with a passkey only (--dev prints codes here)\n`) +
      `  vault: embedded (${app.hsm}), realm key pinned by the page: ${app.realmPublicKey}\n` +
      `  three realms (Juicebox, 3-of-3, each its own records and HSM token): ${app.realms.map((r) => r.id).join(', ')}\n` +
      `  cloud drive (ciphertext only): ${app.cloudDir}\n  Ctrl+C stops it.\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await app.close();
  return 0;
}
