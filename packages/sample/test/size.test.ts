import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatSize, parseSize, SampleError } from '../src/index.js';

test('parseSize accepts plain, SI and IEC sizes in any case', () => {
  const cases: [string, number][] = [
    ['500', 500], ['0', 0], ['12B', 12], ['64KiB', 65_536], ['64kib', 65_536], ['10MB', 10_000_000],
    ['10mb', 10_000_000], ['1kB', 1000], ['1GiB', 2 ** 30], ['1.5 GiB', 1.5 * 2 ** 30], [' 2 TB ', 2e12],
    ['0.5MiB', 524_288], ['1TiB', 2 ** 40], ['.5 KiB', 512],
  ];
  for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
});

test('parseSize names the bad input', () => {
  for (const text of ['', 'ten', '10 XB', '-5MB', '1e6', '1,5GiB', '10 M B', 'GiB', '99999999999 TiB']) {
    assert.throws(() => parseSize(text), (e) => e instanceof SampleError && e.message.includes(JSON.stringify(text)), text);
  }
});

test('formatSize uses IEC units', () => {
  assert.equal(formatSize(512), '512 B');
  assert.equal(formatSize(1536), '1.50 KiB');
  assert.equal(formatSize(2 ** 30), '1.00 GiB');
});
