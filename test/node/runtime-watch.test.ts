import { afterEach, describe, expect, it } from 'vitest';
import { RuntimeWatch, runtimeWatchOptions } from '../../src/node/runtime-watch.ts';

/**
 * runtime.stallReportMsMin as `dlm serve` applies it: the stall timer looks at least
 * twice per threshold, so short stalls are seen (review of the bench's --stall-ms:
 * with checks 20 ms apart, 12-13 of 20 blocks of 10 ms went unlogged at a 2 ms
 * threshold).
 */
let watch: RuntimeWatch | null = null;
afterEach(() => watch?.stop());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const epochNowMs = () => performance.timeOrigin + performance.now();

describe('runtimeWatchOptions', () => {
  it('checks every 20 ms at the default threshold, and at least twice per lower one', () => {
    expect(runtimeWatchOptions(50)).toEqual({ stallMsMin: 50, checkIntervalMs: 20 });
    expect(runtimeWatchOptions(10).checkIntervalMs).toBe(5);
    expect(runtimeWatchOptions(2).checkIntervalMs).toBe(1);
    expect(runtimeWatchOptions(1).checkIntervalMs).toBe(1);
  });

  it('at a 2 ms threshold, logs every 10 ms block of the loop', async () => {
    watch = new RuntimeWatch(runtimeWatchOptions(2));
    const stalls: { startMs: number; endMs: number }[] = [];
    watch.listen({
      loopStalled: (durationMs, startedAtMs) =>
        stalls.push({ startMs: startedAtMs, endMs: startedAtMs + durationMs }),
    });
    const blocks: { startMs: number; endMs: number }[] = [];
    for (let i = 0; i < 20; i++) {
      // Gaps that do not fall into step with the check's period, as a node's work does not.
      await sleep(23 + ((i * 7) % 13) * 3);
      const startMs = epochNowMs();
      while (epochNowMs() < startMs + 10) {
        // holds the loop for 10 ms, five times the threshold
      }
      blocks.push({ startMs, endMs: epochNowMs() });
    }
    await sleep(50);
    const missed = blocks.filter(
      (block) =>
        !stalls.some((stall) => stall.startMs < block.endMs && stall.endMs > block.startMs),
    );
    expect(missed.length, `${missed.length} of 20 blocks of 10 ms never logged`).toBe(0);
  });
});
