/**
 * Review of 5774711 (the simulator's busy-cluster liveness rule). A follower that
 * learns the commit index only from appends carrying entries (rvliv-support.ts) never
 * applies the leader's last entry until another one follows: in a quiet cluster, never.
 * The old quiet-instant rule reports it; the new rule accepts it on the same seeds,
 * because live sessions keep the log moving and "applied the commit index of an
 * earlier check" is then always reached eventually. catchUpRounds is also never reset,
 * so "twice in a row" is really "twice in the window": seeds 18 and 20 are caught by
 * the rule as its comment describes it (CONSECUTIVE_RULE), missed by the rule as coded.
 */
import { describe, expect, it } from 'vitest';
import { runSimulation } from '../../src/tools/simulate/simulator.ts';
import {
  CONSECUTIVE_RULE,
  LEARNS_COMMIT_ONLY_FROM_ENTRIES,
  OLD_RULE,
  withRule,
} from './rvliv-support.ts';

const SEEDS = [12, 18, 20];

describe('learnsCommitOnlyFromEntries (a follower that stays one entry behind)', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: clean without the bug`, () => {
      expect(runSimulation(seed).violation).toBeNull();
    });

    it(`seed ${seed}: the pre-5774711 quiet-instant rule catches it`, () => {
      const result = withRule(OLD_RULE, () =>
        runSimulation(seed, {}, LEARNS_COMMIT_ONLY_FROM_ENTRIES),
      );
      expect(result.violation).toMatch(/^Violation: Liveness: /);
    });

    it(`seed ${seed}: the simulator as committed catches it (FAILS at 5774711)`, () => {
      const result = runSimulation(seed, {}, LEARNS_COMMIT_ONLY_FROM_ENTRIES);
      expect(result.violation, `passed at ${result.virtualTimeMs} ms`).toMatch(
        /^Violation: Liveness: /,
      );
    });
  }

  for (const seed of [18, 20]) {
    it(`seed ${seed}: counting only consecutive rounds would have caught it`, () => {
      const result = withRule(CONSECUTIVE_RULE, () =>
        runSimulation(seed, {}, LEARNS_COMMIT_ONLY_FROM_ENTRIES),
      );
      expect(result.violation).toMatch(/^Violation: Liveness: /);
    });
  }
});
