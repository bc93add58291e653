import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DamagedBackupError, SecretKey } from '@coffer/core';
import { chunkId, HEADER_BYTES, openObject } from '#src/object.js';
import { deriveKeys, ObjectType, sealedSize, sealObject, type Binding } from '@coffer/core/testing';
import { providers } from './helpers.js';

const key = new SecretKey(new Uint8Array(32).fill(9));
const reason = (r: string) => (e: unknown) => e instanceof DamagedBackupError && e.reason === r;

for (const crypto of providers) {
  const other = providers.find((p) => p !== crypto)!;
  test(`objects round-trip for any size and segment size, across providers (${crypto.name})`, async () => {
    const keys = await deriveKeys(crypto, key);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), fc.constantFrom(1024, 1500, 4096), async (data, seg) => {
        const id = await chunkId(crypto, keys, data);
        const b: Binding = { type: ObjectType.data, id };
        const sealed = await sealObject(crypto, keys, b, data, { segmentSize: seg });
        assert.equal(sealed.length, sealedSize(data.length, seg));
        const opened = await openObject(other, keys, b, sealed, 'x', { segmentSize: seg });
        assert.deepEqual(opened, data);
      }),
      { numRuns: 60 },
    );
  });

  test(`every failure class gives its own error (${crypto.name})`, async () => {
    const keys = await deriveKeys(crypto, key);
    const seg = 1024;
    const data = crypto.randomBytes(seg * 3 + 100);
    const id = await chunkId(crypto, keys, data);
    const b: Binding = { type: ObjectType.data, id };
    const sealed = await sealObject(crypto, keys, b, data, { segmentSize: seg });
    const open = (s: Uint8Array, bb: Binding = b) => openObject(crypto, keys, bb, s, 'data/x', { segmentSize: seg });
    const full = seg + 16;

    // Truncation at every segment boundary is "truncated"; mid-segment cuts are "corrupt".
    for (const segments of [1, 2, 3]) await assert.rejects(open(sealed.slice(0, HEADER_BYTES + segments * full)), reason('truncated'));
    await assert.rejects(open(sealed.slice(0, HEADER_BYTES + full + 10)), reason('corrupt'));
    await assert.rejects(open(sealed.slice(0, 20)), reason('truncated'));
    // A flipped bit anywhere: header fields -> corrupt, binding tag -> misplaced, payload -> corrupt.
    for (const [at, r] of [[0, 'corrupt'], [5, 'corrupt'], [10, 'corrupt'], [30, 'misplaced'], [HEADER_BYTES + 5, 'corrupt'], [sealed.length - 1, 'corrupt']] as const) {
      const f = sealed.slice();
      f[at]! ^= 0x01;
      await assert.rejects(open(f), reason(r), `flip at ${at}`);
    }
    // Swapped segments.
    const swapped = sealed.slice();
    swapped.set(sealed.subarray(HEADER_BYTES, HEADER_BYTES + full), HEADER_BYTES + full);
    swapped.set(sealed.subarray(HEADER_BYTES + full, HEADER_BYTES + 2 * full), HEADER_BYTES);
    await assert.rejects(open(swapped), reason('corrupt'));
    // Appended data.
    const longer = new Uint8Array(sealed.length + 17);
    longer.set(sealed);
    await assert.rejects(open(longer), reason('corrupt'));
    // Another object stored under this name: misplaced.
    const other2 = crypto.randomBytes(100);
    const id2 = await chunkId(crypto, keys, other2);
    const sealed2 = await sealObject(crypto, keys, { type: ObjectType.data, id: id2 }, other2, { segmentSize: seg });
    await assert.rejects(open(sealed2), reason('misplaced'));
    // A manifest where a chunk should be: corrupt (wrong type).
    const m = await sealObject(crypto, keys, { type: ObjectType.manifest, backupId: new Uint8Array(16), seq: 1 }, data, { segmentSize: seg });
    await assert.rejects(open(m), reason('corrupt'));
    // A manifest of another sequence number: misplaced (rollback by renaming fails).
    await assert.rejects(
      openObject(crypto, keys, { type: ObjectType.manifest, backupId: new Uint8Array(16), seq: 2 }, m, 'manifests/2', { segmentSize: seg }),
      reason('misplaced'),
    );
    // A different key cannot open it (and is not told apart from corruption at this level).
    const keys2 = await deriveKeys(crypto, new SecretKey(new Uint8Array(32).fill(10)));
    await assert.rejects(openObject(crypto, keys2, b, sealed, 'x', { segmentSize: seg }), DamagedBackupError);
  });

  test(`empty objects have exactly one empty final segment (${crypto.name})`, async () => {
    const keys = await deriveKeys(crypto, key);
    const empty = new Uint8Array(0);
    const b: Binding = { type: ObjectType.data, id: await chunkId(crypto, keys, empty) };
    const sealed = await sealObject(crypto, keys, b, empty);
    assert.equal(sealed.length, HEADER_BYTES + 16);
    assert.equal((await openObject(crypto, keys, b, sealed, 'x')).length, 0);
  });

  test(`fresh salt per object: sealing the same chunk twice gives different bytes (${crypto.name})`, async () => {
    const keys = await deriveKeys(crypto, key);
    const d = new Uint8Array(100);
    const b: Binding = { type: ObjectType.data, id: await chunkId(crypto, keys, d) };
    const a1 = await sealObject(crypto, keys, b, d);
    const a2 = await sealObject(crypto, keys, b, d);
    assert.notDeepEqual(a1, a2);
    assert.ok(!Buffer.from(a1).includes(Buffer.from(d.subarray(0, 32))) || d.every((x) => x === 0));
  });
}
