/** Worker thread body for workerCodec: core's codec requests, answered with OpenSSL (spec/format.md §3, §4). */
import { parentPort } from 'node:worker_threads';
import { answerCodecRequest, type CodecRequest, type CodecWorkerInit } from '@coffer/core/adapters';
import { nodeCryptoProvider as crypto } from './crypto-node.js';
import { minorGcEvery } from './gc.js';

const collectGarbage = minorGcEvery(2);
const port = parentPort!;
let init: CodecWorkerInit | null = null;
port.on('message', async (m: unknown) => {
  if (!init) {
    init = m as CodecWorkerInit;
    return;
  }
  collectGarbage();
  const { reply, transfer } = await answerCodecRequest(crypto, init, m as CodecRequest);
  port.postMessage(reply, transfer);
});
