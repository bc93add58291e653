/**
 * Opens a Storage from what a user typed: a path, `file://`, `s3://bucket/prefix?...`,
 * `webdav://host/path` or `webdavs://host/path`. Secrets belong in environment variables (AWS_*,
 * COFFER_WEBDAV_*): the profile keeps the location as typed, and only `redactUrl` of it is printed.
 */
import { fileURLToPath } from 'node:url';
import { MemoryStorage, UsageError, type Storage } from '@coffer/core';
import { LocalStorage } from './local-storage.js';
import { redactUrl } from './redact.js';
import type { RemoteOptions } from './s3-storage.js';
import { WebDavStorage } from './webdav-storage.js';

export { redactUrl };

/** Opens the store a location names: a folder path or file:// URL, s3://bucket/prefix, webdav(s)://host/path, or memory: (tests). `create` makes a missing folder. */
export async function openStorage(location: string, options: { create?: boolean } & RemoteOptions = {}): Promise<Storage> {
  if (!location) throw new UsageError('no storage location given', 'pass --storage with a folder path, a file://, s3:// or webdav:// URL');
  if (location === 'memory:') return new MemoryStorage();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase();
  if (scheme === undefined) return LocalStorage.open(location, options);
  if (scheme === 'file') {
    let path: string;
    try {
      path = fileURLToPath(location);
    } catch (e) {
      throw new UsageError(`${redactUrl(location)} is not a valid file:// URL`, 'use file:///absolute/path or a plain path');
    }
    return LocalStorage.open(path, options);
  }
  // The AWS SDK is large: it loads only for s3:// locations.
  if (scheme === 's3') return (await import('./s3-storage.js')).S3Storage.open(location, options);
  if (scheme === 'webdav' || scheme === 'webdavs') return WebDavStorage.open(location, options);
  throw new UsageError(`storage type ${scheme}:// is not supported`, 'use a folder path, or a file://, s3://, webdav:// or webdavs:// URL');
}

/**
 * How much to keep in flight for a kind of store (issue 14: parallel I/O for cloud stores): a local
 * folder streams one pack at a time and reads a little ahead; a network store keeps several packs
 * going up and reads further ahead, to hide each request's round trip.
 */
export function transferDefaults(location: string): { packsInFlight: number; readAhead: number } {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase();
  const remote = scheme === 's3' || scheme === 'webdav' || scheme === 'webdavs';
  return remote ? { packsInFlight: 3, readAhead: 32 * 1024 * 1024 } : { packsInFlight: 1, readAhead: 8 * 1024 * 1024 };
}
