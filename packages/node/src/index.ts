/**
 * `@coffer/node`: the Node-only pieces of Coffer. A fast CryptoProvider on node:crypto, stores in a
 * local folder, on WebDAV and (subpath `@coffer/node/s3`) on S3, all behind one location string
 * ({@link openStorage}), with retries for stores that do not answer; a folder as a backup source
 * and a restore target; the chunk codec on worker threads; and an index cache in a folder.
 *
 * @packageDocumentation
 */
export { nodeCryptoProvider } from './crypto-node.js';
export { LocalStorage } from './local-storage.js';
export { WebDavStorage } from './webdav-storage.js';
export type { RemoteOptions } from './s3-storage.js';
export { openStorage, redactUrl, transferDefaults } from './storage-url.js';
export { DEFAULT_RETRY, StorageRefusedError, type RetryEvent, type RetryPolicy } from './retry.js';
export { FolderSource, FolderTarget, isEmptyOrMissing, processAlive, TargetNotEmptyError, type FolderSourceOptions, type FolderTargetOptions } from './fs-tree.js';
export { workerCodec } from './worker-codec.js';
export { FolderIndexCache } from './index-cache.js';
