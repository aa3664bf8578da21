import type { Clock } from '../../../node/node.ts';
import type { Scheduler, TimerHandle } from '../../../node/scheduler.ts';
import { MinHeap } from '../../../util/min-heap.ts';

/**
 * Virtual time for the runtime simulation: one queue of timed tasks for the whole
 * cluster, clients included. The real runtime is promise-based, so after each task the
 * loop waits for a macrotask boundary (setImmediate), by which point Node has drained
 * every microtask that task caused, and everything they caused in turn. So the order
 * in which code runs depends only on the queue, and the queue only on the seed.
 */
interface Task {
  readonly label: string;
  readonly run: () => void;
  cancelled: boolean;
}

export class VirtualTime {
  private readonly queue = new MinHeap<Task>();
  private currentMs = 0;
  events = 0;

  get nowMs(): number {
    return this.currentMs;
  }

  get pending(): number {
    return this.queue.size;
  }

  /** Runs `run` at `atMs` (never before now); ties run in the order they were scheduled. */
  at(atMs: number, label: string, run: () => void): Task {
    const task: Task = { label, run, cancelled: false };
    this.queue.push(Math.max(atMs, this.currentMs), task);
    return task;
  }

  after(delayMs: number, label: string, run: () => void): Task {
    return this.at(this.currentMs + delayMs, label, run);
  }

  /**
   * Runs tasks in time order until `stop` says so or the queue runs dry. `afterEach`
   * sees the state once the task and all its microtasks have run.
   */
  async run(stop: () => boolean, afterEach: (label: string) => void): Promise<void> {
    while (!stop()) {
      const atMs = this.queue.peekPriority();
      const task = this.queue.pop();
      if (atMs === undefined || task === undefined) return;
      if (task.cancelled) continue;
      this.currentMs = atMs;
      this.events++;
      task.run();
      await macrotaskBoundary();
      afterEach(task.label);
    }
  }
}

function macrotaskBoundary(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * One process of one node: its monotonic clock (which may run fast or slow) and its
 * timers. Everything the process does, from timers to messages and fsyncs arriving,
 * runs through `run`, so that:
 * - a crash ends the process: nothing scheduled for it runs any more;
 * - a pause (SIGSTOP, a long GC) holds everything back until it resumes, in order.
 */
export class ProcessClock implements Clock, Scheduler {
  private alive = true;
  private pausedUntilMs: number | null = null;

  constructor(
    private readonly time: VirtualTime,
    readonly label: string,
    /** Local milliseconds per virtual millisecond. */
    private readonly rate: number,
    /** The local clock's reading at virtual time 0 (a monotonic clock has no epoch). */
    private readonly offsetMs: number,
  ) {}

  get running(): boolean {
    return this.alive;
  }

  get paused(): boolean {
    return this.pausedUntilMs !== null;
  }

  nowMs(): number {
    return this.offsetMs + this.time.nowMs * this.rate;
  }

  /** The simulation's own time, which no process can read. */
  nowVirtualMs(): number {
    return this.time.nowMs;
  }

  kill(): void {
    this.alive = false;
  }

  pause(untilMs: number): void {
    this.pausedUntilMs = Math.max(untilMs, this.pausedUntilMs ?? 0);
  }

  /** Runs `work` for this process `delayMs` of virtual time from now, if it still lives then. */
  runAfter(delayMs: number, label: string, work: () => void): void {
    this.time.after(delayMs, label, () => this.run(label, work));
  }

  /** Runs `work` for this process now: not at all if it died, at its resume time if paused. */
  run(label: string, work: () => void): void {
    if (!this.alive) return;
    if (this.pausedUntilMs !== null) {
      if (this.pausedUntilMs > this.time.nowMs) {
        // Re-queued at the resume time in the order they came: pauses keep order.
        this.time.at(this.pausedUntilMs, label, () => this.run(label, work));
        return;
      }
      this.pausedUntilMs = null;
    }
    work();
  }

  /** Local milliseconds to virtual ones: a fast clock's timers fire early in real time. */
  private virtualMs(localMs: number): number {
    return Math.max(0, localMs) / this.rate;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    // Checked when it fires, so clearing also stops a firing a pause has postponed.
    const handle = { cancelled: false };
    this.runAfter(this.virtualMs(delayMs), `${this.label} timer`, () => {
      if (!handle.cancelled) callback();
    });
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as { cancelled: boolean }).cancelled = true;
  }

  setInterval(callback: () => void, intervalMs: number): TimerHandle {
    const handle = { cancelled: false };
    const fire = (): void => {
      if (handle.cancelled) return;
      // One handle for the whole series: clearInterval stops every later firing.
      this.runAfter(this.virtualMs(intervalMs), `${this.label} tick`, fire);
      callback();
    };
    this.runAfter(this.virtualMs(intervalMs), `${this.label} tick`, fire);
    return handle;
  }

  clearInterval(handle: TimerHandle): void {
    (handle as { cancelled: boolean }).cancelled = true;
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, delayMs));
  }

  /** After everything already queued for this virtual instant, as setImmediate would be. */
  soon(callback: () => void): void {
    this.runAfter(0, `${this.label} soon`, callback);
  }
}
