// The benchmarks' input: generated chat data, made once per size and kept in the output folder.
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateChatData } from '../packages/sample/dist/src/index.js';

/** `out/tree-<label>`, generated with a fixed seed unless a complete one is there already. */
export async function sampleTree(out, label, bytes, log = (s) => process.stderr.write(s + '\n')) {
  await mkdir(out, { recursive: true });
  const src = join(out, `tree-${label}`);
  if (!existsSync(join(src, '.complete'))) {
    log(`generating ${label} of chat data in ${src} ...`);
    await rm(src, { recursive: true, force: true });
    await generateChatData(src, { seed: 'bench', targetBytes: bytes });
    await writeFile(join(src, '.complete'), '');
  }
  return src;
}
