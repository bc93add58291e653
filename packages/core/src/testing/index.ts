/**
 * `@coffer/core/testing`: for tests of code built on Coffer, never for production paths. The
 * storage conformance suite every Storage must pass, in-memory trees to back up and restore, and
 * the pieces to forge stored objects as a hostile store would (spec/format.md §4), for tests that
 * check what a reader refuses.
 *
 * @packageDocumentation
 */
export { storageConformance, type StorageCase } from '../storage-conformance.js';
export { MemorySource, MemoryTarget, sameTree, type MemFile } from './tree.js';
export { utf8 } from '../bytes.js';
export { deriveKeys } from '../keys.js';
export { manifestName } from '../layout.js';
export { ObjectType, sealedSize, sealObject, type Binding, type SealOptions } from '../object.js';
export { readJournal, type JournalRecord } from '../journal.js';
