/**
 * Progress lines on stderr during a run: which cell, how far in time, pairs so far.
 * Workers report their pair counts; this sums them.
 */
const PRINT_INTERVAL_MS = 2_000;

export class Progress {
  private readonly pairsByWorker = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly write: (text: string) => void) {}

  /** Fed by the worker pool. */
  report(worker: number, pairs: number): void {
    this.pairsByWorker.set(worker, pairs);
  }

  start(label: string, seconds: number): void {
    this.stop();
    this.pairsByWorker.clear();
    const startedMs = performance.now();
    this.timer = setInterval(() => {
      const elapsedS = (performance.now() - startedMs) / 1000;
      const pairs = [...this.pairsByWorker.values()].reduce((a, b) => a + b, 0);
      const of = Number.isFinite(seconds) ? `/${seconds}` : '';
      this.write(`  ${label}: ${elapsedS.toFixed(0)}${of} s, ${pairs} pairs\n`);
    }, PRINT_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
