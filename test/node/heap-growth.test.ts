/**
 * runtime.heapGrowingPercent reaches V8 (src/node/heap-growth.ts): in a child process,
 * the same churn of long-lived garbage over a live heap runs many more full collections
 * at 10% than at 400%; and under --freeze-flags-after-init, where a flag change would
 * abort the process, the node says it cannot apply it and runs on.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { growingPercentFor, HeapTarget } from '../../src/node/heap-growth.ts';
import { v8FlagsFrozen } from '../../src/node/v8-flags.ts';

const MODULE = fileURLToPath(new URL('../../src/node/heap-growth.ts', import.meta.url));

const CHILD = `
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setHeapGrowingPercent } from ${JSON.stringify(MODULE)};
const note = setHeapGrowingPercent(Number(process.env.PERCENT));
let majors = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
  }
}).observe({ entryTypes: ['gc'] });
globalThis.live = Array.from({ length: 300_000 }, (_, i) => ({ i, text: 'live-' + i }));
const ring = new Array(200_000);
for (let i = 0; i < 4_000_000; i++) ring[i % ring.length] = { i, text: 'churn-' + i };
setTimeout(() => console.log(JSON.stringify({ majors, note })), 50);
`;

function runChild(
  percent: number,
  nodeFlags: readonly string[] = [],
): { majors: number; note: string | null } {
  const out = execFileSync(
    process.execPath,
    [...nodeFlags, '--import', 'tsx', '--input-type=module', '-e', CHILD],
    { env: { ...process.env, PERCENT: String(percent) }, encoding: 'utf8', timeout: 60_000 },
  );
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
}

describe('setHeapGrowingPercent', () => {
  it('sets how soon V8 collects: more full collections at 10% than at 400%', () => {
    const tight = runChild(10);
    const loose = runChild(400);
    expect(tight.note).toBeNull();
    expect(loose.note).toBeNull();
    expect(tight.majors).toBeGreaterThan(2 * loose.majors);
  }, 120_000);

  it('under --freeze-flags-after-init, names why it is not applied and does not abort', () => {
    const frozen = runChild(100, ['--freeze-flags-after-init']);
    expect(frozen.note).toBe(
      "runtime.heapGrowingPercent 100 not applied: node runs with --freeze-flags-after-init or --abort-on-contradictory-flags (or in a Worker), so V8's flags cannot be set",
    );
  }, 60_000);
});

describe('v8FlagsFrozen', () => {
  it.each([
    [[], false],
    [['--freeze-flags-after-init'], true],
    [['--freeze_flags_after_init'], true],
    [['--freeze-flags_after-init'], true],
    [['--freeze-flags-after-init', '--no-freeze-flags-after-init'], false],
    [['--freeze-flags-after-init', '--nofreeze_flags_after_init'], false],
    [['--no-freeze-flags-after-init', '--freeze-flags-after-init'], true],
    [['--freeze-flags-after-init=false'], false],
    [['--expose-gc', '--max-old-space-size=512'], false],
  ])('%j: %s', (execArgv, frozen) => {
    expect(v8FlagsFrozen(execArgv)).toBe(frozen);
  });
});

describe('growingPercentFor (runtime.heapTargetMb)', () => {
  const MB = 2 ** 20;
  it.each([
    // Four times the live heap fits in the target: V8 chooses.
    [30, 192, 0],
    [48, 192, 0],
    // Past that, the growth that reaches the target.
    [64, 192, 200],
    [96, 192, 100],
    [115, 192, 66],
    // Never below 20%, however large the live heap.
    [170, 192, 20],
    [400, 192, 20],
    [0, 192, 0],
  ])('%d MB live, target %d MB: %d%%', (liveMb, targetMb, percent) => {
    expect(growingPercentFor(liveMb * MB, targetMb * MB)).toBe(percent);
  });
});

describe('HeapTarget', () => {
  it('sets the growth after each full collection only when it changes, back to 0 once small', () => {
    const MB = 2 ** 20;
    const set: number[] = [];
    let live = 30 * MB;
    const target = new HeapTarget(
      192 * MB,
      (percent) => set.push(percent),
      () => live,
    );
    target.afterFullCollection();
    expect(set).toEqual([]);
    live = 96 * MB;
    target.afterFullCollection();
    target.afterFullCollection();
    live = 115 * MB;
    target.afterFullCollection();
    live = 20 * MB;
    target.afterFullCollection();
    expect(set).toEqual([100, 66, 0]);
    expect(target.growingPercent).toBe(0);
  });

  // The real observer and the real flag: a live heap past a quarter of the target gets
  // more full collections than the same churn with the target off.
  it('in a child process, narrows V8 growth over a large live heap', () => {
    const governed = runTargetChild(64);
    const free = runTargetChild(0);
    expect(governed.percent).toBeGreaterThan(0);
    expect(free.percent).toBe(0);
    expect(governed.majors).toBeGreaterThan(2 * free.majors);
  }, 120_000);
});

const TARGET_CHILD = `
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { governHeapGrowth } from ${JSON.stringify(MODULE)};
const growth = governHeapGrowth({ heapGrowingPercent: 0, heapTargetMb: Number(process.env.TARGET_MB) });
let majors = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
  }
}).observe({ entryTypes: ['gc'] });
globalThis.live = Array.from({ length: 600_000 }, (_, i) => ({ i, text: 'live-' + i }));
const ring = new Array(200_000);
for (let round = 0; round < 40; round++) {
  for (let i = 0; i < 150_000; i++) ring[i % ring.length] = { i, text: 'churn-' + i };
  await new Promise((resolve) => setImmediate(resolve));
}
setTimeout(() => console.log(JSON.stringify({ majors, percent: growth.growingPercent() })), 50);
`;

function runTargetChild(targetMb: number): { majors: number; percent: number } {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', TARGET_CHILD],
    { env: { ...process.env, TARGET_MB: String(targetMb) }, encoding: 'utf8', timeout: 60_000 },
  );
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
}
