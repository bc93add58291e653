// Regenerates spec/vectors/ (spec/format.md §8). Run after `npm run build`: `npm run vectors`.
import { generateVectors } from '../packages/node/dist/test/vectors-gen.js';
const out = new URL('../spec/vectors/', import.meta.url).pathname;
const written = await generateVectors(out);
console.log(`wrote ${written.length} vectors to spec/vectors: ${written.join(', ')}`);
