// Runs one command in this process and reports its peak RSS (threads included) and wall time on fd 3
// as JSON: node bench/rss.mjs cli <coffer args...> | memory <dir> | ttfc <target>
import { writeSync } from 'node:fs';
process.env.UV_THREADPOOL_SIZE ??= '16'; // as bin/coffer.js does
const [what, ...args] = process.argv.slice(2);
const t0 = performance.now();
let extra = {};
let code = 0;
if (what === 'cli') {
  const { main } = await import('../packages/cli/dist/src/main.js');
  code = await main(args);
} else if (what === 'memory') {
  extra = await (await import('./memory-run.mjs')).run(args[0]);
} else if (what === 'ttfc') {
  extra = await (await import('./ttfc-run.mjs')).run(args[0]);
}
const result = { code, seconds: (performance.now() - t0) / 1000, maxRssMiB: process.resourceUsage().maxRSS / 1024, ...extra };
try {
  writeSync(3, JSON.stringify(result) + '\n');
} catch {
  console.error(JSON.stringify(result));
}
process.exitCode = code;
