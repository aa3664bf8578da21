/**
 * Review of 24cd0f7 (runtime.heapTargetMb). README suggests giving V8's growth on the
 * command line (`--node-flags "--heap-growing-percent=100"`), and collectGarbage already
 * leaves a flag alone that the command line set (f8ae835). HeapTarget does not: it starts
 * out believing V8 chooses (growingPercent() reports 0 while the command line's 100 is in
 * force), overwrites the operator's value with its own once the live heap passes a
 * quarter of the target, and when the live heap shrinks again writes
 * --heap-growing-percent=0, so the node ends up with V8's own growth (up to 4x) and the
 * operator's setting is gone for the rest of the process.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MODULE = fileURLToPath(new URL('../../src/node/heap-growth.ts', import.meta.url));

const CHILD = `
import v8 from 'node:v8';
const set = [];
const real = v8.setFlagsFromString;
v8.setFlagsFromString = (flags) => { set.push(flags); return real.call(v8, flags); };
const { governHeapGrowth } = await import(${JSON.stringify(MODULE)});
const growth = governHeapGrowth({ heapGrowingPercent: 0, heapTargetMb: 128 });
const atStart = growth.growingPercent();
const tick = () => new Promise((resolve) => setTimeout(resolve, 1));
async function churn(rounds) {
  const ring = new Array(100_000);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 20_000; i++) ring[i % ring.length] = { i, text: 'churn-' + i + r };
    await tick();
  }
}
// A large state (past a quarter of the target), then most of it released.
globalThis.live = Array.from({ length: 900_000 }, (_, i) => ({ i, text: 'live-' + i }));
await churn(150);
globalThis.live = null;
await churn(150);
console.log(JSON.stringify({ atStart, atEnd: growth.growingPercent(), set }));
`;

describe('runtime.heapTargetMb with --heap-growing-percent on the command line', () => {
  it("keeps the command line's growth: reports it and never writes it away", () => {
    const out = execFileSync(
      process.execPath,
      ['--heap-growing-percent=100', '--import', 'tsx', '--input-type=module', '-e', CHILD],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
    console.log(result);
    expect(result.atStart).toBe(100);
    expect(result.set).not.toContain('--heap-growing-percent=0');
    expect(result.atEnd).toBe(100);
  }, 60_000);
});
