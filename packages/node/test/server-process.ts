/**
 * A real S3 or WebDAV server on 127.0.0.1 in a process of its own, for the tests and bench/cloud.mjs:
 *   node dist/test/server-process.js s3 DIR        (s3rver; bucket "coffer"; keys S3RVER / S3RVER)
 *   node dist/test/server-process.js webdav DIR    (webdav-server v2 on DIR; user alice, password wonderland)
 * Prints one JSON line {"port": N} when it listens; stops on SIGTERM or when stdin closes.
 */
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
// @ts-expect-error: s3rver ships no types
import S3rver from 's3rver';
import { v2 as webdav } from 'webdav-server';

const [kind, dir] = process.argv.slice(2);
if (!dir || (kind !== 's3' && kind !== 'webdav')) {
  process.stderr.write('usage: server-process.js s3|webdav DIR\n');
  process.exit(2);
}
mkdirSync(dir, { recursive: true });

let stop: () => void;
if (kind === 's3') {
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: 'coffer' }] });
  const { port } = await server.run();
  process.stdout.write(JSON.stringify({ port }) + '\n');
  stop = () => server.close(() => process.exit(0));
} else {
  const users = new webdav.SimpleUserManager();
  const alice = users.addUser('alice', 'wonderland', false);
  const privileges = new webdav.SimplePathPrivilegeManager();
  privileges.setRights(alice, '/', ['all']);
  const server = new webdav.WebDAVServer({
    hostname: '127.0.0.1',
    httpAuthentication: new webdav.HTTPBasicAuthentication(users, 'coffer-test'),
    privilegeManager: privileges,
    rootFileSystem: new webdav.PhysicalFileSystem(dir),
    maxRequestDepth: 1,
  });
  // server.start(0) would listen on its default port 1900: serve its handler on a port of our own.
  const httpServer = createServer(server.executeRequest.bind(server));
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  process.stdout.write(JSON.stringify({ port: (httpServer.address() as AddressInfo).port }) + '\n');
  stop = () => {
    httpServer.closeAllConnections();
    httpServer.close(() => process.exit(0));
  };
}
process.on('SIGTERM', () => stop());
process.stdin.on('end', () => stop()).resume();
