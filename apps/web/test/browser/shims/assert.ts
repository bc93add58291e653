/** Browser stand-in for node:assert/strict: the calls the core tests make, with strict semantics. */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

function fail(message: string | undefined, fallback: string): never {
  throw new AssertionError(message ?? fallback);
}

function isDeepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (ArrayBuffer.isView(a)) {
    const x = a as unknown as ArrayLike<unknown>;
    const y = b as unknown as ArrayLike<unknown>;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
    return true;
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !isDeepEqual(v, b.get(k))) return false;
    return true;
  }
  if (a instanceof Set && b instanceof Set) return a.size === b.size && [...a].every((v) => b.has(v));
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && isDeepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

type Expected = RegExp | (new (...a: never[]) => unknown) | ((e: unknown) => boolean) | Record<string, unknown>;

function checkError(e: unknown, expected: Expected | undefined, message: string | undefined): void {
  if (expected === undefined) return;
  if (expected instanceof RegExp) {
    if (!expected.test(String((e as Error)?.message ?? e)) && !expected.test(String(e))) fail(message, `error ${String(e)} does not match ${expected}`);
    return;
  }
  if (typeof expected === 'function') {
    if (expected.prototype !== undefined && (expected.prototype instanceof Error || expected === Error)) {
      if (!(e instanceof (expected as new () => unknown))) fail(message, `expected ${(expected as { name: string }).name}, got ${String(e)}`);
      return;
    }
    if ((expected as (e: unknown) => boolean)(e) !== true) fail(message, `error ${String(e)} failed validation`);
    return;
  }
  for (const [k, v] of Object.entries(expected)) {
    const got = (e as Record<string, unknown>)[k];
    if (v instanceof RegExp ? !v.test(String(got)) : !isDeepEqual(got, v)) fail(message, `error.${k} is ${String(got)}, expected ${String(v)}`);
  }
}

function ok(value: unknown, message?: string): asserts value {
  if (!value) fail(message, `expected a truthy value, got ${String(value)}`);
}

const assert = Object.assign(ok, {
  ok,
  equal(a: unknown, b: unknown, message?: string) {
    if (!Object.is(a, b)) fail(message, `${String(a)} !== ${String(b)}`);
  },
  notEqual(a: unknown, b: unknown, message?: string) {
    if (Object.is(a, b)) fail(message, `${String(a)} === ${String(b)}`);
  },
  strictEqual(a: unknown, b: unknown, message?: string) {
    if (!Object.is(a, b)) fail(message, `${String(a)} !== ${String(b)}`);
  },
  deepEqual(a: unknown, b: unknown, message?: string) {
    if (!isDeepEqual(a, b)) fail(message, 'values are not deeply equal');
  },
  deepStrictEqual(a: unknown, b: unknown, message?: string) {
    if (!isDeepEqual(a, b)) fail(message, 'values are not deeply equal');
  },
  notDeepEqual(a: unknown, b: unknown, message?: string) {
    if (isDeepEqual(a, b)) fail(message, 'values are deeply equal');
  },
  match(s: string, re: RegExp, message?: string) {
    if (!re.test(s)) fail(message, `${JSON.stringify(s)} does not match ${re}`);
  },
  doesNotMatch(s: string, re: RegExp, message?: string) {
    if (re.test(s)) fail(message, `${JSON.stringify(s)} matches ${re}`);
  },
  fail(message?: string): never {
    fail(message, 'failed');
  },
  throws(fn: () => unknown, expected?: Expected | string, message?: string) {
    if (typeof expected === 'string') [message, expected] = [expected, undefined];
    try {
      fn();
    } catch (e) {
      checkError(e, expected, message);
      return;
    }
    fail(message, 'expected the function to throw');
  },
  async rejects(p: Promise<unknown> | (() => Promise<unknown>), expected?: Expected | string, message?: string) {
    if (typeof expected === 'string') [message, expected] = [expected, undefined];
    try {
      await (typeof p === 'function' ? p() : p);
    } catch (e) {
      checkError(e, expected, message);
      return;
    }
    fail(message, 'expected the promise to reject');
  },
  async doesNotReject(p: Promise<unknown> | (() => Promise<unknown>), message?: string) {
    try {
      await (typeof p === 'function' ? p() : p);
    } catch (e) {
      fail(message, `rejected with ${String(e)}`);
    }
  },
});

export default assert;
export const strict = assert;
