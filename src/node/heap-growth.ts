import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { DEFAULT_RUNTIME_CONFIG } from '../config/types.ts';
import { v8FlagsChangeable, v8IntFlag } from './v8-flags.ts';

/**
 * Sets how far V8 lets the old generation grow past what its last full collection left
 * alive before it starts the next one: `percent` more (V8's --heap-growing-percent); 0
 * leaves it to V8.
 *
 * Why (issue 12): V8 picks that factor itself from how fast its collections run, up to
 * four times the live heap where the heap limit is large (2 GB or more). A node holding
 * 100,000 locks keeps some 100 MB alive; right after a burst of writes its heap had grown
 * to 2.6 times that, and the busiest node's RSS was 360-390 MB. At 100% (twice the live
 * heap) it was 259-274 MB. The price is more full collections: on a small state at 64
 * clients the acquire p99 rose by 10-40%. So it is a setting, off by default (see
 * docs/operations.md, "Memory").
 *
 * V8 reads the flag each time it sets the next collection's limit, so it applies from
 * the next full collection on. Under --freeze-flags-after-init a change of flag aborts
 * the process (no try catches that), so the node then leaves the factor to V8 and says so.
 */
export function setHeapGrowingPercent(percent: number): string | null {
  if (percent === 0) return null;
  if (!v8FlagsChangeable()) return notApplied(`runtime.heapGrowingPercent ${percent}`);
  setGrowingPercentFlag(percent);
  return null;
}

/** V8's widest growth between full collections (a factor of 4, with a heap limit of 2 GB or more). */
const V8_GROWING_PERCENT_MAX = 300;

const MB = 2 ** 20;

/**
 * V8's widest growth for an old generation limited to `oldGenerationBytes` (its
 * MaxGrowingFactor): 4x from 2 GB up; below, from 1.3x at 256 MB to 2x just under 2 GB.
 * Node sizes the heap from the memory it may use, so a node in a container of a few GB
 * gets far less than 4x: a target must never set more than this, or it widens V8's growth
 * instead of narrowing it.
 */
function v8MaxGrowingPercent(oldGenerationBytes: number): number {
  const min = 256 * MB;
  const max = 2048 * MB;
  if (oldGenerationBytes >= max) return V8_GROWING_PERCENT_MAX;
  const size = Math.max(oldGenerationBytes, min);
  return Math.floor(30 + (70 * (size - min)) / (max - min));
}

/**
 * The old generation's limit, which V8 sizes its growth from: heap_size_limit less the
 * young generation (three semi-spaces: V8's 16 MB each unless --max-semi-space-size says
 * otherwise). Under --max-old-space-size=2000 heap_size_limit is 2048 MB, and reading it
 * whole took V8's widest growth for 4x where V8's own is 2x (review of 6634304). Where V8
 * gave the young generation less (a small heap), this errs low, which only narrows more.
 */
function oldGenerationLimitBytes(heapSizeLimitBytes: number): number {
  const semiSpaceMb = Math.max(16, v8IntFlag('max-semi-space-size') ?? 0);
  return heapSizeLimitBytes - 3 * semiSpaceMb * MB;
}

/** The least growth the target asks for, however large the live heap: 20% more than it. */
const TARGET_GROWING_PERCENT_MIN = 20;

/**
 * The growth (V8's --heap-growing-percent) that makes the next full collection start at
 * about `targetBytes`, after one that left `liveBytes` alive; 0 (leave it to V8) while V8's
 * widest growth stays within the target. Never below TARGET_GROWING_PERCENT_MIN: a heap
 * kept at its live size would collect without end.
 */
export function growingPercentFor(
  liveBytes: number,
  targetBytes: number,
  maxPercent: number = V8_GROWING_PERCENT_MAX,
): number {
  if (liveBytes <= 0 || liveBytes * (1 + maxPercent / 100) <= targetBytes) return 0;
  const percent = Math.floor(((targetBytes - liveBytes) / liveBytes) * 100);
  return Math.min(maxPercent, Math.max(TARGET_GROWING_PERCENT_MIN, percent));
}

/**
 * runtime.heapTargetMb: after each full collection, sets V8's growth from what it left
 * alive (growingPercentFor). Why (issue 12): V8 lets the heap grow to up to four times
 * the live heap before its next full collection; at 100,000 held locks some 115 MB is
 * live, and right after a burst of writes the busiest node's RSS was 310-377 MB. A fixed
 * growth (heapGrowingPercent) bought that back but cost p99 on a small state, where it
 * collected several times as often; this sets the growth only once V8's widest growth
 * over the live heap would pass the target, and never wider than that. The default,
 * 128 MB, kept that node under 300 MB in 7 of 8 runs (280-300 MB, against 307-367 off) and
 * leaves live heaps under 32 MB to V8: the pair cells' were 21-40 MB, and alternating
 * runs found no cost there (docs/operations.md, "Memory"). V8 reads no cap, only a
 * growth that replaces its own choice: under light load, where V8 would collect at as
 * little as 1.1x the live heap, the target lets the heap grow to about its size instead
 * (a review measured 137-147 MB against 80-96 MB, with 32-107 MB live).
 *
 * The live heap is read when the observer hears of the collection, a little later, so it
 * counts what was allocated since; the setting applies from the next collection on.
 */
export class HeapTarget {
  private applied = 0;
  private observer: PerformanceObserver | null = null;

  constructor(
    private readonly targetBytes: number,
    private readonly setPercent: (percent: number) => void = setGrowingPercentFlag,
    private readonly liveBytes: () => number = () => v8.getHeapStatistics().used_heap_size,
    private readonly maxPercent: number = v8MaxGrowingPercent(
      oldGenerationLimitBytes(v8.getHeapStatistics().heap_size_limit),
    ),
  ) {}

  start(): void {
    this.observer = new PerformanceObserver((list) => {
      const full = list.getEntries().some((entry) => (entry as GcEntry).detail?.kind === FULL_GC);
      if (full) this.afterFullCollection();
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    this.observer?.disconnect();
    this.observer = null;
  }

  /** The growth now in force: 0 while V8 chooses. */
  get growingPercent(): number {
    return this.applied;
  }

  afterFullCollection(): void {
    const percent = growingPercentFor(this.liveBytes(), this.targetBytes, this.maxPercent);
    if (percent === this.applied) return;
    this.applied = percent;
    this.setPercent(percent);
  }
}

function notApplied(setting: string): string {
  return `${setting} not applied: node runs with --freeze-flags-after-init or --abort-on-contradictory-flags (or in a Worker), so V8's flags cannot be set`;
}

const FULL_GC = constants.NODE_PERFORMANCE_GC_MAJOR;

/** A 'gc' performance entry; Node's types leave out its detail. */
type GcEntry = PerformanceEntry & { readonly detail?: { readonly kind?: number } };

function setGrowingPercentFlag(percent: number): void {
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

/**
 * What `dlm serve` does about V8's heap growth: a fixed growth if heapGrowingPercent is
 * set, else the target if heapTargetMb is. Returns a note to log when V8's flags cannot
 * be changed, what stops the target's observer, and the growth in force (0: V8's own).
 */
export function governHeapGrowth(runtime: {
  readonly heapGrowingPercent: number;
  readonly heapTargetMb: number;
}): { note: string | null; stop: () => void; growingPercent: () => number } {
  const none = { note: null, stop: () => {}, growingPercent: () => 0 };
  // A target at its default was not the operator's choice: another growth setting
  // replaces it without a word (review of 6634304), a target they wrote is named.
  const targetChosen =
    runtime.heapTargetMb > 0 && runtime.heapTargetMb !== DEFAULT_RUNTIME_CONFIG.heapTargetMb;
  if (runtime.heapGrowingPercent > 0) {
    const refused = setHeapGrowingPercent(runtime.heapGrowingPercent);
    const ignored = targetChosen
      ? `runtime.heapTargetMb ${runtime.heapTargetMb} not applied: runtime.heapGrowingPercent ${runtime.heapGrowingPercent} is set, and takes precedence`
      : null;
    return {
      ...none,
      note: refused ?? ignored,
      growingPercent: () => (refused === null ? runtime.heapGrowingPercent : 0),
    };
  }
  if (runtime.heapTargetMb === 0) return none;
  // The command line's growth is the operator's: the target neither overrides it nor,
  // once the live heap shrinks, writes it back to V8's own (0).
  const commandLine = v8IntFlag('heap-growing-percent');
  if (commandLine !== null && commandLine > 0) {
    return {
      ...none,
      note: targetChosen
        ? `runtime.heapTargetMb ${runtime.heapTargetMb} not applied: the command line sets --heap-growing-percent=${commandLine}`
        : null,
      growingPercent: () => commandLine,
    };
  }
  if (!v8FlagsChangeable())
    return { ...none, note: notApplied(`runtime.heapTargetMb ${runtime.heapTargetMb}`) };
  const target = new HeapTarget(runtime.heapTargetMb * 2 ** 20);
  target.start();
  return { note: null, stop: () => target.stop(), growingPercent: () => target.growingPercent };
}
