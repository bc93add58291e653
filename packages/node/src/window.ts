/**
 * Reading one window of a response body without ever holding more than the window (spec/format.md
 * §4.4): a server that ignores a Range header sends the whole object, which may be gigabytes put
 * there by whoever controls the store; only `[skip, skip + max)` of it is kept, and reading stops
 * once that is in hand.
 */
export async function readWindow(
  body: AsyncIterable<Uint8Array>,
  options: { skip: number; max: number; declared?: number; alloc?: (n: number) => Uint8Array },
): Promise<{ bytes: Uint8Array; complete: boolean }> {
  const { skip, max } = options;
  const size = options.declared !== undefined && Number.isSafeInteger(options.declared) ? Math.max(0, Math.min(max, options.declared - skip)) : Math.min(max, 1 << 20);
  let buf = options.alloc ? options.alloc(size) : new Uint8Array(size);
  let at = 0; // position in the body
  let o = 0; // bytes kept
  for await (const piece of body) {
    const from = Math.max(0, skip - at);
    at += piece.length;
    if (from >= piece.length) continue;
    const take = piece.subarray(from, from + (max - o));
    if (o + take.length > buf.length) {
      const bigger = new Uint8Array(Math.min(max, Math.max(buf.length * 2, o + take.length)));
      bigger.set(buf.subarray(0, o));
      buf = bigger;
    }
    buf.set(take, o);
    o += take.length;
    if (o >= max) return { bytes: buf.subarray(0, o), complete: false };
  }
  return { bytes: buf.subarray(0, o), complete: true };
}
