// Shared by the vault benchmarks: one `coffer vault serve` child process (free port, rate limits
// off, warn logs) and what /proc says about a process: its CPU time and its peak memory (Linux).
// BENCH_NODE_ARGS passes options to the server's node, e.g. "--cpu-prof --cpu-prof-dir=DIR".

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'coffer-vault.js');

/** Fields of /proc/PID/stat after the command name (utime is [11], stime [12], in 1/100 s). */
export function procStat(pid) {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
}

/** User + system CPU seconds a process has used so far. */
export function cpuSeconds(pid) {
  const f = procStat(pid);
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Peak resident memory (VmHWM) of a process, MiB. */
export function peakRssMiB(pid = process.pid) {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
}

/** Starts `coffer vault serve --data-dir DIR ...extraArgs` and waits until it listens. */
export async function startServe(dir, extraArgs = []) {
  const nodeArgs = process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [];
  const args = [...nodeArgs, BIN, 'serve', '--data-dir', dir, '--port', '0', '--json', '--log-level', 'warn', '--account-rate', '0', '--address-rate', '0', ...extraArgs];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    child.once('exit', (c) => reject(new Error(`coffer vault serve exited with ${c}`)));
    child.stdout.setEncoding('utf8').on('data', (d) => {
      buf += d;
      const m = /"url":"([^"]+)"/.exec(buf);
      if (m) resolve(m[1]);
    });
  });
  return {
    child,
    url,
    cpuSeconds: () => cpuSeconds(child.pid),
    peakRssMiB: () => peakRssMiB(child.pid),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
