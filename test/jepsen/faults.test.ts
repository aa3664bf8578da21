import { spawn } from 'node:child_process';
import { describe, expect, it, type TestContext } from 'vitest';
import {
  CLOCK_RATE_BEYOND,
  CLOCK_RATE_IN_BOUND,
  clockFaultsUnavailable,
  LIBFAKETIME,
  planClockFault,
} from '../../src/tools/jepsen/faults.ts';
import { Prng } from '../../src/util/prng.ts';

/** The rate in a plan's FAKETIME ("+0 x1.03"), or null for a jump. */
function rateOf(env: Readonly<Record<string, string>>): number | null {
  const match = /^\+0 x([0-9.]+)$/.exec(env.FAKETIME ?? '');
  return match === null ? null : Number(match[1]);
}

describe('clock fault plans', () => {
  it('stay within the drift bound unless beyond; jumps leave the monotonic clock alone; a seed replays', () => {
    const kinds = new Set<string>();
    for (let seed = 1; seed <= 200; seed++) {
      const plan = planClockFault(new Prng(seed), '/tmp/x.rc');
      kinds.add(plan.kind);
      expect(plan.env.LD_PRELOAD).toBe(LIBFAKETIME);
      if (plan.kind === 'rate') {
        const rate = rateOf(plan.env) as number;
        expect(rate).toBeGreaterThanOrEqual(CLOCK_RATE_IN_BOUND[0]);
        expect(rate).toBeLessThanOrEqual(CLOCK_RATE_IN_BOUND[1]);
        expect(plan.jumpTo).toBeNull();
      } else {
        expect(plan.env.FAKETIME_DONT_FAKE_MONOTONIC).toBe('1');
        expect(plan.env.FAKETIME_TIMESTAMP_FILE).toBe('/tmp/x.rc');
        expect(plan.jumpTo).toMatch(plan.kind === 'wall-jump-forward' ? /^\+\d+s$/ : /^-\d+s$/);
      }
      const beyond = planClockFault(new Prng(seed), '/tmp/x.rc', true);
      expect(beyond.kind).toBe('rate-beyond');
      expect(rateOf(beyond.env)).toBeGreaterThanOrEqual(CLOCK_RATE_BEYOND[0]);
      expect(planClockFault(new Prng(seed), '/tmp/x.rc')).toEqual(plan);
    }
    expect([...kinds].sort()).toEqual(['rate', 'wall-jump-back', 'wall-jump-forward']);
  });
});

/**
 * What the clock nemesis relies on, measured on this machine: libfaketime's rate change
 * reaches Node's monotonic clock (and so dlm's leases and timers) unless
 * FAKETIME_DONT_FAKE_MONOTONIC=1. A child prints a line every 100 ms of its
 * performance.now(); the real time between its 1st and 11th line shows its rate.
 */
describe('libfaketime and Node 20 clocks', () => {
  const realMsForOneFakeSecond = (env: Record<string, string>): Promise<number> =>
    new Promise((resolve, reject) => {
      const script =
        'let n=0;const t0=performance.now();const tick=()=>{console.log(n);if(++n>10)process.exit(0);' +
        'const due=t0+n*100;while(performance.now()<due-5){}setImmediate(tick)};tick()';
      const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, ...env } });
      const seen: number[] = [];
      child.stdout.on('data', (chunk: Buffer) => {
        for (const _ of chunk.toString().trim().split('\n')) seen.push(performance.now());
      });
      child.once('error', reject);
      child.once('exit', () =>
        seen.length >= 11
          ? resolve((seen[10] as number) - (seen[0] as number))
          : reject(new Error(`the child printed ${seen.length} lines`)),
      );
    });

  it('a rate of x2 halves the real time of a monotonic second; not with monotonic left alone', async (ctx: TestContext) => {
    const unavailable = clockFaultsUnavailable();
    if (unavailable !== null) {
      console.log(`skipped: ${unavailable}`);
      ctx.skip();
    }
    const faked = await realMsForOneFakeSecond({ LD_PRELOAD: LIBFAKETIME, FAKETIME: '+0 x2' });
    const spared = await realMsForOneFakeSecond({
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME: '+0 x2',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    });
    console.log(
      `one monotonic second took ${faked.toFixed(0)} ms faked, ${spared.toFixed(0)} ms spared`,
    );
    expect(faked).toBeLessThan(750);
    expect(spared).toBeGreaterThan(900);
  });
});
