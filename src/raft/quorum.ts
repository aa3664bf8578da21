import type { LogIndex, NodeId } from '../util/ids.ts';
import { logIndex } from '../util/ids.ts';

/** Pure majority math, kept apart so it can be checked against brute force. */

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest index that a majority of voters have matched: the largest match index
 * that at least a majority of voters have reached. Counted pairwise (at most 32 voters)
 * rather than sorted into a new array: a leader asks on every acknowledgement.
 */
export function quorumMatchIndex(
  voters: readonly NodeId[],
  matchIndexOf: (id: NodeId) => LogIndex,
): LogIndex {
  const needed = majority(voters.length);
  let best = logIndex(0);
  for (const voter of voters) {
    const candidate = matchIndexOf(voter);
    if (candidate <= best) continue;
    let reached = 0;
    for (const other of voters) if (matchIndexOf(other) >= candidate) reached++;
    if (reached >= needed) best = candidate;
  }
  return best;
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
