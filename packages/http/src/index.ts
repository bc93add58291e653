/**
 * `@coffer/http`: {@link HttpStorage}, a Storage over an HTTP object store (spec/format.md §7.3),
 * for browser apps (and Node). The server half, for Node, is `@coffer/http/server`.
 *
 * @packageDocumentation
 */
export { HttpStorage } from './http-storage.js';
