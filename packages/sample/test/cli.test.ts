import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli, type CliIo } from '../src/cli.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = { stdout: (text) => void (out += text), stderr: (text) => void (err += text) };
  const code = await cli(argv, io);
  return { code, out, err };
}

test('--help prints usage', async () => {
  const { code, out } = await run('--help');
  assert.equal(code, 0);
  assert.match(out, /^Usage:/);
});

test('bad usage exits with 2 and a readable message', async () => {
  for (const argv of [[], ['--bogus', 'x'], ['dir', '--size', 'huge'], ['a', 'b'], ['add'], ['add', 'dir', '--messages', 'many'], ['dir', '--photos', '1']]) {
    const { code, err } = await run(...argv);
    assert.equal(code, 2, argv.join(' '));
    assert.match(err, /^coffer-sample: .+\nRun "coffer-sample --help"/, argv.join(' '));
  }
});

test('generates and adds activity, printing a line or JSON', async () => {
  const root = await mkdtemp(join(tmpdir(), 'coffer-sample-cli-'));
  try {
    const dir = join(root, 'chat');
    const generated = await run(dir, '--size', '1MiB', '--seed', '42', '--json');
    assert.equal(generated.code, 0, generated.err);
    const summary = JSON.parse(generated.out) as { dir: string; bytes: number; messages: number };
    assert.equal(summary.dir, dir);
    assert.ok(Math.abs(summary.bytes - 2 ** 20) < 2 ** 20 * 0.1);

    const again = await run(dir, '--size', '1MiB');
    assert.equal(again.code, 2);
    assert.match(again.err, /not empty/);

    const added = await run('add', dir, '--messages', '20', '--photos', '1', '--seed', 'S');
    assert.equal(added.code, 0, added.err);
    assert.match(added.out, /^Added 20 messages and 1 photo to /);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
