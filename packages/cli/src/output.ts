/** What the user sees: progress on long work, readable errors with a hint, `--json` for scripts. */
import { CofferError, ExitCode, UsageError, type Progress } from '@coffer/core';
import type { RetryEvent } from '@coffer/node';

/** The streams and environment a `coffer` command uses (process's own by default). */
export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (b: boolean) => unknown };
  env: NodeJS.ProcessEnv;
}

/** Exit codes (README "Exit codes"): one table for every package, in @coffer/core. */
export const Exit = ExitCode;

/** Every error Coffer throws on purpose is a CofferError that names its exit code; anything else is a failure (1). */
export function exitCodeFor(e: unknown): number {
  return e instanceof CofferError ? e.exitCode : Exit.failure;
}

export function reportError(io: Io, e: unknown, json: boolean): number {
  const code = exitCodeFor(e);
  const message = e instanceof Error ? e.message : String(e);
  const hint = e instanceof CofferError ? e.hint : undefined;
  if (json) {
    const error = e instanceof CofferError ? e.toJSON() : { code: 'error', name: e instanceof Error ? e.name : undefined, message, exitCode: code };
    io.stdout.write(JSON.stringify({ ok: false, error }) + '\n');
  } else {
    io.stderr.write(`coffer: ${message}\n`);
    if (hint) io.stderr.write(`  hint: ${hint}\n`);
    if (code === Exit.failure && io.env.COFFER_DEBUG && e instanceof Error && e.stack) io.stderr.write(e.stack + '\n');
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
/** What a progress line shows: a backup's, restore's or verify's Progress, or a migration's (with objects for files). */
export type Shown = Pick<Progress, 'bytesDone' | 'bytesTotal' | 'filesDone' | 'filesTotal'> & { phase: string };

export class ProgressView {
  private readonly started = Date.now();
  // Plain output starts after the first interval, so quick commands print no progress at all.
  private last = 0;
  private samples: [number, number][] = [];
  private drawn = false;
  constructor(private readonly io: Io, private readonly mode: 'tty' | 'plain' | 'json' | 'quiet', private readonly verb: string, private readonly unit = 'files') {
    if (mode === 'plain') this.last = this.started;
  }

  static for(io: Io, json: boolean, verb: string, quiet = false, unit = 'files'): ProgressView {
    return new ProgressView(io, quiet ? 'quiet' : json ? 'json' : io.stderr.isTTY ? 'tty' : 'plain', verb, unit);
  }

  update = (p: Shown): void => {
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
    const text = `${this.verb} ${String(pct).padStart(3)}%  ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta)}  ${this.unit} ${p.filesDone}/${p.filesTotal}`;
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

/**
 * What the user sees while the store does not answer (the retry layer's events, spec/format.md
 * §7.2): "waiting for the store", why, and for how long it will still be tried. At most one line
 * every 2 s however many requests wait; JSON lines with --json; nothing with --quiet.
 */
export function storeWaitNotice(io: Io, json: boolean, quiet = false): (e: RetryEvent) => void {
  let last = -Infinity;
  return (e) => {
    const now = Date.now();
    if (quiet || now - last < 2000) return;
    last = now;
    const left = Math.ceil(e.giveUpInMs / 1000);
    if (json) {
      io.stderr.write(JSON.stringify({ waiting: 'store', store: e.store, reason: e.reason, failingForSeconds: Math.round(e.failingForMs / 1000), giveUpInSeconds: left }) + '\n');
    } else {
      io.stderr.write(`${io.stderr.isTTY ? '\r\x1b[2K' : ''}coffer: waiting for the store: ${e.reason}; trying again for up to ${left} s\n`);
    }
  };
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
