/**
 * `coffer forget`, `coffer prune`, and `coffer backup DIR --keep-*` (spec/format.md §9): retention
 * and the reclaiming of space, with progress, `--json` and `--dry-run`.
 */
import { hostname } from 'node:os';
import { forget, prune, UsageError, type ForgetResult, type IndexCache, type LockInfo, type PruneResult, type Repository, type RetentionPolicy } from '@coffer/core';
import { processAlive } from '@coffer/node';
import type { listPaths, openProfileBackup, parse, say } from './main.js';
import { Exit, exitCodeFor, formatBytes, printable, ProgressView, type Io } from './output.js';

/** What these commands use of main.ts, handed over by it (so that this module does not import it). */
export interface Kit {
  parse: typeof parse;
  say: typeof say;
  openProfileBackup: typeof openProfileBackup;
  listPaths: typeof listPaths;
}

export const MAINTENANCE_HELP: Record<string, string> = {
  forget: `Usage: coffer forget --keep-last N [--keep-daily D] [--keep-weekly W] [--keep-monthly M] [--dry-run]
                    [--profile DIR] [--json]

Removes the backups the policy does not keep. Kept: the N newest backups, and the newest backup of
each of the D most recent days (UTC), W most recent weeks and M most recent months that have one.
The newest backup is always kept. Only the list of files of each removed backup goes; run
\`coffer prune\` to free the space their data alone used. With --dry-run, shows what would be
removed and changes nothing.
`,
  prune: `Usage: coffer prune [--dry-run] [--max-unused PERCENT] [--profile DIR] [--json] [--quiet]

Deletes the data that no kept backup needs, and repacks packs of which more than --max-unused
(10% by default) is unneeded, then says how many bytes it freed. Safe to interrupt at any point (run
it again to finish) and safe beside a backup running on another device: what such a backup may
still use waits for a later prune. With --dry-run, shows what it would do and changes nothing.
`,
};

/** The --keep-* options of `forget` (and of `backup`). */
export const keepOptions = {
  'keep-last': { type: 'string' },
  'keep-daily': { type: 'string' },
  'keep-weekly': { type: 'string' },
  'keep-monthly': { type: 'string' },
} as const;

type KeepValues = { [K in keyof typeof keepOptions]?: string | undefined };

/** The retention policy the --keep-* options give, or null when none is given. */
export function keepPolicy(values: KeepValues): RetentionPolicy | null {
  const number = (flag: keyof typeof keepOptions): number | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    if (!/^\d{1,6}$/.test(v)) throw new UsageError(`--${flag} takes a number of backups, not ${JSON.stringify(v)}`, `for example --${flag} 3`);
    return Number(v);
  };
  const policy: RetentionPolicy = {};
  const set = <K extends keyof RetentionPolicy>(k: K, v: number | undefined) => {
    if (v !== undefined) policy[k] = v;
  };
  set('keepLast', number('keep-last'));
  set('keepDaily', number('keep-daily'));
  set('keepWeekly', number('keep-weekly'));
  set('keepMonthly', number('keep-monthly'));
  return Object.keys(policy).length ? policy : null;
}

/** `--max-unused 10%` (a percentage; the % sign is optional) as a share between 0 and 1. */
export function parseMaxUnused(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d{1,3}(?:\.\d+)?)%?$/.exec(text.trim());
  const pct = m ? Number(m[1]) : NaN;
  if (!(pct >= 0 && pct <= 100)) throw new UsageError(`--max-unused takes a percentage between 0% and 100%, not ${JSON.stringify(text)}`, 'for example --max-unused 10%');
  return pct / 100;
}

/** §9.3: a lock written on this machine by a process that no longer runs counts as stale. */
const holderGone = (lock: LockInfo): boolean => lock.host === hostname() && lock.pid !== process.pid && !processAlive(lock.pid);

/** `1 pack`, `2 packs`. */
const count = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const backupList = (kit: Kit, bs: { seq: number; createdAt: string; reasons?: string[] }[]) =>
  kit.listPaths(bs.map((b) => `#${b.seq}  ${printable(b.createdAt)}${b.reasons ? `  (${b.reasons.join(', ')})` : ''}`));

function forgetText(kit: Kit, r: ForgetResult): string {
  const would = r.dryRun ? 'Would forget' : 'Forgot';
  let text = r.forgotten.length || r.finished.length
    ? `${would} ${count(r.forgotten.length + r.finished.length, 'backup')}:\n${backupList(kit, r.forgotten)}` +
      (r.finished.length ? `  and ${r.finished.length} that an interrupted forget had already chosen\n` : '')
    : 'No backup to forget.\n';
  text += `${r.dryRun ? 'Would keep' : 'Kept'} ${r.kept.length}:\n${backupList(kit, r.kept)}`;
  for (const u of r.unreadable) text += `Warning: ${printable(u.name)} does not open (${u.reason}); it is kept, and a prune stops on it.\n`;
  return text;
}

function pruneText(r: PruneResult, seconds?: number): string {
  const lines: string[] = [];
  if (r.earlierFinished) lines.push(`Finished ${count(r.earlierFinished, 'earlier prune')} that had been interrupted or had waited.`);
  const repacked = r.packsWritten ? `, after copying the ${formatBytes(r.bytesRepacked)} still needed from ${r.packs.mostlyUnused - r.damaged.length} of them into ${count(r.packsWritten, 'new pack')}` : '';
  if (r.dryRun) {
    lines.push(`Would delete ${count(r.packsDeleted, 'pack')} (${formatBytes(r.bytesDeleted)})${repacked}, freeing about ${formatBytes(Math.max(0, r.bytesFreed))}. Nothing was changed (--dry-run).`);
  } else {
    lines.push(`Pruned${seconds === undefined ? '' : ` in ${seconds.toFixed(1)} s`}: deleted ${count(r.packsDeleted, 'pack')} (${formatBytes(r.bytesDeleted)})${repacked}; freed ${formatBytes(Math.max(0, r.bytesFreed))}.`);
  }
  if (r.unindexedKept) lines.push(`${count(r.unindexedKept, 'pack')} of a backup that is running ${r.unindexedKept === 1 ? 'was' : 'were'} left alone.`);
  for (const w of r.waitingFor) {
    lines.push(`Waiting for a backup running on ${printable(w.host)} (process ${w.pid}, since ${printable(w.started)}): what this prune marked stays until a later \`coffer prune\`.`);
  }
  if (r.missing.length) lines.push(`Warning: the index lists ${count(r.missing.length, 'pack')} that the store lacks; they were left out of the index (\`coffer verify\` says whether a backup needs them).`);
  for (const d of r.damaged) lines.push(`Warning: ${printable(d.object)} is damaged (${d.reason}); its pack was kept. Run \`coffer verify\`.`);
  return lines.join('\n') + '\n';
}

/** Runs a prune with a progress view (the backup's flag uses it too). */
async function runPrune(io: Io, repo: Repository, indexCache: IndexCache, options: { json: boolean; quiet?: boolean | undefined; dryRun?: boolean; maxUnused?: number | undefined }) {
  const view = ProgressView.for(io, options.json, 'prune', options.quiet);
  try {
    const r = await prune(repo, {
      dryRun: !!options.dryRun, ...(options.maxUnused === undefined ? {} : { maxUnused: options.maxUnused }),
      indexCache, host: hostname(), pid: process.pid, holderGone, onProgress: view.update,
    });
    return { r, seconds: view.elapsedSeconds() };
  } finally {
    view.end();
  }
}

export async function cmdForget(io: Io, args: string[], kit: Kit): Promise<number> {
  const { values } = kit.parse(args, { ...keepOptions, 'dry-run': { type: 'boolean' } }, 0);
  const json = !!values.json;
  const policy = keepPolicy(values);
  if (!policy) throw new UsageError('say which backups to keep', 'for example `coffer forget --keep-last 3`, or --keep-daily 7 --keep-weekly 4');
  const { repo } = await kit.openProfileBackup(io, values);
  const r = await forget(repo, policy, { dryRun: !!values['dry-run'] });
  const hint = !r.dryRun && r.forgotten.length ? 'Run `coffer prune` to free the space that only these backups used.\n' : '';
  kit.say(io, json, forgetText(kit, r) + hint, { ...r });
  return Exit.ok;
}

export async function cmdPrune(io: Io, args: string[], kit: Kit): Promise<number> {
  const { values } = kit.parse(args, { 'dry-run': { type: 'boolean' }, 'max-unused': { type: 'string' } }, 0);
  const json = !!values.json;
  const maxUnused = parseMaxUnused(values['max-unused']);
  const { repo, indexCache } = await kit.openProfileBackup(io, values);
  const { r, seconds } = await runPrune(io, repo, indexCache, { json, quiet: values.quiet, dryRun: !!values['dry-run'], maxUnused });
  kit.say(io, json, pruneText(r, seconds), { ...r, seconds }, r.damaged.length === 0);
  return r.damaged.length ? Exit.damaged : Exit.ok;
}

/**
 * `backup DIR --keep-*`: forget, then prune, after the backup. A failure here does not undo the
 * backup: it is reported beside it (on stderr, or as `retention.error` with --json) with its exit code.
 */
export async function retainAfterBackup(
  io: Io,
  kit: Kit,
  repo: Repository,
  indexCache: IndexCache,
  policy: RetentionPolicy,
  options: { json: boolean; quiet?: boolean | undefined },
): Promise<{ human: string; data: Record<string, unknown>; code: number | null }> {
  let step = 'forget';
  try {
    const f = await forget(repo, policy);
    step = 'prune';
    const { r } = await runPrune(io, repo, indexCache, options);
    return { human: forgetText(kit, f) + pruneText(r), data: { forget: f, prune: r }, code: r.damaged.length ? Exit.damaged : null };
  } catch (e) {
    const err = e as Error & { code?: string; hint?: string };
    const code = exitCodeFor(e);
    if (!options.json) io.stderr.write(`coffer: the backup is done, but the ${step} after it failed: ${err.message}\n${err.hint ? `  hint: ${err.hint}\n` : ''}`);
    return { human: '', data: { retention: { step, error: { code: err.code ?? 'error', name: err.name, message: err.message, ...(err.hint ? { hint: err.hint } : {}), exitCode: code } } }, code };
  }
}
