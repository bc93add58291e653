/** `coffer-web`: the app server on embedded defaults; prints the URL to open. */
import { parseArgs } from 'node:util';
import { parseSize } from '@coffer/sample';
import { startApp } from './app.js';

const HELP = `usage: coffer-web [--port N] [--host ADDR] [--data-dir DIR] [--size 16MiB]

Serves Coffer Messenger: the page, a Backup Key Vault on embedded defaults, an HTTP object store
standing in for your cloud drive, and development sign-in tokens for the demo accounts.
  --port N         default 8080 (0 picks a free port)
  --host ADDR      default 127.0.0.1
  --data-dir DIR   where the vault, the cloud store and the demo phone's chats live (default .coffer-web)
  --size SIZE      size of the demo phone's generated chat data (default 16MiB)
`;

export async function main(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, host: { type: 'string' }, 'data-dir': { type: 'string' }, size: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const port = Number(v.port ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port must be 0 to 65535');
  const dataDir = v['data-dir'] ?? '.coffer-web';
  process.stdout.write(`Starting Coffer Messenger (data in ${dataDir}/; the first start generates the demo phone's chats)…\n`);
  const options = { dataDir, port, host: v.host ?? '127.0.0.1', sampleBytes: parseSize(v.size ?? '16MiB') };
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
      `  vault: embedded (${app.hsm}), realm key pinned by the page: ${app.realmPublicKey}\n` +
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
