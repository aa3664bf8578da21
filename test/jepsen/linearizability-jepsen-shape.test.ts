import { describe, expect, it } from 'vitest';
import { checkLockHistory } from '../../src/tools/jepsen/index.ts';
import { jepsenShapedHistory } from './linearizability-jepsen-shape.ts';

/**
 * The shape on which the search once ran out of budget (seed 779330080 of the long
 * Jepsen run: one lock, 6,455 ops, a violation past the middle, `unknown` after 1.15 M
 * states). Budgets are in model steps, not time, so the verdicts do not depend on the
 * machine's load; the old search needed more than 2 M steps on the planted history.
 */
const SHAPE = { seed: 11, clients: 5, ops: 6_000, unansweredChance: 0.08 };
const STATES_MAX = 400_000;

describe('linearizability checker: the long Jepsen run shape', () => {
  it('passes the correct history within the budget', () => {
    const ops = jepsenShapedHistory(SHAPE);
    const result = checkLockHistory(ops, {
      statesPerLockMax: STATES_MAX,
      timeLimitMs: 300_000,
      lockTimeLimitMs: 300_000,
    });
    const unanswered = ops.filter((op) => op.outcome === 'info').length;
    const refused = ops.filter((op) => op.outcome === 'fail').length;
    console.log(
      `jepsen shape: ${ops.length} ops (${unanswered} unanswered, ${refused} refusals): ` +
        `${result.verdict}, ${result.stats.statesExplored} states, ${result.stats.elapsedMs.toFixed(0)} ms`,
    );
    expect(unanswered).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(500);
    expect(result.verdict).toBe('ok');
  });

  it('finds a violation planted past the middle within the budget, not unknown', () => {
    const ops = jepsenShapedHistory({ ...SHAPE, plantTokenBackAt: 0.6 });
    const result = checkLockHistory(ops, {
      statesPerLockMax: STATES_MAX,
      timeLimitMs: 300_000,
      lockTimeLimitMs: 300_000,
    });
    const lock = result.locks[0];
    console.log(
      `jepsen shape, planted: ${result.verdict}, ${result.stats.statesExplored} states, ` +
        `${result.stats.elapsedMs.toFixed(0)} ms, witness of ${lock?.minimal?.length} ops`,
    );
    expect(result.verdict).toBe('violation');
    expect(lock?.minimal?.some((op) => op.session === 'planted')).toBe(true);
  });
});
