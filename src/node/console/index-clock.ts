/**
 * When this node applied a log index, on its monotonic clock: how the console turns a
 * fencing token (the index of the granting entry), a waiter's request index or a
 * session's last refresh index into "held for 12 s". The state machine keeps indexes
 * only, as it must (no clocks in src/lock), so the console samples the apply stream: at
 * most one (index, time) pair per `resolutionMs`, in a ring of `capacity` pairs. An
 * index resolves to within `resolutionMs` of when it applied here; one older than the
 * ring (or applied before this process started) resolves to a lower bound.
 */
export interface AppliedAt {
  readonly atMs: number;
  /** The index applied before `atMs`, by an unknown amount (older than the samples). */
  readonly before: boolean;
}

export class IndexClock {
  private readonly indexes: Float64Array;
  private readonly times: Float64Array;
  /** Next slot to write; the ring holds `count` samples ending just before it. */
  private next = 0;
  private count = 0;
  private lastMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly capacity: number,
    private readonly resolutionMs: number,
    /** When the clock started: what an index it never saw applied resolves to. */
    private readonly startedMs: number,
  ) {
    this.indexes = new Float64Array(capacity);
    this.times = new Float64Array(capacity);
  }

  /** Called for every applied entry, in log order; samples one per resolutionMs. */
  note(index: number, nowMs: number): void {
    if (nowMs - this.lastMs < this.resolutionMs) return;
    this.lastMs = nowMs;
    this.indexes[this.next] = index;
    this.times[this.next] = nowMs;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /**
   * When `index` applied here. A sample at the index is exact; between two samples it
   * applied at or after the earlier one and, as no sample was taken for it, less than
   * resolutionMs after it: the earlier sample's time is used.
   */
  appliedAt(index: number): AppliedAt {
    if (this.count === 0) return { atMs: this.startedMs, before: true };
    // Binary search for the last sample whose index is <= `index` (samples ascend).
    let low = 0;
    let high = this.count - 1;
    if (this.sampleIndex(0) > index) return { atMs: this.sampleTime(0), before: true };
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.sampleIndex(middle) <= index) low = middle;
      else high = middle - 1;
    }
    return { atMs: this.sampleTime(low), before: false };
  }

  /** The i-th sample, oldest first. */
  private slot(i: number): number {
    return (this.next - this.count + i + this.capacity) % this.capacity;
  }

  private sampleIndex(i: number): number {
    return this.indexes[this.slot(i)] ?? 0;
  }

  private sampleTime(i: number): number {
    return this.times[this.slot(i)] ?? 0;
  }
}
