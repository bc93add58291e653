/**
 * The one error type of this package. It is thrown for input the caller must fix (a bad size,
 * a non-empty output folder, a folder that holds no sample): the message says what to do.
 */
export class SampleError extends Error {
  override name = 'SampleError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
