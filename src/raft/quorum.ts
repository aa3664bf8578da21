import type { LogIndex, NodeId } from '../util/ids.ts';
import { logIndex } from '../util/ids.ts';

/** Pure majority math, kept apart so it can be checked against brute force. */

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest index that a majority of voters have matched: sort the match indexes in
 * descending order and take the one at position majority - 1.
 */
export function quorumMatchIndex(
  voters: readonly NodeId[],
  matchIndexOf: (id: NodeId) => LogIndex,
): LogIndex {
  if (voters.length === 0) return logIndex(0);
  const matched = voters.map(matchIndexOf).sort((a, b) => b - a);
  return matched[majority(voters.length) - 1] ?? logIndex(0);
}

export type VoteResult = 'won' | 'lost' | 'pending';

export function tallyVotes(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const voter of voters) {
    const vote = votes.get(voter);
    if (vote === true) granted++;
    if (vote === false) rejected++;
  }
  const needed = majority(voters.length);
  if (granted >= needed) return 'won';
  if (rejected > voters.length - needed) return 'lost';
  return 'pending';
}
