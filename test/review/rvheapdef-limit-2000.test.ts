/**
 * Review of 6634304 (runtime.heapTargetMb on by default, at 128). The target is meant never
 * to set a growth wider than V8's own widest for the heap limit (docs/operations.md: "never
 * wider than V8's own widest growth for the heap limit (4x from a 2 GB limit up, 1.3-2x
 * below)"). v8MaxGrowingPercent reads that limit from heap_size_limit, which is the old
 * generation's limit plus the young generation's (48 MB), while V8's MaxGrowingFactor is
 * given the old generation's limit alone. Under --max-old-space-size=2000 (or a container
 * V8 sizes to the same old generation) heap_size_limit is 2048 MB, so the node takes V8's
 * widest to be 4x, while V8's own is 1.98x: over a live heap of 32-64 MB the target sets
 * growths of 200-300% where V8 never goes past 98%. With the default now on, such a node
 * with no heap setting of its own holds far more heap than with the target off.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('../../src/node/heap-growth.ts', import.meta.url));
const TYPES = fileURLToPath(new URL('../../src/config/types.ts', import.meta.url));

const CHILD = `
import v8 from 'node:v8';
import { governHeapGrowth } from ${JSON.stringify(MODULE)};
import { DEFAULT_RUNTIME_CONFIG } from ${JSON.stringify(TYPES)};
const runtime = process.env.TARGET_OFF === '1'
  ? { ...DEFAULT_RUNTIME_CONFIG, heapTargetMb: 0 }
  : DEFAULT_RUNTIME_CONFIG;
const growth = governHeapGrowth(runtime);
// Some 35 MB live: past a quarter of 128 MB, under half of it.
globalThis.live = Array.from({ length: 300_000 }, (_, i) => ({ i, text: 'live-' + i }));
let peak = 0;
let widest = 0;
const ring = new Array(50_000);
let n = 0;
for (; n < ring.length; n++) ring[n] = { n, text: 'churn-' + n };
globalThis.gc();
const live = v8.getHeapStatistics().used_heap_size;
const end = Date.now() + 5_000;
while (Date.now() < end) {
  for (let i = 0; i < 1_000; i++) ring[n++ % ring.length] = { n, text: 'churn-' + n };
  peak = Math.max(peak, v8.getHeapStatistics().used_heap_size);
  widest = Math.max(widest, growth.growingPercent());
  await new Promise((resolve) => setTimeout(resolve, 1));
}
console.log(JSON.stringify({
  targetMb: runtime.heapTargetMb,
  peakMb: Math.round(peak / 2 ** 20),
  liveMb: Math.round(live / 2 ** 20),
  widestPercent: widest,
}));
`;

interface Outcome {
  targetMb: number;
  peakMb: number;
  liveMb: number;
  widestPercent: number;
}

function run(targetOff: boolean): Outcome {
  const out = execFileSync(
    process.execPath,
    [
      '--max-old-space-size=2000',
      '--expose-gc',
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      CHILD,
    ],
    {
      env: { ...process.env, TARGET_OFF: targetOff ? '1' : '0' },
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
}

/** V8's MaxGrowingFactor for an old generation limit under 2 GB, as a percent (heap-controller.cc). */
function v8WidestPercent(oldGenerationMb: number): number {
  return Math.floor(30 + (70 * (oldGenerationMb - 256)) / (2048 - 256));
}

describe('the default heapTargetMb under --max-old-space-size=2000', () => {
  it("never sets a growth wider than V8's own widest, nor lets the heap grow past what it reaches off", () => {
    const free = run(true);
    const governed = run(false);
    console.log({ free, governed, v8WidestPercent: v8WidestPercent(2000) });
    expect(governed.targetMb).toBe(128);
    expect(governed.widestPercent).toBeLessThanOrEqual(v8WidestPercent(2000));
    // V8 picks its growth from how fast the process allocates, so one run's peak depends on
    // the host's load as much as on the target: on a loaded CI host the run with the target
    // off peaked at 43 MB and the governed one at 79 (stop 38), both with the target never
    // set. So the peak is held to the larger of the other run's and V8's own widest growth
    // over the live heap. The growth check above is what catches the bug itself: with the
    // young generation counted into the limit again, it fails on a growth of 294%.
    const v8WidestPeakMb = governed.liveMb * (1 + v8WidestPercent(2000) / 100);
    expect(governed.peakMb).toBeLessThanOrEqual(Math.max(free.peakMb, v8WidestPeakMb) * 1.1);
  }, 120_000);
});
