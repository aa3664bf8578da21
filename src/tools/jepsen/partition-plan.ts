import type { Prng } from '../../util/prng.ts';
import {
  between,
  bridge,
  bridgeNode,
  cutsText,
  type Grudge,
  isolate,
  majoritiesRing,
  oneWay,
  partition,
} from './grudge.ts';
import { CLIENT } from './netns.ts';

/**
 * A seeded choice of partition for a nemesis schedule: which shape, then which nodes
 * land where, every draw from the caller's PRNG so a seed replays the same schedule.
 */
export const PARTITION_SHAPES = [
  'one',
  'leader',
  'majority',
  'majoritiesRing',
  'bridge',
  'oneWay',
  'clientLeader',
] as const;
export type PartitionShape = (typeof PARTITION_SHAPES)[number];

export interface PartitionPlan {
  readonly shape: PartitionShape;
  readonly grudge: Grudge;
  /** For the history and the report: the shape, the nodes it picked, and the cuts. */
  readonly description: string;
}

/** The shapes that make sense for a cluster of `size` nodes (majorities-ring needs 4). */
export function shapesFor(size: number): PartitionShape[] {
  return PARTITION_SHAPES.filter((shape) => shape !== 'majoritiesRing' || size >= 4);
}

/**
 * `leader`: the node the harness believes leads, or null when it knows none; the
 * leader-directed shapes then pick a node at random and say so.
 */
export function planPartition(
  shape: PartitionShape,
  prng: Prng,
  nodes: readonly string[],
  leader: string | null,
): PartitionPlan {
  if (nodes.length < 2) throw new Error(`a partition needs at least 2 nodes, got ${nodes.length}`);
  const shuffled = prng.shuffle(nodes);
  const target = (): { id: string; why: string } =>
    leader !== null && nodes.includes(leader)
      ? { id: leader, why: 'the leader' }
      : { id: prng.pick(nodes), why: 'no known leader; picked' };
  const plan = (grudge: Grudge, what: string): PartitionPlan => ({
    shape,
    grudge,
    description: `${shape}: ${what}; cuts ${cutsText(grudge)}`,
  });
  switch (shape) {
    case 'one': {
      const id = prng.pick(nodes);
      return plan(isolate(id, nodes), `${id} isolated`);
    }
    case 'leader': {
      const { id, why } = target();
      return plan(isolate(id, nodes), `${id} isolated (${why})`);
    }
    case 'majority': {
      const minority = shuffled.slice(0, Math.floor((nodes.length - 1) / 2));
      const majority = shuffled.slice(minority.length);
      return plan(
        partition([minority, majority], nodes),
        `{${minority.join(',')}} | {${majority.join(',')}}`,
      );
    }
    case 'majoritiesRing':
      return plan(majoritiesRing(shuffled), `ring ${shuffled.join('-')}`);
    case 'bridge':
      return plan(bridge(shuffled), `${bridgeNode(shuffled)} bridges ${shuffled.join(',')}`);
    case 'oneWay': {
      const [from, to] = shuffled as [string, string];
      return plan(oneWay(from, to), `${from} -> ${to} dropped`);
    }
    case 'clientLeader': {
      const { id, why } = target();
      return plan(between(CLIENT, id), `client cut from ${id} (${why})`);
    }
  }
}
