export * from './crypto-node.js';
export * from './local-storage.js';
export * from './worker-codec.js';
export * from './fs-tree.js';
export * from './storage-url.js';
