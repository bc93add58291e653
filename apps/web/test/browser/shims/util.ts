/** Browser stand-in for node:util's inspect: honours the custom inspect symbol as Node does. */
const custom = Symbol.for('nodejs.util.inspect.custom');

export function inspect(x: unknown, depth = 0): string {
  if (x !== null && typeof x === 'object' && typeof (x as Record<symbol, unknown>)[custom] === 'function') {
    return String((x as Record<symbol, () => unknown>)[custom]!());
  }
  if (typeof x === 'string') return `'${x}'`;
  if (x === null || typeof x !== 'object') return String(x);
  if (depth > 4) return '[Object]';
  if (ArrayBuffer.isView(x)) return `${x.constructor.name}(${(x as unknown as ArrayLike<number>).length}) [ ${Array.from(x as unknown as ArrayLike<number>).join(', ')} ]`;
  if (Array.isArray(x)) return `[ ${x.map((v) => inspect(v, depth + 1)).join(', ')} ]`;
  return `{ ${Object.entries(x).map(([k, v]) => `${k}: ${inspect(v, depth + 1)}`).join(', ')} }`;
}

export default { inspect };
