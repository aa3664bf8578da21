import {
  constants,
  type IntervalHistogram,
  monitorEventLoopDelay,
  PerformanceObserver,
} from 'node:perf_hooks';

/**
 * Watches the process's own event loop and garbage collector, so that a latency stall
 * seen by clients can be matched, by wall-clock time, to what stopped the node: a long
 * GC pause, or a task that held the loop (a snapshot, say). Everything the node does
 * runs on one loop, so a stall here delays every call and every Raft message.
 *
 * Three sources: the event-loop delay histogram (what the loop's timers were late by,
 * read and reset on each scrape), every GC pause (kind and duration), and a timer that
 * notices when it fired late by `stallMsMin` or more and says when the stall began.
 */
export type GcKind = 'minor' | 'major' | 'incremental' | 'weakcb' | 'other';

export interface RuntimeWatchOptions {
  /** A loop stall or GC pause at least this long is reported one by one. */
  readonly stallMsMin: number;
  /** How often the stall timer looks: a finer check notices shorter stalls. */
  readonly checkIntervalMs: number;
}

export interface RuntimeWatchListener {
  /** Every GC pause; `startedAtMs` is epoch ms. */
  gcPause?(kind: GcKind, durationMs: number, startedAtMs: number): void;
  /** The loop ran nothing else for about `durationMs` from `startedAtMs` (epoch ms). */
  loopStalled?(durationMs: number, startedAtMs: number): void;
}

export interface LoopDelaySummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export const DEFAULT_RUNTIME_WATCH: RuntimeWatchOptions = { stallMsMin: 50, checkIntervalMs: 20 };

/**
 * The watch for a stall threshold (runtime.stallReportMsMin). The timer sees a stall
 * only from its due time on, so it looks at least twice per threshold: a stall is
 * then reported once it outlasts the threshold by half of it, where with checks 20 ms
 * apart most stalls of a few ms went unseen (review of the bench's --stall-ms).
 */
export function runtimeWatchOptions(stallMsMin: number): RuntimeWatchOptions {
  const checkIntervalMs = Math.max(
    1,
    Math.min(DEFAULT_RUNTIME_WATCH.checkIntervalMs, Math.floor(stallMsMin / 2)),
  );
  return { stallMsMin, checkIntervalMs };
}

/** Event-loop delay sampling resolution; finer costs more wake-ups. */
const LOOP_DELAY_RESOLUTION_MS = 10;

export class RuntimeWatch {
  private readonly loopDelay: IntervalHistogram;
  private readonly gcObserver: PerformanceObserver;
  private readonly stallTimer: NodeJS.Timeout;
  private readonly listeners: RuntimeWatchListener[] = [];
  private lastCheckMs = performance.now();

  constructor(readonly options: RuntimeWatchOptions = DEFAULT_RUNTIME_WATCH) {
    this.loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
    this.loopDelay.enable();
    this.gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = gcKind((entry as { detail?: { kind?: number } }).detail?.kind);
        const startedAtMs = performance.timeOrigin + entry.startTime;
        for (const listener of this.listeners)
          listener.gcPause?.(kind, entry.duration, startedAtMs);
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.stallTimer = setInterval(() => this.check(), options.checkIntervalMs);
    // The watch never keeps a process alive on its own.
    this.stallTimer.unref();
  }

  listen(listener: RuntimeWatchListener): void {
    this.listeners.push(listener);
  }

  /** The loop's delay since the last call (or the start), then starts afresh. */
  takeLoopDelay(): LoopDelaySummary {
    const nsPerMs = 1e6;
    const summary =
      this.loopDelay.count === 0
        ? { p50Ms: 0, p99Ms: 0, maxMs: 0 }
        : {
            p50Ms: this.loopDelay.percentile(50) / nsPerMs,
            p99Ms: this.loopDelay.percentile(99) / nsPerMs,
            maxMs: this.loopDelay.max / nsPerMs,
          };
    this.loopDelay.reset();
    return summary;
  }

  stop(): void {
    clearInterval(this.stallTimer);
    this.gcObserver.disconnect();
    this.loopDelay.disable();
  }

  private check(): void {
    const nowMs = performance.now();
    const lateMs = nowMs - this.lastCheckMs - this.options.checkIntervalMs;
    this.lastCheckMs = nowMs;
    if (lateMs < this.options.stallMsMin) return;
    const startedAtMs = performance.timeOrigin + nowMs - lateMs;
    for (const listener of this.listeners) listener.loopStalled?.(lateMs, startedAtMs);
  }
}

function gcKind(kind: number | undefined): GcKind {
  switch (kind) {
    case constants.NODE_PERFORMANCE_GC_MINOR:
      return 'minor';
    case constants.NODE_PERFORMANCE_GC_MAJOR:
      return 'major';
    case constants.NODE_PERFORMANCE_GC_INCREMENTAL:
      return 'incremental';
    case constants.NODE_PERFORMANCE_GC_WEAKCB:
      return 'weakcb';
    default:
      return 'other';
  }
}
