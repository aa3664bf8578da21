/**
 * Majority math (§5.3 commitment, §5.2 elections), checked against brute force with
 * fast-check. The properties use fixed seeds so that every run checks the same cases.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { majority, quorumMatchIndex, tallyVotes } from '../../src/raft/quorum.ts';
import { type LogIndex, logIndex, type NodeId, nodeId } from '../../src/util/ids.ts';

const voterIds = (count: number): NodeId[] => [...Array(count).keys()].map((i) => nodeId(`n${i}`));

/** The largest i such that more than half of the voters have match >= i (0 if none). */
function bruteQuorumMatch(matches: readonly number[]): number {
  let best = 0;
  const top = Math.max(0, ...matches);
  for (let i = 0; i <= top; i++) {
    const holders = matches.filter((m) => m >= i).length;
    if (2 * holders > matches.length) best = i;
  }
  return best;
}

/** Won when more than half granted; lost when more than half refused... or a majority can no longer be reached. */
function bruteTally(votes: readonly (boolean | undefined)[]): 'won' | 'lost' | 'pending' {
  const granted = votes.filter((v) => v === true).length;
  const missing = votes.filter((v) => v === undefined).length;
  if (2 * granted > votes.length) return 'won';
  if (2 * (granted + missing) <= votes.length) return 'lost';
  return 'pending';
}

describe('majority', () => {
  it.each([
    [1, 1],
    [2, 2],
    [3, 2],
    [4, 3],
    [5, 3],
    [6, 4],
    [7, 4],
  ])('of %i voters is %i', (voters, expected) => {
    expect(majority(voters)).toBe(expected);
  });
});

describe('quorumMatchIndex (§5.3: the highest index stored on a majority)', () => {
  it('equals the brute-force answer for any voter count and match indexes', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 50 }), { minLength: 1, maxLength: 9 }), (matches) => {
        const voters = voterIds(matches.length);
        const matchOf = new Map(voters.map((v, i) => [v, logIndex(matches[i] ?? 0)]));
        const result = quorumMatchIndex(voters, (id) => matchOf.get(id) ?? logIndex(0));
        expect(result).toBe(bruteQuorumMatch(matches));
      }),
      { seed: 424242, numRuns: 2000 },
    );
  });

  it('does not depend on the order of the voters', () => {
    fc.assert(
      fc.property(
        fc
          .array(fc.nat({ max: 20 }), { minLength: 1, maxLength: 7 })
          .chain((matches) =>
            fc.tuple(
              fc.constant(matches),
              fc.shuffledSubarray(matches, { minLength: matches.length }),
            ),
          ),
        ([matches, shuffled]) => {
          const run = (values: readonly number[]): LogIndex => {
            const voters = voterIds(values.length);
            return quorumMatchIndex(voters, (id) => logIndex(values[voters.indexOf(id)] ?? 0));
          };
          expect(run(shuffled)).toBe(run(matches));
        },
      ),
      { seed: 77, numRuns: 500 },
    );
  });

  it('is 0 for no voters, and a lone voter’s own match', () => {
    expect(quorumMatchIndex([], () => logIndex(9))).toBe(0);
    expect(quorumMatchIndex(voterIds(1), () => logIndex(9))).toBe(9);
  });
});

describe('tallyVotes (§5.2: a candidate wins with votes from a majority)', () => {
  it('equals the brute-force answer for any mix of granted, refused and missing votes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.option(fc.boolean(), { nil: undefined }), { minLength: 1, maxLength: 9 }),
        (votes) => {
          const voters = voterIds(votes.length);
          const ballot = new Map<NodeId, boolean>();
          voters.forEach((voter, i) => {
            const vote = votes[i];
            if (vote !== undefined) ballot.set(voter, vote);
          });
          expect(tallyVotes(voters, ballot)).toBe(bruteTally(votes));
        },
      ),
      { seed: 1234, numRuns: 2000 },
    );
  });

  it('ignores votes from non-voters (e.g. learners)', () => {
    const voters = voterIds(3);
    const ballot = new Map<NodeId, boolean>([
      [nodeId('n0'), true],
      [nodeId('learner1'), true],
      [nodeId('learner2'), true],
    ]);

    expect(tallyVotes(voters, ballot)).toBe('pending');
  });
});
