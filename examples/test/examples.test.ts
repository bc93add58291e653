import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { examples } from './run.js';

/** The repository (this file runs from examples/dist/test). */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

for (const [name, check] of Object.entries(examples)) {
  test(`examples/${name} runs and does what it says`, () => check(ROOT));
}

/** The READMEs: the root's, examples/, and one per package. */
async function readmes(): Promise<string[]> {
  const found = ['README.md', join('examples', 'README.md')];
  for (const dir of ['packages', 'apps']) {
    for (const p of await readdir(join(ROOT, dir))) if (existsSync(join(ROOT, dir, p, 'package.json'))) found.push(join(dir, p, 'README.md'));
  }
  return found;
}

test('every package has a README, and every code block marked as an example is in that example file, word for word (but for parts left out)', async () => {
  const cited = new Set<string>();
  for (const readme of await readmes()) {
    assert.ok(existsSync(join(ROOT, readme)), `${readme} is missing`);
    const text = await readFile(join(ROOT, readme), 'utf8');
    // <!-- example: examples/FILE --> followed by a fenced block.
    for (const m of text.matchAll(/<!-- example: (\S+) -->\n```\w*\n([\s\S]*?)\n```/g)) {
      const [, file, block] = m;
      assert.ok(existsSync(join(ROOT, file!)), `${readme} cites ${file}, which does not exist`);
      const source = await readFile(join(ROOT, file!), 'utf8');
      // A block may leave parts out at a line `// ...` (`# ...` in shell): each piece is in the file, in order.
      let from = 0;
      for (const piece of block!.split(/\n(?:\/\/|#) \.\.\.\n/)) {
        const at = source.indexOf(piece, from);
        assert.ok(at >= 0, `${readme}: a block cited from ${file} is not in that file, word for word (the example changed, or the README did):\n${piece}`);
        from = at + piece.length;
      }
      cited.add(file!.replace(/^examples\/browser\/.*/, 'examples/browser/'));
    }
  }
  for (const name of Object.keys(examples)) assert.ok(cited.has(`examples/${name}`), `no README shows examples/${name}`);
});
