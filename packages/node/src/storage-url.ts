/** Opens a Storage from what a user typed: a `file://` URL or a path. */
import { fileURLToPath } from 'node:url';
import { MemoryStorage, UsageError, type Storage } from '@coffer/core';
import { LocalStorage } from './local-storage.js';

/** The URL with any password or token removed, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of [...u.searchParams.keys()]) if (/secret|token|key|sig|password|credential/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return url;
  }
}

export async function openStorage(location: string, options: { create?: boolean } = {}): Promise<Storage> {
  if (!location) throw new UsageError('no storage location given', 'pass --storage with a folder path or a file:// URL');
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
  throw new UsageError(`storage type ${scheme}:// is not supported yet`, 'use a folder path or a file:// URL');
}
