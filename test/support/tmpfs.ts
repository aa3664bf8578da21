import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A small tmpfs, to fill a disk for real (needs root): the disk-full tests mount one,
 * fill it with a ballast file, and unmount it after each test.
 */
export const isRoot = process.platform === 'linux' && process.getuid?.() === 0;

export class Tmpfs {
  private mountPoint: string | null = null;

  constructor(
    readonly bytes: number,
    private readonly prefix: string,
  ) {}

  mount(): string {
    const dir = mkdtempSync(join(tmpdir(), this.prefix));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${this.bytes}`, 'tmpfs', dir]);
    this.mountPoint = dir;
    return dir;
  }

  /** Lazily: a test that failed half-way may have left a database open on it. */
  unmount(): void {
    if (this.mountPoint === null) return;
    execFileSync('umount', ['-l', this.mountPoint]);
    rmSync(this.mountPoint, { recursive: true, force: true });
    this.mountPoint = null;
  }

  /** Writes zeros into `path` until the filesystem is full. */
  fill(path: string): void {
    const fd = openSync(path, 'a');
    const page = Buffer.alloc(4_096);
    try {
      for (let i = 0; i <= this.bytes / page.length; i++) writeSync(fd, page);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      closeSync(fd);
    }
  }
}
