/**
 * `@coffer/cli`: the `coffer` command, callable from a program: {@link main} runs one command line
 * with the streams and environment given, and returns its exit code (README "Exit codes").
 *
 * @packageDocumentation
 */
export { main } from './main.js';
export type { Io } from './output.js';
