import { assertNever } from '../util/assert.ts';
import type { NodeId } from '../util/ids.ts';
import { normalizeConfig } from './storage.ts';
import type { ClusterConfig, ConfigChange } from './types.ts';

/** Why a one-server membership change (§6) cannot be made to a config. */
export type ConfigChangeRejection =
  | 'alreadyMember'
  | 'notALearner'
  | 'notAMember'
  | 'learnerBehind'
  | 'tooFewVoters';

/**
 * Why `change` cannot be made to `config`, or null when it can. `learnerLagEntries`
 * tells how many entries a learner's log trails the commit index; a learner is promoted
 * only when that is at most `lagEntriesMax`.
 */
export function configChangeRejection(
  config: ClusterConfig,
  change: ConfigChange,
  learnerLagEntries: (learner: NodeId) => number,
  lagEntriesMax: number,
): ConfigChangeRejection | null {
  const { voters, learners } = config;
  switch (change.type) {
    case 'addLearner':
      return voters.includes(change.nodeId) || learners.includes(change.nodeId)
        ? 'alreadyMember'
        : null;
    case 'promoteLearner':
      if (!learners.includes(change.nodeId)) return 'notALearner';
      return learnerLagEntries(change.nodeId) > lagEntriesMax ? 'learnerBehind' : null;
    case 'removeNode':
      if (!voters.includes(change.nodeId) && !learners.includes(change.nodeId)) return 'notAMember';
      // From two voters, a removal whose commit the other voter never learns leaves it
      // unable to win any election; keep at least two voters after a removal.
      return voters.includes(change.nodeId) && voters.length <= 2 ? 'tooFewVoters' : null;
    default:
      return assertNever(change, 'config change');
  }
}

/** The config after `change`. Config changes take effect when applied, on every node alike. */
export function changedConfig(config: ClusterConfig, change: ConfigChange): ClusterConfig {
  const voters = new Set(config.voters);
  const learners = new Set(config.learners);
  switch (change.type) {
    case 'addLearner':
      if (!voters.has(change.nodeId)) learners.add(change.nodeId);
      break;
    case 'promoteLearner':
      if (learners.delete(change.nodeId)) voters.add(change.nodeId);
      break;
    case 'removeNode':
      voters.delete(change.nodeId);
      learners.delete(change.nodeId);
      break;
    default:
      assertNever(change, 'config change');
  }
  return normalizeConfig({ voters: [...voters], learners: [...learners] });
}
