/** Web Worker: names and seals chunks for `workerCodec` (worker-codec.ts) with Web Crypto. */
import { inlineCodec, webCryptoProvider, type ChunkCodec, type DerivedKeys } from '@coffer/core';

let codec: ChunkCodec | null = null;
const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown, transfer?: Transferable[]): void };

scope.onmessage = async (e: MessageEvent) => {
  const m = e.data as { init: true; keys: DerivedKeys; segmentSize: number } | { n: number; plaintext: Uint8Array };
  if ('init' in m) {
    codec = inlineCodec(webCryptoProvider, m.keys, m.segmentSize);
    return;
  }
  try {
    const { id, sealed } = await codec!.seal(m.plaintext);
    scope.postMessage({ n: m.n, id, sealed }, [sealed.buffer as ArrayBuffer]);
  } catch (err) {
    scope.postMessage({ n: m.n, error: `${(err as Error)?.name}: ${(err as Error)?.message}` });
  }
};
