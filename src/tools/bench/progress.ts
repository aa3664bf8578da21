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

  /** A run ends after `seconds` or, when finite, once `pairsMax` pairs are done. */
  start(label: string, seconds: number, pairsMax: number, unit = 'pairs'): void {
    this.stop();
    this.pairsByWorker.clear();
    const startedMs = performance.now();
    const ofPairs = Number.isFinite(pairsMax) ? `/${pairsMax}` : '';
    const ofSeconds = Number.isFinite(pairsMax) ? '' : `/${seconds}`;
    this.timer = setInterval(() => {
      const elapsedS = (performance.now() - startedMs) / 1000;
      const pairs = [...this.pairsByWorker.values()].reduce((a, b) => a + b, 0);
      this.write(`  ${label}: ${elapsedS.toFixed(0)}${ofSeconds} s, ${pairs}${ofPairs} ${unit}\n`);
    }, PRINT_INTERVAL_MS);
  }

  /** What the workers reported last, summed. */
  total(): number {
    return [...this.pairsByWorker.values()].reduce((a, b) => a + b, 0);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
