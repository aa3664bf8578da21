/**
 * Which locks were fought over recently: per lock, the Acquires that had to queue, the
 * hand-offs (a waiter granted as the holder let go) and how long those waiters waited.
 * Counted in fixed buckets (bucketMs each, `buckets` of them: the window), so old
 * activity falls out as whole buckets; each bucket tracks at most `locksPerBucketMax`
 * locks and counts the rest together, so a storm of distinct names cannot grow it.
 */
export interface ContendedLock {
  readonly lock: string;
  /** Acquires that joined the lock's queue in the window. */
  readonly waits: number;
  /** Waiters granted the lock in the window. */
  readonly handoffs: number;
  readonly handoffsPerSecond: number;
  /** Mean wait of those granted, ms; null when none was. */
  readonly waitMsMean: number | null;
  readonly waitMsMax: number | null;
}

interface Counts {
  waits: number;
  handoffs: number;
  waitMsTotal: number;
  waitMsMax: number;
}

interface Bucket {
  readonly startMs: number;
  readonly locks: Map<string, Counts>;
  /** Events of locks past locksPerBucketMax, counted but not named. */
  untracked: number;
}

export interface ContentionOptions {
  readonly bucketMs: number;
  readonly buckets: number;
  readonly locksPerBucketMax: number;
}

export const DEFAULT_CONTENTION: ContentionOptions = {
  bucketMs: 10_000,
  buckets: 30,
  locksPerBucketMax: 1_000,
};

export class ContentionWindow {
  private readonly ring: Bucket[] = [];

  constructor(
    readonly options: ContentionOptions = DEFAULT_CONTENTION,
    /** When counting began: a window younger than its length is that much shorter. */
    private readonly startedMs = 0,
  ) {}

  get windowMs(): number {
    return this.options.bucketMs * this.options.buckets;
  }

  queued(lock: string, nowMs: number): void {
    const counts = this.countsOf(lock, nowMs);
    if (counts !== null) counts.waits++;
  }

  handedOff(lock: string, waitedMs: number, nowMs: number): void {
    const counts = this.countsOf(lock, nowMs);
    if (counts === null) return;
    counts.handoffs++;
    counts.waitMsTotal += waitedMs;
    counts.waitMsMax = Math.max(counts.waitMsMax, waitedMs);
  }

  /** The `limit` most contended locks of the window ending now, most waits first. */
  top(limit: number, nowMs: number): { locks: ContendedLock[]; untracked: number } {
    const sums = new Map<string, Counts>();
    let untracked = 0;
    for (const bucket of this.ring) {
      if (bucket.startMs + this.windowMs <= nowMs) continue;
      untracked += bucket.untracked;
      for (const [lock, counts] of bucket.locks) {
        const sum = sums.get(lock) ?? { waits: 0, handoffs: 0, waitMsTotal: 0, waitMsMax: 0 };
        sum.waits += counts.waits;
        sum.handoffs += counts.handoffs;
        sum.waitMsTotal += counts.waitMsTotal;
        sum.waitMsMax = Math.max(sum.waitMsMax, counts.waitMsMax);
        sums.set(lock, sum);
      }
    }
    // Per second of what was watched: right after a start, 5 minutes would understate a
    // rate seen over a few seconds by 100 times. At least one bucket, so that a first
    // hand-off does not read as a burst.
    const watchedMs = Math.min(
      this.windowMs,
      Math.max(nowMs - this.startedMs, this.options.bucketMs),
    );
    const seconds = watchedMs / 1000;
    const locks = [...sums]
      .map(([lock, sum]) => ({
        lock,
        waits: sum.waits,
        handoffs: sum.handoffs,
        handoffsPerSecond: sum.handoffs / seconds,
        waitMsMean: sum.handoffs === 0 ? null : sum.waitMsTotal / sum.handoffs,
        waitMsMax: sum.handoffs === 0 ? null : sum.waitMsMax,
      }))
      .sort((a, b) => b.waits - a.waits || b.handoffs - a.handoffs || (a.lock < b.lock ? -1 : 1))
      .slice(0, limit);
    return { locks, untracked };
  }

  private countsOf(lock: string, nowMs: number): Counts | null {
    const bucket = this.currentBucket(nowMs);
    let counts = bucket.locks.get(lock);
    if (counts !== undefined) return counts;
    if (bucket.locks.size >= this.options.locksPerBucketMax) {
      bucket.untracked++;
      return null;
    }
    counts = { waits: 0, handoffs: 0, waitMsTotal: 0, waitMsMax: 0 };
    bucket.locks.set(lock, counts);
    return counts;
  }

  private currentBucket(nowMs: number): Bucket {
    const startMs = Math.floor(nowMs / this.options.bucketMs) * this.options.bucketMs;
    const last = this.ring.at(-1);
    if (last !== undefined && last.startMs === startMs) return last;
    const bucket: Bucket = { startMs, locks: new Map(), untracked: 0 };
    this.ring.push(bucket);
    if (this.ring.length > this.options.buckets) this.ring.shift();
    return bucket;
  }
}
