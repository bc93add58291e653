/** Browser stand-in for node:test: `test` registers, `runRegistered` runs them in order. */
export interface BrowserCaseResult {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
}

type Fn = (t: unknown) => unknown;
const registered: { name: string; fn: Fn }[] = [];

export function test(name: string, fn: Fn): void {
  registered.push({ name, fn });
}

export async function runRegistered(prefix: string, onResult: (r: BrowserCaseResult) => void): Promise<void> {
  const mine = registered.splice(0);
  for (const { name, fn } of mine) {
    const start = performance.now();
    try {
      await fn({ name });
      onResult({ name: prefix + name, ok: true, ms: Math.round(performance.now() - start) });
    } catch (e) {
      const err = e as Error;
      onResult({ name: prefix + name, ok: false, ms: Math.round(performance.now() - start), error: `${err?.name}: ${err?.message}\n${err?.stack ?? ''}` });
    }
  }
}

export default test;
