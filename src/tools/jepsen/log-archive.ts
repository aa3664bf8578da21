import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LevelStorage } from '../../storage/index.ts';

/**
 * Copies of node logs that the membership nemesis would otherwise wipe, so that the
 * replay (raft-log.ts) still finds the whole committed log from the bootstrap at the
 * end of a long run.
 *
 * The nodes keep every entry behind their snapshots (compactionRetainEntries in the run's
 * config), but a node added again starts empty and is brought up from the leader's
 * latest snapshot, so once every founder has been removed and added back, no node holds
 * the entries before that snapshot. A stopped node's directory is copied just before it
 * is emptied; the copies are read with the live nodes, as more witnesses of the same
 * committed log (their entries are compared with the others' where they overlap).
 *
 * Kept: per first log index a copy holds (the entry after the snapshot its node was
 * brought up from; 2 for a log from the bootstrap), the copy with the highest commit
 * index. Each such copy covers its entries up to the point where a later
 * snapshot may have been taken from it, so together they cover the log from the
 * bootstrap, with a handful of copies rather than one per removal.
 */
export class LogArchive {
  private readonly kept = new Map<number, { dir: string; commitIndex: number }>();
  private copies = 0;

  constructor(private readonly root: string) {}

  /** Copies the stopped node's directory, if it holds a log, and keeps it if it adds any. */
  async beforeWipe(id: string, dataDir: string): Promise<void> {
    if (!existsSync(join(dataDir, 'CURRENT'))) return; // No database: never ran, or wiped.
    mkdirSync(this.root, { recursive: true });
    const copy = join(this.root, `${id}-${++this.copies}`);
    cpSync(dataDir, copy, { recursive: true });
    const { firstIndex, commitIndex } = await logExtent(copy);
    const best = this.kept.get(firstIndex);
    if (best !== undefined && best.commitIndex >= commitIndex) {
      rmSync(copy, { recursive: true, force: true });
      return;
    }
    if (best !== undefined) rmSync(best.dir, { recursive: true, force: true });
    this.kept.set(firstIndex, { dir: copy, commitIndex });
  }

  /** The kept copies, named after the node and the copy, for readCommittedLog. */
  directories(): { id: string; path: string }[] {
    return [...this.kept.values()].map(({ dir }) => ({
      id: `archive:${dir.slice(this.root.length + 1)}`,
      path: dir,
    }));
  }
}

async function logExtent(dir: string): Promise<{ firstIndex: number; commitIndex: number }> {
  const storage = await LevelStorage.open(dir);
  try {
    return {
      firstIndex: storage.firstIndex(),
      commitIndex: storage.initialState().hardState.commitIndex,
    };
  } finally {
    await storage.close();
  }
}
