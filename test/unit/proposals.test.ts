import { describe, expect, it } from 'vitest';
import type { AttemptsOfProposal, LockCommand, LockResult } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import {
  type AppliedProposal,
  type LateApplyWatch,
  ProposalRegistry,
} from '../../src/node/proposals.ts';
import { fencingToken, type LogIndex, logIndex, nodeId, sessionId } from '../../src/util/ids.ts';

const RESULT: LockResult = { type: 'Released', lock: 'x' };
const at = (index: number): LogIndex => logIndex(index);
const ACQUIRE: LockCommand = {
  type: 'Acquire',
  lock: 'x',
  sessionId: sessionId(1),
  requestId: 'r1',
  mode: 'exclusive',
  waitMs: 0,
  owner: '',
  maxHoldMs: 0,
  lockDelayMs: 0,
};
const NOWHERE = (): null => null;

function watch(listener: (applied: AppliedProposal) => void): LateApplyWatch {
  return { listener, command: ACQUIRE };
}

function registry(pendingMax = 10, bootId = 'boot-a'): ProposalRegistry {
  return new ProposalRegistry(nodeId('n1'), bootId, pendingMax, 5_000);
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return error instanceof DlmError ? error.code : 'other';
  }
}

describe('ProposalRegistry', () => {
  it('completes a write when its own entry applies', async () => {
    const proposals = registry();
    const { proposalId, applied } = proposals.add(0, 1_000);
    proposals.placed(proposalId, at(5));
    proposals.applied(at(5), proposalId, RESULT);
    await expect(applied).resolves.toEqual({ index: 5, result: RESULT });
    expect(proposals.size).toBe(0);
  });

  it('fails a write whose index applied with another entry (overwritten)', async () => {
    const proposals = registry();
    const { proposalId, applied } = proposals.add(0, 1_000);
    proposals.placed(proposalId, at(5));
    proposals.applied(at(4), null, null);
    expect(proposals.size).toBe(1);
    proposals.applied(at(5), 'n2/1', RESULT);
    expect(await codeOf(applied)).toBe('UNAVAILABLE');
  });

  it('fails a write placed at an index this node already applied', async () => {
    const proposals = registry();
    const { proposalId, applied } = proposals.add(0, 1_000);
    proposals.applied(at(7), null, null);
    proposals.placed(proposalId, at(7));
    expect(await codeOf(applied)).toBe('UNAVAILABLE');
  });

  it('a newer placement at the same index fails the older one', async () => {
    const proposals = registry();
    const first = proposals.add(0, 1_000);
    const second = proposals.add(0, 1_000);
    proposals.placed(first.proposalId, at(9));
    proposals.placed(second.proposalId, at(9));
    expect(await codeOf(first.applied)).toBe('UNAVAILABLE');
    proposals.applied(at(9), second.proposalId, RESULT);
    expect(await codeOf(second.applied)).toBe('resolved');
  });

  it('a restored snapshot fails the writes it covers and keeps the others', async () => {
    const proposals = registry();
    const covered = proposals.add(0, 1_000);
    const later = proposals.add(0, 1_000);
    proposals.placed(covered.proposalId, at(3));
    proposals.placed(later.proposalId, at(12));
    proposals.restored(at(10), NOWHERE);
    expect(await codeOf(covered.applied)).toBe('UNAVAILABLE');
    expect(proposals.size).toBe(1);
  });

  it('refuses past pendingMax at once, fails unplaced writes on demand, expires by deadline', async () => {
    const proposals = registry(2);
    const placed = proposals.add(0, 100);
    const unplaced = proposals.add(0, 1_000);
    expect(() => proposals.add(0, 1_000)).toThrow(/2 writes are already pending/);
    proposals.placed(placed.proposalId, at(2));
    proposals.failUnplaced(new DlmError('UNAVAILABLE', 'leader changed'), 0);
    expect(await codeOf(unplaced.applied)).toBe('UNAVAILABLE');
    proposals.expire(100);
    expect(await codeOf(placed.applied)).toBe('DEADLINE_EXCEEDED');
    expect(proposals.size).toBe(0);
  });

  it("gives each start of the process its own ids, so an older run's entry answers nobody", async () => {
    const before = registry(10, 'boot-a').add(0, 1_000);
    const after = registry(10, 'boot-b');
    const mine = after.add(0, 1_000);
    expect(mine.proposalId).not.toBe(before.proposalId);
    // The entry the previous run proposed applies: it is not this run's write.
    after.applied(at(5), before.proposalId, RESULT);
    expect(after.size).toBe(1);
    after.applied(at(6), mine.proposalId, RESULT);
    await expect(mine.applied).resolves.toEqual({ index: 6, result: RESULT });
  });

  it('completes a placed write only at the index it was placed at', async () => {
    const proposals = registry();
    const { proposalId, applied } = proposals.add(0, 1_000);
    proposals.placed(proposalId, at(7));
    // Another copy of the same write (a forward delivered twice) applies first.
    proposals.applied(at(6), proposalId, { type: 'Released', lock: 'copy' });
    expect(proposals.size).toBe(1);
    proposals.applied(at(7), proposalId, RESULT);
    await expect(applied).resolves.toEqual({ index: 7, result: RESULT });
  });

  it('tells the late-apply listener when a write its caller was told failed applies after all', async () => {
    const proposals = registry();
    const late: number[] = [];
    const timedOut = proposals.add(
      0,
      100,
      watch((applied) => late.push(applied.index)),
    );
    const unplaced = proposals.add(
      0,
      1_000,
      watch((applied) => late.push(applied.index)),
    );
    const refused = proposals.add(
      0,
      1_000,
      watch((applied) => late.push(applied.index)),
    );
    proposals.placed(timedOut.proposalId, at(3));
    proposals.fail(refused.proposalId, new DlmError('UNAVAILABLE', 'not the leader'));
    proposals.expire(100);
    proposals.failUnplaced(new DlmError('UNAVAILABLE', 'leader changed'), 100);
    for (const each of [timedOut, unplaced, refused]) await codeOf(each.applied);
    expect(proposals.orphanCount).toBe(2);
    proposals.applied(at(3), timedOut.proposalId, RESULT);
    proposals.applied(at(4), refused.proposalId, RESULT);
    proposals.applied(at(5), unplaced.proposalId, RESULT);
    // A refusal means it never entered the log: no listener for it.
    expect(late).toEqual([3, 5]);
    expect(proposals.orphanCount).toBe(0);
  });

  it('asks a restored snapshot about every watched write, wherever it was placed (seed 12158)', async () => {
    const proposals = registry();
    const late: number[] = [];
    const listen = () => watch((applied) => late.push(applied.index));
    const orphaned = proposals.add(0, 100, listen());
    const holding = proposals.add(0, 1_000, listen());
    const ended = proposals.add(0, 1_000, listen());
    const missing = proposals.add(0, 1_000, listen());
    const beyond = proposals.add(0, 1_000, listen());
    proposals.placed(beyond.proposalId, at(20));
    proposals.expire(100);
    expect(await codeOf(orphaned.applied)).toBe('DEADLINE_EXCEEDED');
    const granted: LockResult = {
      type: 'Acquired',
      lock: 'x',
      token: fencingToken(9),
      mode: 'exclusive',
      holders: [],
    };
    // What the restored state shows; its index says nothing of where each applied.
    const shown = new Map<string, AttemptsOfProposal>([
      // A forward delivered twice: two attempts, both given back.
      [orphaned.proposalId, { indexes: [at(4), at(6)], now: granted }],
      [holding.proposalId, { indexes: [at(7)], now: granted }],
      [ended.proposalId, { indexes: [at(8)], now: null }],
    ]);
    proposals.restored(at(10), (command, proposalId) => {
      expect(command).toBe(ACQUIRE);
      return shown.get(proposalId) ?? null;
    });
    expect(late).toEqual([4, 6]);
    // A caller still waiting is told its grant as of the snapshot, which may have come
    // after its own entry; giving it back names that entry.
    await expect(holding.applied).resolves.toEqual({
      index: 10,
      attemptIndex: 7,
      result: granted,
    });
    expect(await codeOf(ended.applied)).toBe('UNAVAILABLE');
    // Not in the snapshot and not placed in it: it may still apply, and is still pending.
    expect(proposals.size).toBe(2);
    expect(proposals.orphanCount).toBe(0);
    proposals.applied(at(11), missing.proposalId, RESULT);
    await expect(missing.applied).resolves.toEqual({ index: 11, result: RESULT });
  });

  it('stops watching failed writes after the watch time, and keeps at most pendingMax', async () => {
    const proposals = registry(2);
    const late: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { applied } = proposals.add(
        i,
        10,
        watch((each) => late.push(each.index)),
      );
      await Promise.resolve();
      proposals.expire(i + 10);
      await codeOf(applied);
    }
    expect(proposals.orphanCount).toBe(2);
    proposals.expire(5_000 + 20);
    expect(proposals.orphanCount).toBe(0);
  });
});
