/**
 * Locks and journal records (spec/format.md §9.1-§9.3): small sealed JSON objects that let
 * backups, forgets and prunes of several devices share one store safely.
 */
import { fromUtf8, toHex, u64be, utf8, concat } from './bytes.js';
import { DamagedBackupError } from './errors.js';
import { idOf, journalName, lockName, parseJournalName } from './layout.js';
import { ObjectType, openObject, sealObject } from './object.js';
import { readBounded, storageCall, type Repository } from './repo.js';

const MAX_RECORD_BYTES = 1024 * 1024;
/** §9.3: a lock not refreshed for this long is stale. */
export const LOCK_STALE_MS = 30 * 60 * 1000;
/** §9.3: how often a running backup or prune refreshes its lock. */
export const LOCK_REFRESH_MS = 5 * 60 * 1000;
/** §9.2 (d): how long after its last refresh a holder still trusts its own lock (a margin before stale). */
export const LOCK_TRUSTED_MS = LOCK_STALE_MS - LOCK_REFRESH_MS;

export interface LockRecord {
  kind: 'backup' | 'prune' | 'migrate';
  host: string;
  pid: number;
  started: string;
  refreshed: string;
}

/** A journal record of forget or prune (spec/format.md §9): what it is about to delete. */
export type JournalRecord =
  | { kind: 'forget'; time: string; manifests: string[] }
  /** `unindexed`: packs no index listed at the mark (§9.2), deleted only if no index lists them by the sweep. */
  | { kind: 'prune'; time: string; packs: string[]; unindexed?: string[]; indexes: string[] };

/** A journal record's 32-byte binding id (§4.1): u64be(time) || random (8 bytes) || 16 zero bytes. */
const journalId = (timeMs: number, random: string) => toHex(concat(u64be(timeMs), fromHexPad(random)));
const fromHexPad = (random: string) => {
  const out = new Uint8Array(24);
  for (let i = 0; i < 8; i++) out[i] = parseInt(random.slice(2 * i, 2 * i + 2), 16);
  return out;
};

async function seal(repo: Repository, type: typeof ObjectType.journal | typeof ObjectType.lock, id: string, value: unknown): Promise<Uint8Array> {
  return sealObject(repo.crypto, repo.keys, { type, id }, utf8(JSON.stringify(value)), { segmentSize: repo.config.segmentSize });
}

async function open<T>(repo: Repository, type: typeof ObjectType.journal | typeof ObjectType.lock, id: string, name: string): Promise<T> {
  const sealed = await readBounded(repo.storage, name, MAX_RECORD_BYTES);
  const plain = await openObject(repo.crypto, repo.keys, { type, id }, sealed, name, { segmentSize: repo.config.segmentSize });
  try {
    return JSON.parse(fromUtf8(plain)) as T;
  } catch (e) {
    throw new DamagedBackupError('corrupt', name, { cause: e, detail: 'not JSON' });
  }
}

/* ------------------------------------------------------------------------------------------------
 * Journal (§9.1, §9.2)
 * --------------------------------------------------------------------------------------------- */

export async function writeJournal(repo: Repository, record: JournalRecord, now = Date.now()): Promise<string> {
  const random = toHex(repo.crypto.randomBytes(8));
  const name = journalName(now, random);
  await storageCall(repo.storage, `writing ${name}`, async () => repo.storage.put(name, await seal(repo, ObjectType.journal, journalId(now, random), record)));
  await storageCall(repo.storage, 'flush', () => repo.storage.flush());
  return name;
}

/** Every journal record that opens, oldest first; records that do not open are reported in `damaged`. */
export async function readJournal(repo: Repository): Promise<{ records: { name: string; timeMs: number; record: JournalRecord }[]; damaged: string[] }> {
  const names = (await storageCall(repo.storage, 'listing the journal', () => repo.storage.list('journal/'))).map(parseJournalName).filter((j) => j !== null);
  names.sort((a, b) => a.timeMs - b.timeMs || (a.name < b.name ? -1 : 1));
  const records: { name: string; timeMs: number; record: JournalRecord }[] = [];
  const damaged: string[] = [];
  for (const j of names) {
    try {
      records.push({ name: j.name, timeMs: j.timeMs, record: await open<JournalRecord>(repo, ObjectType.journal, journalId(j.timeMs, j.random), j.name) });
    } catch (e) {
      if (!(e instanceof DamagedBackupError)) throw e;
      damaged.push(j.name);
    }
  }
  return { records, damaged };
}

/** §9.2: packs condemned by prune records that are not swept yet (a backup must not use them). */
export async function condemnedPacks(repo: Repository): Promise<Set<string>> {
  const out = new Set<string>();
  if (repo.version === 1) return out;
  for (const { record } of (await readJournal(repo)).records) {
    if (record.kind === 'prune') for (const p of record.packs) out.add(idOf(p, 'packs') ?? p);
  }
  return out;
}

/* ------------------------------------------------------------------------------------------------
 * Locks (§9.3)
 * --------------------------------------------------------------------------------------------- */

export interface HeldLock {
  readonly name: string;
  readonly record: LockRecord;
  /**
   * True while the lock's last refresh is recent enough that no prune can have taken it for stale
   * (§9.2 (d)): a holder that was paused longer must not write what relies on the store's state.
   */
  fresh(nowMs: number): boolean;
  /** Removes the lock (and stops refreshing it). */
  release(): Promise<void>;
}

/** Takes a lock and refreshes it every LOCK_REFRESH_MS until released. */
export async function takeLock(repo: Repository, kind: LockRecord['kind'], who: { host: string; pid: number }, now: () => Date = () => new Date()): Promise<HeldLock> {
  const started = now().toISOString();
  let refreshedMs = Date.parse(started);
  const write = async (): Promise<string> => {
    const id = toHex(repo.crypto.randomBytes(32));
    const name = lockName(id);
    const at = now();
    const record: LockRecord = { kind, host: who.host, pid: who.pid, started, refreshed: at.toISOString() };
    await storageCall(repo.storage, `writing ${name}`, async () => repo.storage.put(name, await seal(repo, ObjectType.lock, id, record)));
    await storageCall(repo.storage, 'flush', () => repo.storage.flush());
    refreshedMs = at.getTime();
    return name;
  };
  let name = await write();
  let stopped = false;
  const timer = setInterval(() => {
    void (async () => {
      try {
        const next = await write();
        const old = name;
        name = next;
        await repo.storage.delete(old);
        if (stopped) await repo.storage.delete(next);
      } catch {
        // The next refresh tries again; a lock that cannot be refreshed goes stale, which is safe.
      }
    })();
  }, LOCK_REFRESH_MS);
  (timer as { unref?: () => void }).unref?.();
  return {
    get name() {
      return name;
    },
    record: { kind, host: who.host, pid: who.pid, started, refreshed: started },
    fresh(nowMs: number) {
      return nowMs - refreshedMs <= LOCK_TRUSTED_MS;
    },
    async release() {
      stopped = true;
      clearInterval(timer);
      await storageCall(repo.storage, `removing ${name}`, () => repo.storage.delete(name)).catch(() => {});
    },
  };
}

/** A lock found in the store (spec/format.md §9.3): who holds it, since when, and whether it is stale. */
export interface LockInfo extends LockRecord {
  name: string;
  stale: boolean;
}

/** Every lock in the store; locks that do not open are treated as stale. */
export async function listLocks(repo: Repository, nowMs = Date.now()): Promise<LockInfo[]> {
  const names = await storageCall(repo.storage, 'listing locks', () => repo.storage.list('locks/'));
  const out: LockInfo[] = [];
  for (const name of names) {
    const id = idOf(name, 'locks');
    if (!id) continue;
    try {
      const r = await open<LockRecord>(repo, ObjectType.lock, id, name);
      const refreshed = Date.parse(r.refreshed);
      out.push({ ...r, name, stale: !Number.isFinite(refreshed) || nowMs - refreshed > LOCK_STALE_MS });
    } catch (e) {
      if (!(e instanceof DamagedBackupError)) throw e;
      out.push({ kind: 'backup', host: '?', pid: 0, started: '', refreshed: '', name, stale: true });
    }
  }
  return out;
}
