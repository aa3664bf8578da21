import { describe, expect, it } from 'vitest';
import {
  BEHAVIOUR_ATTEMPT_PROPOSALS,
  BEHAVIOUR_BASE,
  DEFAULT_LOCK_LIMITS,
  type LockCommand,
} from '../../../src/lock/index.ts';
import { encodeEntry } from '../../../src/node/entry-codec.ts';
import type { Entry } from '../../../src/raft/types.ts';
import {
  RuntimeChecker,
  type UnresolvedReport,
} from '../../../src/tools/simulate/runtime/checker.ts';
import { deriveRuntimeOptions } from '../../../src/tools/simulate/runtime/options.ts';
import { runRuntimeSimulation } from '../../../src/tools/simulate/runtime/runner.ts';
import type { LogIndex, SessionId, Term } from '../../../src/util/ids.ts';

/**
 * The runtime checker's rule for a given-up Acquire still held at the end of a run
 * (runner.ts checkGivenUp, RuntimeChecker.keptBelowV3). Below lock behaviour version 3 an
 * attempt records no proposal, so a node that caught up by a snapshot covering its
 * write cannot resolve it, and the grant stays with its session: documented
 * (docs/operations.md, Upgrading), counted, not a violation. It is that only when a node
 * reported the write unresolved and the log shows the write's own entry, of that very
 * request, applied below version 3; everything else stays a violation (runtime seed 5836
 * failed on 0a70385 for want of this rule; the injected bugs ignoresRestoredAttempts and
 * giveBackByEntryIndex are caught at version 3 and above).
 */
const OLD = 2 as SessionId;
const NEW = 3 as SessionId;
const OLD_PROPOSAL = 'n2/boot-1/7';
const NEW_PROPOSAL = 'n2/boot-1/9';

function acquire(sessionId: SessionId, lock: string, requestId: string): LockCommand {
  return {
    type: 'Acquire',
    lock,
    sessionId,
    mode: 'exclusive',
    waitMs: 0,
    requestId,
    owner: 'c',
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
}

const LOG: readonly [string, LockCommand][] = [
  ['p1', { type: 'SetRules', rules: DEFAULT_LOCK_LIMITS, onlyIfUnset: true }],
  ['p2', { type: 'OpenSession', ttlMs: 10_000, clientName: 'c1', requestId: 'o1' }],
  ['p3', { type: 'OpenSession', ttlMs: 10_000, clientName: 'c2', requestId: 'o2' }],
  // 4: granted at version 1 (token 4), the attempt records no proposal.
  [OLD_PROPOSAL, acquire(OLD, 'x', 'r-old')],
  // 5: the raise; 6: granted at version 3 (token 6), the attempt records its proposal.
  ['p5', { type: 'SetBehaviour', version: BEHAVIOUR_ATTEMPT_PROPOSALS }],
  [NEW_PROPOSAL, acquire(NEW, 'y', 'r-new')],
];

function checkerWithLog(): RuntimeChecker {
  const checker = new RuntimeChecker(0, () => 0);
  const entries: Entry[] = LOG.map(([proposalId, command], i) => ({
    kind: 'normal',
    term: 1 as Term,
    index: (i + 1) as LogIndex,
    data: encodeEntry({ proposalId, command }),
  }));
  checker.committed('n1', entries);
  expect(checker.violation).toBeNull();
  return checker;
}

function report(
  proposalId: string,
  sessionId: SessionId,
  requestId: string,
  snapshotIndex = 6,
): UnresolvedReport {
  return { node: 'n2', incarnation: 1, proposalId, sessionId, requestId, snapshotIndex };
}

describe('a given-up Acquire still held: the documented limitation below behaviour version 3', () => {
  it('counts one whose unresolved write applied below version 3 as the limitation', () => {
    const checker = checkerWithLog();
    // Held through the given-up request: without the rule this is "Abandoned acquire".
    expect(checker.holdsThrough(OLD, 'r-old', 'x')).toBe(4);
    const kept = checker.keptBelowV3({ sessionId: OLD, requestId: 'r-old' }, [
      report(NEW_PROPOSAL, NEW, 'r-new'),
      report(OLD_PROPOSAL, OLD, 'r-old'),
    ]);
    expect(kept).toEqual({
      ...report(OLD_PROPOSAL, OLD, 'r-old'),
      index: 4,
      behaviour: BEHAVIOUR_BASE,
    });
  });

  it('leaves one whose write applied at version 3 a violation, reported unresolved or not', () => {
    const checker = checkerWithLog();
    expect(checker.holdsThrough(NEW, 'r-new', 'y')).toBe(6);
    const given = { sessionId: NEW, requestId: 'r-new' };
    // The node could have found its attempt: its report excuses nothing.
    expect(checker.keptBelowV3(given, [report(NEW_PROPOSAL, NEW, 'r-new')])).toBeNull();
    expect(checker.keptBelowV3(given, [])).toBeNull();
  });

  it('leaves one below version 3 a violation unless a node reported that very write', () => {
    const checker = checkerWithLog();
    const given = { sessionId: OLD, requestId: 'r-old' };
    // No node said it could not resolve it (it should have been told, and withdrawn).
    expect(checker.keptBelowV3(given, [])).toBeNull();
    // A report of a write that never committed, or whose entry is another request's.
    expect(checker.keptBelowV3(given, [report('n2/boot-1/8', OLD, 'r-old')])).toBeNull();
    expect(checker.keptBelowV3(given, [report('p3', OLD, 'r-old')])).toBeNull();
    // A report of another request of the same session.
    expect(checker.keptBelowV3(given, [report(OLD_PROPOSAL, OLD, 'r-other')])).toBeNull();
  });
});

describe('the limitation in a runtime run, real nodes reporting it', () => {
  /**
   * Runtime seed 12121 with every node on a version-1 binary (none restarts, so the
   * version stays 1) and a snapshot every 10 entries: n2 placed c1's Acquire at 87
   * (queued), caught up by a snapshot at 91 before applying it, could not resolve it
   * and reported it; c1 gave up, and its session was granted c at 101. On b5a609e this
   * run failed "Abandoned acquire". If schedules move and the run no longer shows the
   * case (counted 0), find another seed: scan with these overrides and look for
   * givenUpUnresolvedBelowV3 in the stats.
   */
  it('counts the kept grant and notes it, instead of failing (seed 12121, all nodes at version 1)', async () => {
    const seed = 12121;
    const derived = deriveRuntimeOptions(seed);
    const result = await runRuntimeSimulation(seed, {
      lockSetShare: 0,
      semaphoreShare: 0,
      electionShare: 0,
      behaviourMaxes: derived.behaviourMaxes.map(() => BEHAVIOUR_BASE),
      runtime: { ...derived.runtime, snapshotEntriesThreshold: 10, compactionRetainEntries: 2 },
    });
    expect(result.violation).toBeNull();
    expect(result.stats.givenUpUnresolvedBelowV3).toBe(1);
    expect(result.stats.writesUnresolved).toBeGreaterThanOrEqual(1);
    expect(result.notes.join('\n')).toMatch(
      /could not resolve .* its entry \d+ applied at behaviour version 1 \(below 3/,
    );
  });
});
