/** Worker thread body for WorkerCodec: hashing and AES-GCM on another core. */
import { parentPort, workerData } from 'node:worker_threads';
import { CofferError, DamagedBackupError, inlineCodec, type DerivedKeys } from '@coffer/core';
import { nodeCryptoProvider } from './crypto-node.js';

const { keys, segmentSize } = workerData as { keys: DerivedKeys; segmentSize: number };
const codec = inlineCodec(nodeCryptoProvider, keys, segmentSize);

export type Request =
  | { op: 'seal'; n: number; data: Uint8Array }
  | { op: 'open'; n: number; id: string; data: Uint8Array; expectedLength: number; checkId: boolean };

const port = parentPort!;
port.on('message', async (m: Request) => {
  try {
    if (m.op === 'seal') {
      const { id, sealed } = await codec.seal(m.data);
      port.postMessage({ n: m.n, id, data: sealed }, [sealed.buffer as ArrayBuffer]);
    } else {
      const plain = await codec.open(m.id, m.data, m.expectedLength, m.checkId);
      port.postMessage({ n: m.n, data: plain }, [plain.buffer as ArrayBuffer]);
    }
  } catch (e) {
    const err = e as CofferError;
    port.postMessage({
      n: m.n,
      error: { name: err.name, message: err.message, reason: e instanceof DamagedBackupError ? e.reason : undefined, object: e instanceof DamagedBackupError ? e.object : undefined },
    });
  }
});
