import v8 from 'node:v8';
import { v8FlagsFrozen } from './v8-flags.ts';

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
  if (v8FlagsFrozen()) {
    return `runtime.heapGrowingPercent ${percent} not applied: node runs with --freeze-flags-after-init, so V8's flags cannot be set`;
  }
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return null;
}
