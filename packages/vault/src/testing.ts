/**
 * `@coffer/vault/testing`: the conformance suites (node:test) that every Hsm and every RecordStore
 * implementation must pass, for those who write a new one.
 *
 * @packageDocumentation
 */
export { hsmConformance, type HsmFixture } from './hsm/conformance.js';
export { recordStoreConformance, type RecordStoreFixture } from './store/conformance.js';
