/** The `coffer-sample` command. */
import { parseArgs } from 'node:util';
import { addActivity } from './activity.js';
import { CofferError, UsageError } from '@coffer/core';
import { generateChatData } from './generate.js';
import { formatSize, parseSize } from './size.js';

const USAGE = `Usage:
  coffer-sample DIR [--size SIZE] [--seed SEED] [--now TIME] [--json]
  coffer-sample add DIR [--messages N] [--photos N] [--seed SEED] [--now TIME] [--json]

Writes a deterministic chat store (messages.db and media/) of about SIZE bytes into DIR,
which must be new or empty; or, with "add", appends a day of activity to an existing one.
The same seed and options always give byte-identical files. (A folder named "add": ./add)

Options:
  --size SIZE    total size, e.g. 500MB, 64MiB, 1.5GiB (default 64MiB)
  --seed SEED    any text (default 1)
  --now TIME     end of history: ISO date or ms since the epoch
                 (default 2025-06-01T18:00:00Z; for add, one day after the last message)
  --messages N   add: messages to append (default 100)
  --photos N     add: photos to add (default 2)
  --json         print the result as JSON
  -h, --help     show this help
`;

/** Where the command writes; tests pass their own. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};


const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

function count(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}

function time(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (Number.isNaN(ms)) throw new UsageError(`--now must be an ISO date or milliseconds since the epoch, got ${JSON.stringify(text)}`);
  return ms;
}

/** Runs the command with `argv` (without node and script) and returns the exit code. */
export async function cli(argv: string[], io: CliIo = processIo): Promise<number> {
  const started = performance.now();
  const seconds = (): number => Math.round(performance.now() - started) / 1000;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        size: { type: 'string' },
        seed: { type: 'string' },
        now: { type: 'string' },
        messages: { type: 'string' },
        photos: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.stdout(USAGE);
      return 0;
    }
    const adding = positionals[0] === 'add';
    const [dir, ...extra] = adding ? positionals.slice(1) : positionals;
    if (dir === undefined) throw new UsageError('missing DIR, the folder to write to');
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    const seed = values.seed ?? '1';
    const now = time(values.now);

    if (adding) {
      if (values.size !== undefined) throw new UsageError('--size does not apply to "add"');
      const result = await addActivity(dir, {
        seed, now, messages: count('messages', values.messages, 100), photos: count('photos', values.photos, 2),
      });
      io.stdout(
        values.json
          ? `${JSON.stringify({ dir, ...result, seconds: seconds() })}\n`
          : `Added ${plural(result.messagesAdded, 'message')} and ${plural(result.newFiles.length, 'photo')} to ${dir} in ${seconds()} s\n`,
      );
      return 0;
    }
    if (values.messages !== undefined || values.photos !== undefined) {
      throw new UsageError('--messages and --photos apply only to "add"');
    }
    const summary = await generateChatData(dir, { seed, now, targetBytes: parseSize(values.size ?? '64MiB') });
    io.stdout(
      values.json
        ? `${JSON.stringify({ dir, ...summary, seconds: seconds() })}\n`
        : `Generated ${formatSize(summary.bytes)} in ${dir} in ${seconds()} s: ${plural(summary.messages, 'message')} in ` +
            `${plural(summary.conversations, 'conversation')} (database ${formatSize(summary.databaseBytes)}), ` +
            `${plural(summary.photos, 'photo')}, ${plural(summary.voiceNotes, 'voice note')}, ${plural(summary.videos, 'video')}; ` +
            `${plural(summary.files, 'file')} in ${plural(summary.folders, 'folder')}\n`,
    );
    return 0;
  } catch (error) {
    // Mistakes in the command line (ours, and parseArgs') and in its input exit 2 (bad usage).
    const usage = (error instanceof CofferError && error.exitCode === 2) || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    if (!usage) {
      io.stderr(`coffer-sample: ${(error as Error)?.stack ?? String(error)}\n`);
      return 1;
    }
    io.stderr(`coffer-sample: ${(error as Error).message}\nRun "coffer-sample --help" for usage.\n`);
    return 2;
  }
}
