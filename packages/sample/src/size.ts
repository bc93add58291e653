import { SampleError } from './errors.js';

/** Multipliers by lower-cased unit: SI (powers of 1000) and IEC (powers of 1024). */
const UNITS: Readonly<Record<string, number>> = {
  '': 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/**
 * Parses a byte count such as `500`, `64KiB`, `10MB`, `1GiB` or `1.5 GiB`. Units are
 * case-insensitive; `kB`/`MB`/`GB`/`TB` are powers of 1000, `KiB`/`MiB`/`GiB`/`TiB` powers of
 * 1024. Fractions are rounded to whole bytes.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(text);
  const multiplier = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  const bytes = match && multiplier !== undefined ? Math.round(Number(match[1]) * multiplier) : NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new SampleError(
      `Invalid size ${JSON.stringify(text)}: expected a number with an optional unit ` +
        '(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), for example "64MiB" or "1.5 GiB"',
    );
  }
  return bytes;
}

/** Formats a byte count with IEC units for humans, e.g. `1.50 GiB`. */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}
