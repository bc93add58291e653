/** What the user sees: progress on long work, readable errors with a hint, `--json` for scripts. */
import { CofferError, DamagedBackupError, LocalDiskError, StorageUnavailableError, UsageError, WrongKeyError, type Progress } from '@coffer/core';

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (b: boolean) => unknown };
  env: NodeJS.ProcessEnv;
}

/** Exit codes (README "Exit codes"): stable, so scripts can act on them. */
export const Exit = {
  ok: 0,
  failure: 1,
  usage: 2,
  wrongKey: 3,
  damaged: 4,
  storage: 5,
  keyDestroyed: 6,
  vault: 7,
  /** The backup completed, but left files out or stored files that kept changing (spec/format.md §6.2). */
  incomplete: 8,
  /** The local disk refused a restore's writes: full, read-only or no permission. */
  localDisk: 9,
} as const;

export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return Exit.usage;
  if (e instanceof WrongKeyError) return Exit.wrongKey;
  if (e instanceof DamagedBackupError) return Exit.damaged;
  if (e instanceof StorageUnavailableError) return Exit.storage;
  if (e instanceof LocalDiskError) return Exit.localDisk;
  if (e instanceof CofferError) {
    const byCode: Record<string, number> = {
      usage: Exit.usage, 'target-not-empty': Exit.usage, 'no-profile': Exit.usage, 'no-backup': Exit.usage,
    };
    return byCode[e.code] ?? Exit.failure;
  }
  // Errors of the vault client (@coffer/core/vault) carry a code of their own.
  const vaultCodes: Record<string, number> = {
    'wrong-password': Exit.wrongKey, 'key-destroyed': Exit.keyDestroyed, 'invalid-vault-config': Exit.usage, 'not-registered': Exit.vault,
    'vault-unavailable': Exit.vault, 'vault-rejected-request': Exit.vault, 'vault-unauthorized': Exit.vault, 'vault-protocol': Exit.vault, 'vault-busy': Exit.vault,
  };
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && code in vaultCodes) return vaultCodes[code]!;
  return Exit.failure;
}

export function reportError(io: Io, e: unknown, json: boolean): number {
  const code = exitCodeFor(e);
  const err = e as CofferError;
  const message = err instanceof Error ? err.message : String(e);
  const hint = (err as { hint?: string })?.hint;
  if (json) {
    io.stdout.write(JSON.stringify({ ok: false, error: { code: err?.code ?? 'error', name: err?.name, message, ...(hint ? { hint } : {}), exitCode: code } }) + '\n');
  } else {
    io.stderr.write(`coffer: ${message}\n`);
    if (hint) io.stderr.write(`  hint: ${hint}\n`);
    if (code === Exit.failure && io.env.COFFER_DEBUG && err?.stack) io.stderr.write(err.stack + '\n');
  }
  return code;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function formatBytes(n: number): string {
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${UNITS[u]}`;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  s = Math.round(s);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * Renders Progress: a redrawn bar on a terminal, a plain line every few seconds otherwise, and
 * JSON lines on stderr with --json. Rate is a moving average over the last few seconds.
 */
export class ProgressView {
  private readonly started = Date.now();
  // Plain output starts after the first interval, so quick commands print no progress at all.
  private last = 0;
  private samples: [number, number][] = [];
  private drawn = false;
  constructor(private readonly io: Io, private readonly mode: 'tty' | 'plain' | 'json' | 'quiet', private readonly verb: string) {
    if (mode === 'plain') this.last = this.started;
  }

  static for(io: Io, json: boolean, verb: string, quiet = false): ProgressView {
    return new ProgressView(io, quiet ? 'quiet' : json ? 'json' : io.stderr.isTTY ? 'tty' : 'plain', verb);
  }

  update = (p: Progress): void => {
    if (this.mode === 'quiet') return;
    const now = Date.now();
    const final = p.phase === 'done';
    const interval = this.mode === 'tty' ? 100 : this.mode === 'json' ? 1000 : 5000;
    if (!final && now - this.last < interval) return;
    this.last = now;
    this.samples.push([now, p.bytesDone]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    const rate = now > t0 ? ((p.bytesDone - b0) * 1000) / (now - t0) : 0;
    const eta = rate > 0 ? (p.bytesTotal - p.bytesDone) / rate : NaN;
    if (this.mode === 'json') {
      this.io.stderr.write(JSON.stringify({ progress: this.verb, ...p, rate: Math.round(rate), etaSeconds: Number.isFinite(eta) ? Math.round(eta) : null }) + '\n');
      return;
    }
    const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100;
    const text = `${this.verb} ${String(pct).padStart(3)}%  ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta)}  files ${p.filesDone}/${p.filesTotal}`;
    if (this.mode === 'tty') {
      const width = Math.max(10, Math.min(30, (this.io.stderr.columns ?? 80) - text.length - 4));
      const fill = Math.round((width * pct) / 100);
      this.io.stderr.write(`\r\x1b[2K[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${text}`);
      this.drawn = true;
    } else if (!final) {
      this.io.stderr.write(text + '\n');
    }
  };

  /** Clears the bar so the next line starts clean. */
  end(): void {
    if (this.drawn) this.io.stderr.write('\r\x1b[2K');
    this.drawn = false;
  }

  elapsedSeconds(): number {
    return (Date.now() - this.started) / 1000;
  }
}

/** Reads up to `n` lines from stdin (for --*-stdin flags); never echoes them. */
export async function readStdinLines(io: Io, n: number): Promise<string[]> {
  let data = '';
  for await (const chunk of io.stdin as AsyncIterable<Buffer | string>) {
    data += chunk.toString();
    if (data.split('\n').length > n) break;
  }
  return data.split('\n').slice(0, n).map((l) => l.replace(/\r$/, ''));
}

export async function readStdinLine(io: Io): Promise<string> {
  return (await readStdinLines(io, 1))[0] ?? '';
}

/** Asks for a secret on a terminal without echoing it. */
export async function promptSecret(io: Io, question: string): Promise<string> {
  const stdin = io.stdin;
  if (!stdin.isTTY || !stdin.setRawMode) throw new UsageError('no terminal to ask on', 'pass the secret on standard input with the matching --*-stdin flag');
  io.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    let s = '';
    for await (const chunk of stdin as AsyncIterable<Buffer>) {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return s;
        if (ch === '\u0003') throw new UsageError('cancelled');
        if (ch === '\u007f' || ch === '\b') s = s.slice(0, -1);
        else s += ch;
      }
    }
    return s;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    io.stderr.write('\n');
  }
}

/**
 * A name or text from a backup, safe to print on a terminal: control characters and bidirectional
 * overrides (which a backup's author could use to redraw the screen or disguise a name) are shown
 * as escapes.
 */
export function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Runs `cleanup` if the process is interrupted (Ctrl-C, SIGTERM), then exits with 128 + the signal's
 * number. Returns the function that stops watching.
 */
export function onInterrupt(cleanup: () => Promise<unknown>): () => void {
  const handler = (signal: NodeJS.Signals) => {
    const done = () => process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    setTimeout(done, 5000).unref();
    cleanup().then(done, done);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
