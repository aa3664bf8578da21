import type { Ready } from '../raft/index.ts';
import type { HardState } from '../raft/types.ts';
import type { PersistBatch } from '../storage/index.ts';
import type { Scheduler, TimerHandle } from './scheduler.ts';

/**
 * Holds back the write of a hard state that only moves the commit index, and joins it
 * to the node's next write instead. Every commit moved it, so a node wrote to LevelDB
 * twice per client write: the entry (synced), then the commit index (not synced, but
 * still a LevelDB batch, a threadpool hand-off and a wake-up of the Ready loop). Under
 * a steady load the next entry's write carries it; otherwise it is written on its own
 * at most `holdMs` after it was first held, so the disk catches up with what was
 * applied once the node goes quiet.
 *
 * Losing it costs nothing Raft needs: a node that restarts from an older commit index
 * learns the rest again from the leader and applies nothing before it does (Ready, step
 * 2). etcd's write-ahead log does the same: a commit-only hard state waits in its
 * buffer for the next synced write.
 */
export class HeldCommit {
  private held: HardState | null = null;
  private timer: TimerHandle | null = null;
  private due = false;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly holdMs: number,
    /** Wakes the Ready loop, which writes a held commit index once it is due. */
    private readonly wake: () => void,
  ) {}

  /**
   * What to write for `ready`: null when nothing, or only a new commit index, which is
   * then held. Any other write carries the held hard state when it has none of its own
   * (a newer one of its own supersedes it).
   */
  batchFor(ready: Ready): PersistBatch | null {
    const { snapshot, entries, hardState, mustSync } = ready;
    if (snapshot === null && entries.length === 0) {
      if (hardState === null) return null;
      if (!mustSync) {
        this.hold(hardState);
        return null;
      }
    }
    const carried = hardState ?? this.held;
    this.release();
    return { snapshot, entries, hardState: carried, mustSync };
  }

  /** Whether a held commit index waited its `holdMs` and should be written on its own. */
  isDue(): boolean {
    return this.due && this.held !== null;
  }

  /** The held hard state, to be written now (unsynced); null when none is held. */
  take(): HardState | null {
    const held = this.held;
    this.release();
    return held;
  }

  private hold(hardState: HardState): void {
    this.held = hardState;
    if (this.timer !== null) return;
    this.timer = this.scheduler.setTimeout(() => {
      this.timer = null;
      this.due = true;
      this.wake();
    }, this.holdMs);
  }

  private release(): void {
    this.held = null;
    this.due = false;
    if (this.timer !== null) this.scheduler.clearTimeout(this.timer);
    this.timer = null;
  }
}
