/**
 * The S3 backend (spec/format.md §7): `s3://bucket/prefix`, for AWS and S3-compatible stores.
 * Object `name` is the key `prefix/name` (S3 is flat: no shards). Every request goes through the
 * retry layer (retry.ts) with the SDK's own retries off, so there is one policy in one place.
 *
 * Write-once. A put is one PutObject (objects are at most a few MiB; a single PUT takes up to 5 GiB,
 * so multipart upload is not needed even for the manifest of a large backup), which S3 makes
 * atomic: readers see the old state or the whole new object. Each put sends `If-None-Match: *`:
 * stores that implement conditional writes (AWS S3 since 2024-08, MinIO, Cloudflare R2, Ceph RGW
 * recent) answer 412 when the key exists, which makes the put write-once against every writer.
 * Stores that ignore the header (s3rver, which the tests use, and older servers) get the weaker
 * guarantee of the HEAD check made before the PUT plus the serialisation of puts of one name in this
 * process: two processes racing for one name may both "win", the later object replacing the earlier.
 * For data objects that is harmless (one name, one plaintext: spec §3); for a manifest it would
 * lose one of two backups made at the same moment from two devices.
 *
 * Which of the two a store is shows on the first data object a process writes: it is PUT a second
 * time, conditionally. A store that answers 412 enforces If-None-Match, and this process stops
 * making the HEAD check (one request per object instead of two). A store that ignores the header
 * stores the same bytes again under the same name (harmless: data objects are named by their
 * content) and keeps the HEAD check.
 */
import { Readable } from 'node:stream';
import { readWindow } from './window.js';
import {
  DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { checkObjectName, ObjectExistsError, ObjectNotFoundError, UsageError, type ByteRange, type Storage } from '@coffer/core';
import { DEFAULT_RETRY, networkCode, transientStatus, withRetry, WriteOnce, type RetryPolicy, type Verdict } from './retry.js';
import { redactUrl } from './redact.js';

/** Options of the remote stores (S3, WebDAV): retries, and the environment to read credentials from. */
export interface RemoteOptions {
  /** Retry policy of every request (DEFAULT_RETRY). */
  retry?: RetryPolicy;
  /** A request whose connection stays idle this long is abandoned and retried (30 s). */
  idleTimeoutMs?: number;
}

interface S3Error {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const status = (e: unknown): number | undefined => (e as S3Error)?.$metadata?.httpStatusCode;
const errName = (e: unknown): string => (e as S3Error)?.Code ?? (e as S3Error)?.name ?? 'Error';

/** A Storage in an S3 bucket (AWS or any S3-compatible store; spec/format.md §7.1): conditional puts, ranged gets, retries. */
export class S3Storage implements Storage {
  readonly label: string;
  private readonly writes = new WriteOnce();
  /** Cleared when the store answers 501 to a conditional PUT: then only the HEAD check remains. */
  private conditional = true;
  /** Cleared once the store has shown that it enforces If-None-Match (see the probe above). */
  private headCheck = true;
  private probed = false;

  private constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    private readonly prefix: string,
    label: string,
    private readonly retry: RetryPolicy,
  ) {
    this.label = label;
  }

  /**
   * Opens `s3://bucket/prefix?endpoint=URL&region=R&path-style=1`. Credentials: the SDK's usual
   * chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, ...), or
   * `s3://KEY_ID:SECRET@bucket/...` (kept in the profile as typed: prefer the environment). The region
   * defaults to AWS_REGION, then us-east-1; the endpoint to AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL.
   * Checks that the bucket is there and the credentials work (HeadBucket), failing fast when not.
   */
  static async open(location: string, options: RemoteOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<S3Storage> {
    const env = options.env ?? process.env;
    const label = redactUrl(location);
    let u: URL;
    try {
      u = new URL(location);
    } catch {
      throw new UsageError(`${label} is not a valid s3:// URL`, 'use s3://bucket/prefix?endpoint=https://host&region=us-east-1');
    }
    const bucket = decodeURIComponent(u.hostname);
    if (!bucket) throw new UsageError(`${label} names no bucket`, 'use s3://bucket/prefix');
    const prefix = u.pathname.split('/').filter(Boolean).map(decodeURIComponent).join('/');
    const q = u.searchParams;
    for (const k of q.keys()) {
      if (!['endpoint', 'region', 'path-style'].includes(k)) throw new UsageError(`${label}: unknown option ${k}`, 'the options are endpoint, region and path-style');
    }
    const endpoint = q.get('endpoint') ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
    const idle = options.idleTimeoutMs ?? 30_000;
    const config: S3ClientConfig = {
      region: q.get('region') ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: ['1', 'true', 'yes'].includes(q.get('path-style') ?? ''),
      maxAttempts: 1, // retry.ts retries
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: idle, socketTimeout: idle, httpAgent: { keepAlive: true, maxSockets: 32 }, httpsAgent: { keepAlive: true, maxSockets: 32 } },
      ...(endpoint ? { endpoint } : {}),
    };
    if (u.username || u.password) {
      config.credentials = { accessKeyId: decodeURIComponent(u.username), secretAccessKey: decodeURIComponent(u.password) };
    } else if (options.env?.AWS_ACCESS_KEY_ID && options.env.AWS_SECRET_ACCESS_KEY) {
      // An injected environment (tests); otherwise the SDK reads process.env and the rest of its chain.
      const e = options.env;
      config.credentials = { accessKeyId: e.AWS_ACCESS_KEY_ID!, secretAccessKey: e.AWS_SECRET_ACCESS_KEY!, ...(e.AWS_SESSION_TOKEN ? { sessionToken: e.AWS_SESSION_TOKEN } : {}) };
    }
    // Under Node < 22 the SDK warns, once per process, that its releases after the first week of
    // January 2027 will need Node 22. Users of `coffer` can do nothing about that (README: Coffer
    // moves to Node 22 before it takes such a release), so that one warning is off; the SDK's own
    // switch, which a user who wants the warning can set to anything but "true".
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const client = new S3Client(config);
    const s = new S3Storage(client, bucket, prefix, label, options.retry ?? DEFAULT_RETRY);
    try {
      await s.call('opening the bucket', () => client.send(new HeadBucketCommand({ Bucket: bucket })), 'bucket');
    } catch (e) {
      client.destroy();
      throw e;
    }
    return s;
  }

  private key(name: string): string {
    checkObjectName(name);
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  /** Turns an SDK failure into a verdict; `on` says whether a 404 means the bucket (HeadBucket). */
  private classify(e: unknown, on: 'bucket' | 'object'): Verdict {
    const st = status(e);
    const name = errName(e);
    const net = networkCode(e);
    if (st === undefined || net) {
      if (net || /timeout|socket|network|ECONN|EPIPE|aborted/i.test(`${name} ${(e as S3Error)?.message}`)) return { kind: 'transient', reason: `network error (${net ?? name})` };
      if (/credential/i.test(`${name} ${(e as S3Error)?.message}`)) {
        return { kind: 'permanent', reason: 'no credentials were found', hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)' };
      }
      return { kind: 'transient', reason: `network error (${name})` };
    }
    if (name === 'ConditionalRequestConflict' || transientStatus(st)) return { kind: 'transient', reason: `the server answered ${st} (${name})` };
    if (name === 'NoSuchBucket' || (st === 404 && on === 'bucket')) {
      return { kind: 'permanent', reason: `the bucket ${this.bucket} does not exist`, hint: 'create the bucket first, or check its name and the endpoint' };
    }
    if (st === 401 || st === 403 || /InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken|AccessDenied/.test(name)) {
      return {
        kind: 'permanent',
        reason: `the credentials were refused (${st} ${name})`,
        hint: 'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that they may read and write this bucket',
      };
    }
    if (st === 301 || /PermanentRedirect|AuthorizationHeaderMalformed|IllegalLocationConstraint/.test(name)) {
      return { kind: 'permanent', reason: `the bucket is in another region (${st} ${name})`, hint: 'pass the bucket region with ?region=... or AWS_REGION' };
    }
    return { kind: 'permanent', reason: `the server refused the request (${st} ${name})` };
  }

  private call<T>(what: string, fn: (attempt: number) => Promise<T>, on: 'bucket' | 'object' = 'object'): Promise<T> {
    return withRetry(this.label, what, this.retry, (e) => this.classify(e, on), fn);
  }

  async put(name: string, data: Uint8Array): Promise<void> {
    const key = this.key(name);
    const once = async (): Promise<void> => {
      // The HEAD check: all the write-once there is on stores that ignore If-None-Match.
      if (this.headCheck && (await this.statKey(key)) !== null) throw new ObjectExistsError(name);
      try {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length, ...(this.conditional ? { IfNoneMatch: '*' } : {}) }),
        );
      } catch (e) {
        if (status(e) === 412 || errName(e) === 'PreconditionFailed') throw new ObjectExistsError(name);
        if (status(e) === 501 && this.conditional) {
          this.conditional = false; // the store does not do conditional writes: the HEAD check remains
          this.headCheck = true;
          return once();
        }
        throw e;
      }
      if (!this.probed && this.conditional && name.startsWith('data/')) {
        this.probed = true;
        await this.probeConditional(key, data);
      }
    };
    await this.writes.put(name, data, (attempt) => this.call(`writing ${name}`, attempt), once, () => this.get(name).catch((e) => {
      if (e instanceof ObjectNotFoundError) return null;
      throw e;
    }));
  }

  /** Writes a data object again with If-None-Match: 412 means the store enforces it. Best effort. */
  private async probeConditional(key: string, data: Uint8Array): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length, IfNoneMatch: '*' }));
    } catch (e) {
      if (status(e) === 412 || errName(e) === 'PreconditionFailed') this.headCheck = false;
    }
  }

  /** Whether puts still make the HEAD check (true until the store has shown that it enforces If-None-Match). */
  get checksBeforePut(): boolean {
    return this.headCheck;
  }

  async get(name: string, range?: ByteRange, alloc?: (size: number) => Uint8Array): Promise<Uint8Array> {
    const key = this.key(name);
    if (range && range.length <= 0) {
      if ((await this.stat(name)) === null) throw new ObjectNotFoundError(name);
      return new Uint8Array(0);
    }
    return this.call(`reading ${name}`, async () => {
      let out;
      try {
        out = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}) }),
        );
      } catch (e) {
        if (errName(e) === 'NoSuchKey' || (status(e) === 404 && errName(e) !== 'NoSuchBucket')) throw new ObjectNotFoundError(name);
        if (status(e) === 416 || errName(e) === 'InvalidRange') return new Uint8Array(0); // the range starts past the end
        throw e;
      }
      const body = out.Body as Readable | undefined;
      const len = out.ContentLength ?? 0;
      // A store that ignored the Range sends the whole object: keep only the window (§4.4).
      const ignored = range !== undefined && !out.ContentRange;
      const skip = ignored ? range.offset : 0;
      const max = range ? range.length : len;
      if (!body) return new Uint8Array(0);
      const { bytes, complete } = await readWindow(body as AsyncIterable<Uint8Array>, { skip, max, declared: len, ...(alloc ? { alloc } : {}) });
      if (!complete) body.destroy();
      else if (bytes.length !== Math.max(0, Math.min(max, len - skip))) {
        throw Object.assign(new Error(`the response ended after ${bytes.length} of ${len} bytes`), { code: 'ECONNRESET' });
      }
      return bytes;
    });
  }

  private async statKey(key: string): Promise<{ size: number } | null> {
    try {
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: h.ContentLength ?? 0 };
    } catch (e) {
      if (status(e) === 404 && errName(e) !== 'NoSuchBucket') return null;
      throw e;
    }
  }

  async stat(name: string): Promise<{ size: number } | null> {
    const key = this.key(name);
    return this.call(`stat ${name}`, () => this.statKey(key));
  }

  async list(prefix: string): Promise<string[]> {
    const base = this.prefix ? `${this.prefix}/` : '';
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.call('listing', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base + prefix, ...(token ? { ContinuationToken: token } : {}) })),
      );
      for (const o of page.Contents ?? []) if (o.Key?.startsWith(base + prefix)) out.push(o.Key.slice(base.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async delete(name: string): Promise<void> {
    const key = this.key(name);
    await this.call(`deleting ${name}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  /** A completed PutObject is durable in S3. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.client.destroy();
  }
}
