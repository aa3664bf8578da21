/**
 * runtime.heapGrowingPercent reaches V8 (src/node/heap-growth.ts): in a child process,
 * the same churn of long-lived garbage over a live heap runs many more full collections
 * at 10% than at 400%; and under --freeze-flags-after-init, where a flag change would
 * abort the process, the node says it cannot apply it and runs on.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
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
      "runtime.heapGrowingPercent 100 not applied: node runs with --freeze-flags-after-init, so V8's flags cannot be set",
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
