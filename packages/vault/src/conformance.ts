// @coffer/vault/conformance: the shared conformance suites (node:test), for new Hsm and RecordStore implementations.
export { hsmConformance, type HsmFixture } from './hsm/conformance.js';
export { recordStoreConformance, type RecordStoreFixture } from './store/conformance.js';
