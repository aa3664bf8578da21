/**
 * Review of 24cd0f7 (runtime.heapTargetMb). A config that sets both heapGrowingPercent
 * and heapTargetMb is accepted, and `dlm serve` silently drops the target: the node logs
 * nothing about it (every other heap setting that is not applied gets a warning line).
 * Since 6634304 the default target is 128, which an operator did not choose and is not
 * named (rvheapdef-default-warns.test.ts), so the target here is one they wrote: 192.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('../../src/node/heap-growth.ts', import.meta.url));

const CHILD = `
import { governHeapGrowth } from ${JSON.stringify(MODULE)};
const growth = governHeapGrowth({ heapGrowingPercent: 100, heapTargetMb: 192 });
console.log(JSON.stringify({ note: growth.note, percent: growth.growingPercent() }));
growth.stop();
`;

describe('runtime.heapTargetMb with runtime.heapGrowingPercent also set', () => {
  it('says that the target is not applied', () => {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', CHILD],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
    console.log(result);
    expect(result.percent).toBe(100);
    expect(result.note).toMatch(/heapTargetMb 192 not applied/);
  }, 60_000);
});
