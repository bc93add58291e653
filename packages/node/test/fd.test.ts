import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, openSync, closeSync, fstatSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fd } from '../src/fd.js';

test('Fd: a close waits for calls in flight, a second close is the first, and no call reaches a closed descriptor', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-fd-'));
  try {
    const p = join(dir, 'f');
    await writeFile(p, Buffer.alloc(1 << 20, 7));
    const fd = await Fd.open(p, constants.O_RDONLY);
    const buf = new Uint8Array(1 << 20);
    const reading = fd.read(buf, 0, buf.length, 0);
    const closing = fd.close();
    assert.equal((await reading).bytesRead, 1 << 20, 'the read in flight finished on its own file');
    assert.ok(buf.every((b) => b === 7));
    await closing;
    await fd.close();
    await assert.rejects(fd.read(buf, 0, 1, 0), { code: 'EBADF' });
    // The number it had may now be another file's: that file stays open.
    const other = openSync(p, 'r');
    await fd.close();
    assert.doesNotThrow(() => fstatSync(other));
    closeSync(other);
    await assert.rejects(Fd.open(join(dir, 'missing'), constants.O_RDONLY), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
