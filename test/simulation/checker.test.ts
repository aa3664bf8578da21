import { describe, expect, it } from 'vitest';
import type { Entry } from '../../src/raft/index.ts';
import { SafetyChecker, SafetyViolation } from '../../src/tools/simulate/checker.ts';
import { type LogIndex, logIndex, nodeId, type Term, term } from '../../src/util/ids.ts';

/** Each check of the simulator's checker fires on the state it exists to forbid. */
const n1 = nodeId('n1');
const n2 = nodeId('n2');

function entry(index: number, entryTerm: number, text: string): Entry {
  return {
    kind: 'normal',
    index: logIndex(index),
    term: term(entryTerm),
    data: new TextEncoder().encode(text),
  };
}

describe('SafetyChecker', () => {
  it('Election Safety: two leaders in one term', () => {
    const checker = new SafetyChecker();
    checker.leaderElected(n1, term(3));
    checker.leaderElected(n1, term(3));
    checker.leaderElected(n2, term(4));
    expect(() => checker.leaderElected(n2, term(3))).toThrow(/Election Safety/);
  });

  it('Log Matching: two different entries at one index and term', () => {
    const checker = new SafetyChecker();
    checker.entryPersisted(n1, entry(5, 2, 'a'), term(2));
    checker.entryPersisted(n2, entry(5, 2, 'a'), term(2));
    expect(() => checker.entryPersisted(n2, entry(5, 2, 'b'), term(2))).toThrow(/Log Matching/);
  });

  it('Log Matching: the same entry after a different predecessor', () => {
    const checker = new SafetyChecker();
    checker.entryPersisted(n1, entry(5, 2, 'a'), term(2));
    expect(() => checker.entryPersisted(n2, entry(5, 2, 'a'), term(1))).toThrow(/Log Matching/);
  });

  it('State Machine Safety: a different entry committed at a committed index', () => {
    const checker = new SafetyChecker();
    expect(checker.entryCommitted(n1, term(2), entry(5, 2, 'a'))).toBe(true);
    expect(checker.entryCommitted(n2, term(2), entry(5, 2, 'a'))).toBe(false);
    expect(() => checker.entryCommitted(n2, term(3), entry(5, 3, 'b'))).toThrow(
      /State Machine Safety/,
    );
  });

  it('State Machine Safety: different digests or entries applied at one index', () => {
    const checker = new SafetyChecker();
    checker.entryApplied(n1, entry(5, 2, 'a'), 111);
    expect(() => checker.entryApplied(n2, entry(5, 2, 'b'), 111)).toThrow(/State Machine Safety/);
    expect(() => checker.snapshotRestored(n2, logIndex(5), 222)).toThrow(/State Machine Safety/);
  });

  it('Leader Completeness: a leader missing an entry committed in an earlier term', () => {
    const checker = new SafetyChecker();
    checker.entryCommitted(n1, term(2), entry(5, 2, 'a'));
    const termAt =
      (held: Record<number, number>) =>
      (index: LogIndex): Term | undefined =>
        held[index] === undefined ? undefined : term(held[index]);
    checker.leaderHasCommitted(n2, term(3), logIndex(1), logIndex(5), termAt({ 5: 2 }));
    expect(() =>
      checker.leaderHasCommitted(n2, term(3), logIndex(1), logIndex(4), termAt({})),
    ).toThrow(/Leader Completeness/);
    expect(() =>
      checker.leaderHasCommitted(n2, term(3), logIndex(1), logIndex(5), termAt({ 5: 1 })),
    ).toThrow(/Leader Completeness/);
  });

  it('durable term and vote never go back', () => {
    const checker = new SafetyChecker();
    checker.hardStatePersisted(n1, { term: term(3), votedFor: n2, commitIndex: logIndex(1) });
    expect(() =>
      checker.hardStatePersisted(n1, { term: term(3), votedFor: n1, commitIndex: logIndex(1) }),
    ).toThrow(/Durable vote/);
    expect(() =>
      checker.hardStatePersisted(n1, { term: term(2), votedFor: null, commitIndex: logIndex(1) }),
    ).toThrow(/Durable term/);
    expect(() => checker.restarted(n1, term(2), null)).toThrow(SafetyViolation);
  });

  it('a read must not miss a write committed before it was issued', () => {
    const checker = new SafetyChecker();
    checker.readServed(n1, logIndex(7), 7);
    expect(() => checker.readServed(n1, logIndex(6), 7)).toThrow(/Linearizable read/);
  });
});
