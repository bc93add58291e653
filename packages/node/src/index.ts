export * from './crypto-node.js';
export * from './local-storage.js';
export * from './worker-codec.js';
export * from './fs-tree.js';
export * from './storage-url.js';
export * from './s3-storage.js';
export * from './webdav-storage.js';
export { StorageRefusedError, DEFAULT_RETRY, type RetryPolicy } from './retry.js';
export * from './index-cache.js';
