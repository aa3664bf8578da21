/**
 * Review of 24cd0f7 (runtime.heapTargetMb). growingPercentFor assumes V8's widest growth
 * is 300% (4x), true only with a heap limit of 2 GB or more. Under a smaller limit
 * (--max-old-space-size, or a container: Node sizes the heap from the memory it may use)
 * V8 grows the old generation by at most 1.3x-2x, and the target then sets a growth
 * wider than V8 would ever choose; the percent computed from collection n-1's live heap
 * is applied to collection n's, so in a fill it overshoots further. A node with a 128 MB
 * "target" then holds more heap than the same node with the target off.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('../../src/node/heap-growth.ts', import.meta.url));

const CHILD = `
import v8 from 'node:v8';
import { governHeapGrowth } from ${JSON.stringify(MODULE)};
const growth = governHeapGrowth({ heapGrowingPercent: 0, heapTargetMb: Number(process.env.TARGET_MB) });
globalThis.live = Array.from({ length: 500_000 }, (_, i) => ({ i, text: 'live-' + i }));
let peak = 0;
const ring = new Array(300_000);
let n = 0;
const end = Date.now() + 5_000;
while (Date.now() < end) {
  for (let i = 0; i < 1_000; i++) ring[n++ % ring.length] = { n, text: 'churn-' + n };
  peak = Math.max(peak, v8.getHeapStatistics().used_heap_size);
  await new Promise((resolve) => setTimeout(resolve, 1));
}
console.log(JSON.stringify({ peakMb: Math.round(peak / 2 ** 20), percent: growth.growingPercent() }));
`;

function run(targetMb: number): { peakMb: number; percent: number } {
  const out = execFileSync(
    process.execPath,
    ['--max-old-space-size=512', '--import', 'tsx', '--input-type=module', '-e', CHILD],
    { env: { ...process.env, TARGET_MB: String(targetMb) }, encoding: 'utf8', timeout: 60_000 },
  );
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
}

describe('runtime.heapTargetMb under a heap limit below 2 GB', () => {
  it('never lets the heap grow past what it reaches with the target off (nor far past the target)', () => {
    const free = run(0);
    const governed = run(128);
    console.log({ free, governed });
    expect(governed.peakMb).toBeLessThanOrEqual(Math.max(free.peakMb, 128) * 1.1);
  }, 120_000);
});
