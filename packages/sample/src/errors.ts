import { CofferError, ExitCode } from '@coffer/core';

/**
 * The one error type of this package, a CofferError (one error model across packages). It is
 * thrown for input the caller must fix (a bad size, a non-empty output folder, a folder that holds
 * no sample): the message says what to do, and the exit code is 2 (bad usage).
 */
export class SampleError extends CofferError {
  override name = 'SampleError';

  constructor(message: string, options?: { cause?: unknown }) {
    super('sample-input', message, { cause: options?.cause, hint: 'run `coffer-sample --help`', exitCode: ExitCode.usage });
  }
}
