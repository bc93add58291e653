/**
 * @coffer/sample: a deterministic generator of realistic chat data — a SQLite message database
 * and incompressible media — for tests, the demo and benchmarks.
 */
export { addActivity, type ActivityOptions, type ActivityResult } from './activity.js';
export { SCHEMA_VERSION } from './database.js';
export { SampleError } from './errors.js';
export {
  DEFAULT_NOW, MIN_TARGET_BYTES, generateChatData, type GenerateOptions, type SampleSummary,
} from './generate.js';
export { formatSize, parseSize } from './size.js';
