/**
 * The little of Node's Buffer the core tests and their libraries touch (from, isBuffer, includes of
 * a byte sequence, compare),
 * installed as a global before they load.
 */
class BrowserBuffer extends Uint8Array {
  static override from(x: unknown, enc?: unknown): BrowserBuffer {
    if (typeof x === 'string') {
      if (enc !== 'hex') return new BrowserBuffer(new TextEncoder().encode(x));
      const out = new BrowserBuffer(x.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = parseInt(x.slice(2 * i, 2 * i + 2), 16);
      return out;
    }
    const src = x as ArrayLike<number>;
    const out = new BrowserBuffer(src.length);
    out.set(src);
    return out;
  }
  static isBuffer(x: unknown): boolean {
    return x instanceof BrowserBuffer;
  }
  static compare(a: Uint8Array, b: Uint8Array): number {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
    return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  }
  override includes(needle: number | Uint8Array): boolean {
    if (typeof needle === 'number') return super.includes(needle);
    outer: for (let i = 0; i + needle.length <= this.length; i++) {
      for (let j = 0; j < needle.length; j++) if (this[i + j] !== needle[j]) continue outer;
      return true;
    }
    return false;
  }
}

(globalThis as Record<string, unknown>)['Buffer'] ??= BrowserBuffer;
export {};
