/** Web Worker: core's codec requests (naming, sealing, opening chunks), answered with Web Crypto. */
import { webCryptoProvider } from '@coffer/core';
import { answerCodecRequest, type CodecRequest, type CodecWorkerInit } from '@coffer/core/adapters';

let init: CodecWorkerInit | null = null;
const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown, transfer?: Transferable[]): void };

scope.onmessage = async (e: MessageEvent) => {
  if (!init) {
    init = e.data as CodecWorkerInit;
    return;
  }
  const { reply, transfer } = await answerCodecRequest(webCryptoProvider, init, e.data as CodecRequest);
  scope.postMessage(reply, transfer);
};
