/**
 * File system calls on Node's callback API, for the folder source and target: `Fd`, a file
 * descriptor with the few FileHandle methods they use, and `lstatBig`. Each call costs about half of
 * what fs/promises costs (measured on 20,000 small files: open, read, fstat and close in 390-490 ms
 * against 790-860 ms), which is much of a backup or restore of many small files.
 *
 * Like FileHandle, an Fd never closes its descriptor twice, nor while one of its own calls is in
 * flight: the number could meanwhile belong to another open file.
 */
import fs, { type BigIntStats } from 'node:fs';

export class Fd {
  private busy = 0;
  private closed: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  private constructor(private readonly fd: number) {}

  static open(path: string, flags: number, mode?: number): Promise<Fd> {
    return new Promise((resolve, reject) => fs.open(path, flags, mode, (e, fd) => (e ? reject(e) : resolve(new Fd(fd)))));
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return this.call((done) => fs.read(this.fd, buffer, offset, length, position, (e, bytesRead) => done(e, { bytesRead })));
  }

  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    return this.call((done) => fs.write(this.fd, buffer, offset, length, position, (e, bytesWritten) => done(e, { bytesWritten })));
  }

  stat(): Promise<BigIntStats> {
    return this.call((done) => fs.fstat(this.fd, { bigint: true }, (e, s) => done(e, s)));
  }

  chmod(mode: number): Promise<void> {
    return this.call((done) => fs.fchmod(this.fd, mode, (e) => done(e, undefined)));
  }

  utimes(atime: number, mtime: number): Promise<void> {
    return this.call((done) => fs.futimes(this.fd, atime, mtime, (e) => done(e, undefined)));
  }

  sync(): Promise<void> {
    return this.call((done) => fs.fsync(this.fd, (e) => done(e, undefined)));
  }

  /** Closes it once its calls in flight have finished; a second close waits for the first. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      if (this.busy > 0) await new Promise<void>((r) => (this.drained = r));
      await new Promise<void>((resolve, reject) => fs.close(this.fd, (e) => (e ? reject(e) : resolve())));
    })();
    return this.closed;
  }

  private call<T>(start: (done: (e: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
    if (this.closed) return Promise.reject(Object.assign(new Error('file descriptor closed'), { code: 'EBADF' }));
    this.busy++;
    return new Promise<T>((resolve, reject) => {
      start((e, value) => {
        if (--this.busy === 0) this.drained?.();
        if (e) reject(e);
        else resolve(value);
      });
    });
  }
}

/** lstat with bigint fields, on the callback API (the scan's one call per entry). */
export function lstatBig(path: string): Promise<BigIntStats> {
  return new Promise((resolve, reject) => fs.lstat(path, { bigint: true }, (e, st) => (e ? reject(e) : resolve(st))));
}
