/** `coffer migrate`: rewrites this device's version 1 store as version 2 (spec/format.md §10.2). */
import { hostname } from 'node:os';
import { migrate, type MigrateProgress, type MigrateResult } from '@coffer/core';
import { processAlive } from '@coffer/node';
import { openProfileBackup, parse, say } from './main.js';
import { Exit, formatBytes, printable, ProgressView, type Io } from './output.js';
import { saveProfile } from './profile.js';

/** At most this many damaged objects in a human-readable list; --json lists them all. */
const SHOWN = 10;

export async function cmdMigrate(io: Io, args: string[]): Promise<number> {
  const { values } = parse(args, { 'dry-run': { type: 'boolean' } }, 0);
  const json = !!values.json;
  const dryRun = !!values['dry-run'];
  const { home, profile, repo, indexCache } = await openProfileBackup(io, values);
  const view = ProgressView.for(io, json, 'migrate', values.quiet || dryRun, 'objects');
  const host = hostname();
  try {
    const r = await migrate(repo, {
      dryRun, indexCache, host, pid: process.pid,
      // A lock of a migration on this machine whose process is gone (killed) does not hold this one up.
      lockIsDead: (l) => l.host === host && l.pid !== process.pid && !processAlive(l.pid),
      onProgress: (p: MigrateProgress) => view.update({ phase: p.phase, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, filesDone: p.objectsDone, filesTotal: p.objectsTotal }),
    });
    view.end();
    // §10.2: the device that migrated pins the new config (§2).
    const pinned = !dryRun && profile.configMac !== r.config.mac;
    if (pinned) await saveProfile(home, { ...profile, configMac: r.config.mac! });
    const ok = r.damaged.length === 0;
    say(io, json, describe(r, view.elapsedSeconds()), { ...r, seconds: view.elapsedSeconds() }, ok);
    return ok ? Exit.ok : Exit.damaged;
  } finally {
    view.end();
  }
}

function describe(r: MigrateResult, seconds: number): string {
  const damaged = r.damaged.length
    ? `Warning: ${r.damaged.length} objects were already damaged and did not migrate; they stay in the store as they were:\n` +
      r.damaged.slice(0, SHOWN).map((d) => `  ${printable(d.object)}: ${d.reason}\n`).join('') +
      (r.damaged.length > SHOWN ? `  ... and ${r.damaged.length - SHOWN} more (--json lists them all)\n` : '') +
      'Run `coffer verify` to see which backups they affect.\n'
    : '';
  if (r.nothingToDo) return 'This store already uses backup format version 2: there is nothing to migrate.\n';
  if (r.dryRun) {
    const steps = [
      r.objectsPacked ? `copy ${r.objectsPacked} chunks (${formatBytes(r.bytesPacked)}) into packs` : '',
      r.objectsAlreadyPacked ? `skip ${r.objectsAlreadyPacked} chunks an interrupted migration already packed` : '',
      r.manifestsWritten ? `re-encode ${r.manifestsWritten} backups as version 2` : '',
      r.switched ? 'switch the store to version 2' : '',
      r.objectsDeleted + r.manifestsDeleted ? `remove ${r.objectsDeleted} version 1 chunks and ${r.manifestsDeleted} version 1 backup lists` : '',
    ].filter(Boolean);
    return `Dry run: nothing was changed. A migration would:\n${steps.map((s) => `  ${s}\n`).join('')}`;
  }
  const from = r.fromVersion === 1 ? 'Migrated the store to backup format version 2' : 'Finished migrating the store to backup format version 2';
  return (
    `${from} in ${seconds.toFixed(1)} s: ${r.objectsPacked} chunks (${formatBytes(r.bytesPacked)}) copied into ${r.packsWritten} packs` +
    `${r.objectsAlreadyPacked ? ` (${r.objectsAlreadyPacked} were packed already)` : ''}, ${r.manifestsWritten} backups re-encoded, ` +
    `${r.objectsDeleted + r.manifestsDeleted} version 1 objects removed. Every backup keeps its number.\n` +
    'This device now uses the new config; other devices switch to it the next time they connect.\n' +
    damaged
  );
}
