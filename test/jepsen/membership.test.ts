import { describe, expect, it } from 'vitest';
import { completedCycles } from '../../src/tools/jepsen/membership.ts';
import { runJepsen } from '../../src/tools/jepsen/run.ts';
import { countEvents, expectCleanRun, faultVerdict, statOf } from './nemesis-support.ts';

/**
 * The membership nemesis against real processes (issue 13, point 4): the cluster grows
 * 3 → 5 and shrinks back, the leader removed first, while clients run and nodes are
 * killed. The voters after each change are those the leader's Status names; the
 * checkers must stay valid.
 */
describe('jepsen membership nemesis', () => {
  it('grows 3 → 5 → 3 under load and kills, removing the leader, with Status agreeing', {
    timeout: 150_000,
  }, async () => {
    const result = await runJepsen({
      seconds: 20,
      seed: 20261205,
      clients: 3,
      locks: 2,
      nemeses: ['membership', 'kill'],
    });
    expectCleanRun(result);
    const verdict = faultVerdict(result, 'membership');
    console.log(`membership: ${JSON.stringify(verdict.details)}`);
    expect(verdict.valid).toBe(true);
    const sizes = String(verdict.details.stats?.sizes).split(' ').map(Number);
    // The exact walk depends on the OS's timing: a change that times out under the kills
    // is retried, and a change after which no leader answered Status is not recorded
    // (one CI run recorded 4 4 3 4 5 4 3 and was valid). So the sizes recorded
    // stay within 3..5, at least one full cycle is seen, and `valid` says Status agreed
    // with the changes made after each one it recorded.
    for (const size of sizes) {
      expect(size, `sizes ${sizes.join(' ')}`).toBeGreaterThanOrEqual(3);
      expect(size, `sizes ${sizes.join(' ')}`).toBeLessThanOrEqual(5);
    }
    expect(statOf(verdict, 'fullCycles')).toBeGreaterThanOrEqual(1);
    expect(statOf(verdict, 'leaderRemovals')).toBeGreaterThanOrEqual(1);
    const removedLeader = result.nemesisEvents.find(
      (event) => event.kind === 'member-remove' && event.detail === 'the leader',
    );
    expect(removedLeader).toBeDefined();
    expect(countEvents(result, 'kill')).toBeGreaterThanOrEqual(1);
  });

  it('counts a cycle only when the voters went up to the top and back down', () => {
    expect(completedCycles([4, 5, 4, 3, 4, 5, 4, 3], 3, 5)).toBe(2);
    expect(completedCycles([4, 5, 4, 3, 4], 3, 5)).toBe(1);
    expect(completedCycles([4, 3, 4, 3], 3, 5)).toBe(0);
    expect(completedCycles([4, 5, 4], 3, 5)).toBe(0);
  });
});
