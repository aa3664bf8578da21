import { execFileSync } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * A small tmpfs of its own under each node's data directory, so that one node's disk
 * can be filled up (a ballast file) without touching the others' or the machine's.
 * Mounted before any node starts: a node spawned in a network namespace gets a mount
 * namespace of its own from `ip netns exec`, a copy of the mounts made before it.
 */
export class NodeDisks {
  private constructor(
    /** Node id → its data directory, a tmpfs mount point. */
    private readonly dirs: ReadonlyMap<string, string>,
    readonly sizeBytes: number,
  ) {}

  /** Mounts one tmpfs per node, or says why it cannot (and mounts none). */
  static mount(
    dirs: ReadonlyMap<string, string>,
    sizeBytes: number,
  ): { disks: NodeDisks; skipped: null } | { disks: null; skipped: string } {
    if (process.platform !== 'linux') return { disks: null, skipped: `tmpfs is Linux's` };
    if (process.getuid?.() !== 0) return { disks: null, skipped: 'not root: cannot mount tmpfs' };
    const mounted = new Map<string, string>();
    try {
      for (const [id, dir] of dirs) {
        mkdirSync(dir, { recursive: true });
        execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', dir], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        mounted.set(id, dir);
      }
    } catch (error) {
      for (const dir of mounted.values()) unmount(dir);
      return { disks: null, skipped: `mount -t tmpfs failed: ${errorLine(error)}` };
    }
    return { disks: new NodeDisks(mounted, sizeBytes), skipped: null };
  }

  /**
   * Fills the node's tmpfs with a ballast file until the kernel says ENOSPC, and
   * returns how many bytes it took. What is left is the slack in pages the node's
   * files already own, so its next few small writes may still land.
   */
  fill(id: string): number {
    const fd = openSync(this.ballastPath(id), 'a');
    let written = 0;
    try {
      // Large chunks first, then page-sized ones for the remainder; each loop ends at
      // ENOSPC, and within the mount's size in any case.
      for (const chunkBytes of [1 << 20, 4_096]) {
        const chunk = Buffer.alloc(chunkBytes);
        for (let i = 0; i <= this.sizeBytes / chunkBytes; i++) {
          const wrote = writeOrFull(fd, chunk);
          written += wrote;
          if (wrote < chunkBytes) break;
        }
      }
    } finally {
      closeSync(fd);
    }
    return written;
  }

  /** Removes the ballast: the node's writes fit again. */
  drain(id: string): void {
    rmSync(this.ballastPath(id), { force: true });
  }

  /**
   * Unmounts every tmpfs, leaving what the node stored on the ordinary filesystem in its
   * place (the checkers read the nodes' databases after the run, and a passed run
   * removes the cluster's directory, which it could not do across a mount). A directory
   * without a database (a node that never ran, or was wiped) is left out.
   */
  release(): void {
    for (const [id, dir] of this.dirs) {
      this.drain(id);
      const kept = `${dir}.kept`;
      const holdsDatabase = existsSync(join(dir, 'CURRENT'));
      if (holdsDatabase) cpSync(dir, kept, { recursive: true });
      unmount(dir);
      rmSync(dir, { recursive: true, force: true });
      if (holdsDatabase) renameSync(kept, dir);
    }
  }

  private ballastPath(id: string): string {
    const dir = this.dirs.get(id);
    if (dir === undefined) throw new Error(`no tmpfs for node ${id}`);
    // LevelDB leaves alone the files in its directory whose names it does not use.
    return join(dir, 'ballast');
  }
}

/** Bytes written, fewer than asked (maybe none) once the filesystem is full. */
function writeOrFull(fd: number, chunk: Buffer): number {
  try {
    return writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOSPC') return 0;
    throw error;
  }
}

/** A plain unmount, or a lazy one if a process (a node's namespace) still has it. */
function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
}

function errorLine(error: unknown): string {
  const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
  return stderr || (error instanceof Error ? error.message : String(error));
}

/**
 * Removes what a data directory holds but not the directory itself, which may be a
 * mount point (a node's tmpfs), and creates it if missing.
 */
export function emptyDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
}
