/** Seeded partition plans (src/tools/jepsen/partition-plan.ts): valid shapes, replayable. */
import { describe, expect, it } from 'vitest';
import { reachable } from '../../src/tools/jepsen/grudge.ts';
import { CLIENT } from '../../src/tools/jepsen/netns.ts';
import {
  PARTITION_SHAPES,
  planPartition,
  shapesFor,
} from '../../src/tools/jepsen/partition-plan.ts';
import { Prng } from '../../src/util/prng.ts';

const five = ['n1', 'n2', 'n3', 'n4', 'n5'];

describe('planPartition', () => {
  it('replays the same plan for the same seed', () => {
    for (const shape of PARTITION_SHAPES) {
      const a = planPartition(shape, new Prng(9), five, 'n2');
      const b = planPartition(shape, new Prng(9), five, 'n2');
      expect(a.description).toBe(b.description);
      expect([...a.grudge].sort()).toEqual([...b.grudge].sort());
    }
  });

  it('leader shapes aim at the leader, or say they picked at random', () => {
    const isolated = planPartition('leader', new Prng(1), five, 'n4');
    expect(reachable(isolated.grudge, 'n4', five)).toEqual(['n4']);
    expect(isolated.description).toContain('n4 isolated (the leader)');
    const client = planPartition('clientLeader', new Prng(1), five, 'n4');
    expect([...client.grudge].sort()).toEqual([`${CLIENT}>n4`, `n4>${CLIENT}`]);
    expect(planPartition('leader', new Prng(1), five, null).description).toContain(
      'no known leader; picked',
    );
  });

  it('majority leaves exactly one side with a majority', () => {
    for (let seed = 0; seed < 20; seed++) {
      const { grudge } = planPartition('majority', new Prng(seed), five, null);
      const sizes = five.map((id) => reachable(grudge, id, five).length).sort();
      expect(sizes).toEqual([2, 2, 3, 3, 3]);
    }
  });

  it('majorities-ring is offered only from 4 nodes on', () => {
    expect(shapesFor(3)).not.toContain('majoritiesRing');
    expect(shapesFor(5)).toContain('majoritiesRing');
    expect(() => planPartition('majoritiesRing', new Prng(1), ['n1', 'n2', 'n3'], null)).toThrow(
      'at least 4 nodes',
    );
  });
});
