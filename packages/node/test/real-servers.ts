/**
 * The storage servers people run, from Debian's packages (installed by scripts/setup.sh), each
 * started by the tests on 127.0.0.1 on a free high port, in a temporary folder, with basic auth:
 *   Apache 2.4 mod_dav_fs, nginx with dav-ext, `rclone serve webdav`, and Ceph's S3 gateway
 *   (radosgw on a one-node cluster: one monitor, one OSD keeping objects in memory).
 * Each can be stopped and started again on the same port with the same data, for outage tests
 * (for Ceph, only the gateway stops: the cluster behind it keeps the objects).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { chownSync, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';

export type DavKind = 'apache' | 'nginx' | 'rclone';

export interface RealServer {
  /** What and which version ("Apache/2.4.71"). */
  name: string;
  port: number;
  /** Credentials as the storage backends read them from the environment. */
  env: Record<string, string>;
  /** The storage location of `path` on this server. */
  url(path: string): string;
  /** Where the server keeps the objects on disk (WebDAV only). */
  root?: string;
  /** Stops the server (its port refuses connections); `start` brings it back with the same data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops everything and removes the temporary folder. */
  close(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (from the kernel's ephemeral range: high and random). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once `port` accepts a connection; fails after `ms` or when `child` exits. */
async function listening(port: number, ms: number, child?: ChildProcess, what = 'server'): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${what} did not listen on ${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A child process in the foreground, its output kept in a log file for when it fails. */
function daemon(cmd: string, args: string[], log: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const out: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => out.push(d));
  child.once('exit', () => void writeFile(log, Buffer.concat(out)).catch(() => {}));
  return child;
}

function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => (clearTimeout(force), resolve()));
    child.kill(signal);
  });
}

const asRoot = process.getuid?.() === 0;
const USER = 'alice';

/** An htpasswd line in the {SHA} scheme, which Apache and nginx both read. */
const htpasswd = (user: string, password: string) => `${user}:{SHA}${createHash('sha1').update(password).digest('base64')}\n`;

/** The server's name and version as it reports them ("Apache/2.4.71"). */
export function version(kind: DavKind | 'ceph'): string {
  const [cmd, args, pattern] = {
    apache: ['apache2', ['-v'], /Apache\/[\d.]+/],
    nginx: ['nginx', ['-v'], /nginx\/[\d.]+/], // on stderr
    rclone: ['rclone', ['version'], /rclone v[\d.]+/],
    ceph: ['radosgw', ['--version'], /ceph version [\d.]+/],
  }[kind] as [string, string[], RegExp];
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const found = pattern.exec(`${r.stdout}${r.stderr}`)?.[0];
  if (!found) throw new Error(`${cmd} is not installed (run scripts/setup.sh)`);
  return kind === 'ceph' ? found.replace('ceph version', 'Ceph radosgw') : found;
}

/** Starts a WebDAV server of `kind` in a new temporary folder, serving its root/dav at the URL path /dav/. */
export async function startDav(kind: DavKind, options: { nginxMaxBody?: string } = {}): Promise<RealServer> {
  // A folder of its own under /tmp: Apache drops root for www-data, which must reach it.
  const dir = await mkdtemp(join(tmpdir(), `coffer-${kind}-`));
  const root = join(dir, 'root');
  await mkdir(join(root, 'dav'), { recursive: true });
  const password = randomBytes(12).toString('hex');
  await writeFile(join(dir, 'htpasswd'), htpasswd(USER, password));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let argv: [string, string[]];
  if (kind === 'apache') {
    const mod = (name: string) => `LoadModule ${name}_module /usr/lib/apache2/modules/mod_${name}.so`;
    await writeFile(
      join(dir, 'apache.conf'),
      [
        `ServerRoot ${dir}`,
        `ServerName 127.0.0.1`,
        `Listen 127.0.0.1:${port}`,
        `PidFile ${dir}/apache.pid`,
        `ErrorLog ${dir}/apache-error.log`,
        'LogLevel warn',
        ...['mpm_event', 'authz_core', 'authn_core', 'authn_file', 'authz_user', 'auth_basic', 'dav', 'dav_fs'].map(mod),
        ...(asRoot ? ['User www-data', 'Group www-data'] : []),
        `DavLockDB ${dir}/davlock`,
        `DocumentRoot ${root}`,
        `<Directory ${root}>`,
        '  Dav On',
        '  AuthType Basic',
        '  AuthName coffer-test',
        `  AuthUserFile ${dir}/htpasswd`,
        '  Require valid-user',
        '</Directory>',
        // A folder this user may not touch: 403 to any request.
        '<Location /dav/forbidden>',
        '  Require all denied',
        '</Location>',
        '',
      ].join('\n'),
    );
    // Apache drops root for www-data: its folders must be www-data's.
    if (asRoot) for (const p of [dir, root, join(root, 'dav')]) chownSync(p, 33, 33);
    argv = ['apache2', ['-f', join(dir, 'apache.conf'), '-DFOREGROUND']];
  } else if (kind === 'nginx') {
    await writeFile(
      join(dir, 'nginx.conf'),
      [
        'load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;',
        'daemon off;',
        'worker_processes auto;',
        ...(asRoot ? ['user root root;'] : []),
        `pid ${dir}/nginx.pid;`,
        `error_log ${dir}/nginx-error.log warn;`,
        'events { worker_connections 512; }',
        'http {',
        '  access_log off;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t}-temp;`),
        '  server {',
        `    listen 127.0.0.1:${port};`,
        `    root ${root};`,
        `    client_max_body_size ${options.nginxMaxBody ?? '64m'};`,
        '    location / {',
        '      auth_basic coffer-test;',
        `      auth_basic_user_file ${dir}/htpasswd;`,
        '      dav_methods PUT DELETE MKCOL COPY MOVE;',
        '      dav_ext_methods PROPFIND OPTIONS;',
        '      dav_access user:rw group:r all:r;',
        '    }',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    argv = ['nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'nginx-error.log')]];
  } else {
    argv = [
      'rclone',
      ['serve', 'webdav', root, '--addr', `127.0.0.1:${port}`, '--user', USER, '--pass', password, '--config', join(dir, 'rclone.conf'), '--log-level', 'ERROR'],
    ];
  }
  await writeFile(join(dir, 'rclone.conf'), '');
  const start = async () => {
    child = daemon(argv[0], argv[1], join(dir, `${kind}.log`));
    try {
      await listening(port, 15_000, child, kind);
    } catch (e) {
      const log = await readFile(join(dir, `${kind}.log`), 'utf8').catch(() => '');
      const err = await readFile(join(dir, `${kind}-error.log`), 'utf8').catch(() => '');
      throw new Error(`${(e as Error).message}\n${log}${err}`);
    }
  };
  await start();
  return {
    name: version(kind),
    port,
    root,
    env: { COFFER_WEBDAV_USER: USER, COFFER_WEBDAV_PASSWORD: password },
    url: (path) => `webdav://127.0.0.1:${port}/dav/${path}`,
    stop: () => stopChild(child),
    start,
    close: async () => {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Ceph's S3 gateway on a one-node cluster: a monitor, one OSD with the memstore object store
 * (objects in memory: nothing on disk but maps), and radosgw with the beast front end. No cephx
 * (loopback only), so every messenger mode is crc. A user with a random key pair, and a bucket
 * "coffer". Takes about 12 s on 2 cores, most of it radosgw creating its pools.
 */
export async function startCeph(): Promise<RealServer> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-ceph-'));
  const [monPort, port] = [await freePort(), await freePort()];
  const fsid = randomUUID();
  for (const d of ['mon', 'osd0', 'run', 'log']) await mkdir(join(dir, d), { recursive: true });
  const conf = join(dir, 'ceph.conf');
  await writeFile(
    conf,
    `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
mon initial members = a
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms bind ipv6 = false
ms mon client mode = crc
ms client mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 1073741824
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
log file = ${dir}/log/$name.log
mon data = ${dir}/mon
osd data = ${dir}/osd$id
keyring = ${dir}/keyring
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${port}
`,
  );
  await writeFile(join(dir, 'keyring'), '');
  const run = (cmd: string, args: string[]) => execFileSync(cmd, ['-c', conf, ...args], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 60_000 });
  execFileSync('monmaptool', ['--create', '--add', 'a', `v2:127.0.0.1:${monPort}`, '--fsid', fsid, join(dir, 'monmap')], { stdio: 'ignore' });
  run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')]);
  const mon = daemon('ceph-mon', ['-c', conf, '-f', '-i', 'a'], join(dir, 'mon.out'));
  let osd: ChildProcess | undefined;
  let rgw: ChildProcess | undefined;
  const close = async () => {
    await stopChild(rgw);
    await stopChild(osd);
    await stopChild(mon);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await listening(monPort, 30_000, mon, 'ceph-mon');
    run('ceph', ['osd', 'create']);
    run('ceph-osd', ['-i', '0', '--mkfs']);
    osd = daemon('ceph-osd', ['-c', conf, '-f', '-i', '0'], join(dir, 'osd.out'));
    const access = 'COFFER' + randomBytes(7).toString('hex').toUpperCase();
    const secret = randomBytes(20).toString('base64url');
    const start = async () => {
      rgw = daemon('radosgw', ['-c', conf, '-f', '-n', 'client.rgw'], join(dir, 'rgw.out'));
      await listening(port, 120_000, rgw, 'radosgw');
    };
    await start();
    run('radosgw-admin', ['user', 'create', '--uid=coffer', '--display-name=coffer', `--access-key=${access}`, `--secret=${secret}`]);
    // The bucket "coffer". (The SDK's Node version warning is off in this test process only; the
    // `coffer` commands the tests run must silence it themselves.)
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const client = new S3Client({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: access, secretAccessKey: secret } });
    try {
      await client.send(new CreateBucketCommand({ Bucket: 'coffer' }));
    } finally {
      client.destroy();
    }
    return {
      name: version('ceph'),
      port,
      env: { AWS_ACCESS_KEY_ID: access, AWS_SECRET_ACCESS_KEY: secret },
      url: (path) => `s3://coffer/${path}?endpoint=http://127.0.0.1:${port}&region=us-east-1&path-style=1`,
      stop: () => stopChild(rgw),
      start,
      close,
    };
  } catch (e) {
    const log = existsSync(join(dir, 'log')) ? await readFile(join(dir, 'log', 'client.rgw.log'), 'utf8').catch(() => '') : '';
    await close();
    throw new Error(`${(e as Error).message}\n${log.slice(-2000)}`);
  }
}
