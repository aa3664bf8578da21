import type { ApplyOutput } from '../../lock/index.ts';
import type { AppliedListener, NodeObserver } from '../node.ts';
import { ContentionWindow, DEFAULT_CONTENTION } from './contention.ts';
import { IndexClock } from './index-clock.ts';

/** What the console follows of a node: its apply stream and its leader changes. */
export interface FollowedNode {
  subscribe(listener: AppliedListener): () => void;
  observe(observer: NodeObserver): void;
  status(): { readonly commitIndex: number };
}

/** Apply-time samples: 4,096 of them at 250 ms cover 17 minutes of steady writes, more when idle. */
const INDEX_SAMPLES = 4_096;
const INDEX_RESOLUTION_MS = 250;
/** Leader changes remembered (the console shows those of the last minutes). */
const LEADER_CHANGES_KEPT = 64;

/**
 * What the console needs that the node's state does not keep: when entries applied here
 * (for hold, wait and refresh times), which locks were contended lately, and when the
 * leader changed. Fed from the node's existing hooks, after the state machine applied
 * an entry: the write path itself is unchanged. Per applied entry it reads the clock
 * once and looks at the entry's events; only queueing and hand-offs do more.
 */
export class ConsoleActivity {
  readonly clock: IndexClock;
  readonly contention: ContentionWindow;
  private readonly leaderChanges: number[] = [];
  /**
   * What the node knew committed when the console began: a start replays it from the
   * snapshot at once, and its queueing and hand-offs happened before, not now. (What a
   * node catches up on from the leader afterwards still counts as applied now.)
   */
  private readonly replayedThrough: number;
  private readonly unsubscribe: () => void;

  constructor(
    node: FollowedNode,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.clock = new IndexClock(INDEX_SAMPLES, INDEX_RESOLUTION_MS, nowMs());
    this.contention = new ContentionWindow(DEFAULT_CONTENTION, nowMs());
    this.replayedThrough = node.status().commitIndex;
    this.unsubscribe = node.subscribe((index, output) => this.applied(index, output));
    node.observe({ leaderChanged: () => this.leaderChanged() });
  }

  stop(): void {
    this.unsubscribe();
  }

  /** Monotonic times of the leader changes this node saw within `windowMs`, oldest first. */
  leaderChangesWithin(windowMs: number): number[] {
    const sinceMs = this.nowMs() - windowMs;
    return this.leaderChanges.filter((atMs) => atMs >= sinceMs);
  }

  private applied(index: number, output: ApplyOutput): void {
    const nowMs = this.nowMs();
    this.clock.note(index, nowMs);
    if (index <= this.replayedThrough) return;
    for (const event of output.events) {
      if (event.type === 'queued') this.contention.queued(event.lock, nowMs);
      else if (event.type === 'waitEnded' && event.reason === 'granted') {
        const waitedMs = nowMs - this.clock.appliedAt(event.requestIndex).atMs;
        this.contention.handedOff(event.lock, waitedMs, nowMs);
      }
    }
  }

  private leaderChanged(): void {
    this.leaderChanges.push(this.nowMs());
    if (this.leaderChanges.length > LEADER_CHANGES_KEPT) this.leaderChanges.shift();
  }
}
