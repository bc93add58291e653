/**
 * Web Worker: names and seals chunks for `workerCodec` (worker-codec.ts) with Web Crypto, into an
 * output buffer the page lends it; the plaintext and output buffers go back (transferred) with
 * the result, to be lent again.
 */
import { chunkId, ObjectType, sealObject, webCryptoProvider as crypto, type DerivedKeys } from '@coffer/core';

let keys: DerivedKeys | null = null;
let segmentSize = 0;
const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown, transfer?: Transferable[]): void };

scope.onmessage = async (e: MessageEvent) => {
  const m = e.data as { init: true; keys: DerivedKeys; segmentSize: number } | { n: number; plaintext: Uint8Array; out: Uint8Array };
  if ('init' in m) {
    keys = m.keys;
    segmentSize = m.segmentSize;
    return;
  }
  const buffers = [m.plaintext.buffer as ArrayBuffer, m.out.buffer as ArrayBuffer];
  try {
    const id = await chunkId(crypto, keys!, m.plaintext);
    const sealed = await sealObject(crypto, keys!, { type: ObjectType.data, id }, m.plaintext, { segmentSize, into: m.out });
    scope.postMessage({ n: m.n, id, length: sealed.length, plaintext: m.plaintext, out: m.out }, buffers);
  } catch (err) {
    scope.postMessage({ n: m.n, error: `${(err as Error)?.name}: ${(err as Error)?.message}`, plaintext: m.plaintext, out: m.out }, buffers);
  }
};
