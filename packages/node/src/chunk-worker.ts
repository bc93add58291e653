/** Worker thread body for workerCodec: hashing and AES-GCM on another core (spec/format.md §3, §4). */
import { parentPort, workerData } from 'node:worker_threads';
import { chunkId, DamagedBackupError, dataObjectName, ObjectType, openObject, sealObject, type DerivedKeys } from '@coffer/core';
import { nodeCryptoProvider as crypto } from './crypto-node.js';
import { minorGcEvery } from './gc.js';

const { keys, segmentSize } = workerData as { keys: DerivedKeys; segmentSize: number };

export type Request =
  | { op: 'seal'; n: number; data: Uint8Array; out: Uint8Array }
  | { op: 'open'; n: number; id: string; data: Uint8Array; out: Uint8Array; expectedLength: number; checkId: boolean };

const collectGarbage = minorGcEvery(2);

const port = parentPort!;
port.on('message', async (m: Request) => {
  collectGarbage();
  // The input buffer goes back to the main thread with the answer, to be reused.
  const input = m.data.buffer as ArrayBuffer;
  try {
    if (m.op === 'seal') {
      const id = await chunkId(crypto, keys, m.data);
      const sealed = await sealObject(crypto, keys, { type: ObjectType.data, id }, m.data, { segmentSize, into: m.out });
      port.postMessage({ n: m.n, id, data: sealed, input }, [sealed.buffer as ArrayBuffer, input]);
    } else {
      const name = dataObjectName(m.id);
      const plain = await openObject(crypto, keys, { type: ObjectType.data, id: m.id }, m.data, name, { segmentSize, expectedLength: m.expectedLength, into: m.out });
      if (m.checkId && (await chunkId(crypto, keys, plain)) !== m.id) throw new DamagedBackupError('misplaced', name, { detail: 'content does not match its name' });
      port.postMessage({ n: m.n, data: plain, input }, [plain.buffer as ArrayBuffer, input]);
    }
  } catch (e) {
    const err = e as Error;
    port.postMessage({
      n: m.n,
      error: { name: err.name, message: err.message, reason: e instanceof DamagedBackupError ? e.reason : undefined, object: e instanceof DamagedBackupError ? e.object : undefined },
    });
  }
});
