import { describe, expect, it } from 'vitest';
import { checkLockHistory, explainCheck } from '../../src/tools/jepsen/index.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  type Command,
  type CommandKind,
  generateRun,
  mutateReleaseNotHeld,
} from './linearizability-gen.ts';

/**
 * Search time on long histories: printed, not asserted (a timed assertion would fail on
 * a loaded machine and say nothing about the checker). The verdict is asserted.
 */
const KINDS: readonly CommandKind[] = [
  'open',
  'validate',
  'keepAlive',
  'keepAlive',
  'acquire',
  'acquire',
  'acquire',
  'release',
  'release',
  'idle',
];

interface LongRun {
  readonly commands: number;
  readonly sessions: number;
  readonly locks: number;
  readonly stepMsMax: number;
  readonly widenMsMax: number;
  /** One answer in this many is lost (`info`). */
  readonly lostOneIn: number;
}

function longShape(seed: number, run: LongRun): { ttlMs: number[]; commands: Command[] } {
  const prng = new Prng(seed);
  const ttlMs = Array.from({ length: run.sessions }, () => prng.pick([200, 500, 2_000]));
  const commands = Array.from(
    { length: run.commands },
    (): Command => ({
      kind: prng.pick(KINDS),
      session: prng.intBetween(0, run.sessions - 1),
      lock: prng.intBetween(0, run.locks - 1),
      shared: prng.chance(0.2),
      stepMs: prng.intBetween(0, run.stepMsMax),
      widenBeforeMs: prng.intBetween(0, run.widenMsMax),
      widenAfterMs: prng.intBetween(0, run.widenMsMax),
      unknown: prng.intBetween(1, run.lostOneIn) === 1,
      tokenGap: prng.intBetween(0, 3),
    }),
  );
  return { ttlMs, commands };
}

describe('linearizability checker: long histories (times printed)', () => {
  const cases: [string, LongRun][] = [
    [
      'low concurrency',
      { commands: 12_500, sessions: 40, locks: 20, stepMsMax: 4, widenMsMax: 10, lostOneIn: 50 },
    ],
    [
      'high concurrency (calls up to 2 × 100 ms wide)',
      { commands: 12_500, sessions: 40, locks: 20, stepMsMax: 2, widenMsMax: 100, lostOneIn: 50 },
    ],
    [
      'very high concurrency (calls up to 2 × 600 ms wide)',
      { commands: 12_500, sessions: 40, locks: 20, stepMsMax: 2, widenMsMax: 600, lostOneIn: 50 },
    ],
  ];
  for (const [name, shape] of cases) {
    it(`checks ~10k ops across 20 locks, ${name}`, () => {
      const run = generateRun(longShape(7, shape));
      const result = checkLockHistory(run.ops, { timeLimitMs: 100_000 });
      const lost = run.ops.filter((op) => op.outcome === 'info').length;
      const perLock = result.locks.map((r) => r.stats.elapsedMs).sort((a, b) => b - a);
      const searched = result.locks.reduce((sum, r) => sum + r.ops.length, 0);
      console.log(
        `long history, ${name}: ${run.ops.length} ops (${lost} info), ${searched} searched ` +
          `(${meanOverlap(result.locks.map((r) => r.ops)).toFixed(1)} others in flight per op), ${result.stats.locks} locks: ` +
          `${result.verdict} in ${result.stats.elapsedMs.toFixed(0)} ms, ` +
          `${result.stats.statesExplored} states, slowest lock ${perLock[0]?.toFixed(0)} ms`,
      );
      if (result.verdict !== 'ok') console.log(explainCheck(result));
      expect(result.verdict).toBe('ok');
      expect(run.ops.length).toBeGreaterThan(10_000);
    });
  }

  it('finds a violation planted in the middle of a long, very concurrent history', () => {
    const run = generateRun(longShape(7, cases[2]?.[1] as LongRun));
    const grants = run.ops.filter((op) => op.type === 'acquire' && op.outcome === 'ok').length;
    const history = mutateReleaseNotHeld(run, Math.floor(grants / 2)) ?? [];
    const result = checkLockHistory(history, { timeLimitMs: 100_000 });
    const failing = result.locks.find((r) => r.verdict !== 'ok');
    console.log(
      `long history with a planted violation: ${result.verdict} in ${result.stats.elapsedMs.toFixed(0)} ms, ` +
        `${result.stats.statesExplored} states; failing lock: ${failing?.ops.length} ops, ` +
        `search ${failing?.stats.elapsedMs.toFixed(0)} ms, witness of ${failing?.minimal?.length} ops`,
    );
    expect(result.verdict).toBe('violation');
    // The witness holds the planted release (appended last) and is far smaller than the lock's ops.
    const planted = history.at(-1);
    expect(failing?.minimal).toContain(planted);
    expect(failing?.minimal?.length).toBeLessThan((failing?.ops.length ?? 0) / 4);
  });
});

/** How many other ops of the same lock overlap an op's interval, on average (answered ops). */
function meanOverlap(
  parts: readonly (readonly { invokeMs: number; completeMs: number | null }[])[],
): number {
  let total = 0;
  let count = 0;
  for (const ops of parts) {
    const answered = ops.filter((op) => op.completeMs !== null);
    for (const op of answered) {
      const end = op.completeMs as number;
      total += answered.filter(
        (o) => o !== op && o.invokeMs <= end && (o.completeMs as number) >= op.invokeMs,
      ).length;
      count++;
    }
  }
  return count === 0 ? 0 : total / count;
}
