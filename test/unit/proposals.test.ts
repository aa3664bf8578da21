import { describe, expect, it } from 'vitest';
import type { LockResult } from '../../src/lock/index.ts';
import { DlmError } from '../../src/node/errors.ts';
import { ProposalRegistry } from '../../src/node/proposals.ts';
import { type LogIndex, logIndex, nodeId } from '../../src/util/ids.ts';

const RESULT: LockResult = { type: 'Released', lock: 'x' };
const at = (index: number): LogIndex => logIndex(index);

function registry(pendingMax = 10): ProposalRegistry {
  return new ProposalRegistry(nodeId('n1'), pendingMax);
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
    proposals.restored(at(10));
    expect(await codeOf(covered.applied)).toBe('UNAVAILABLE');
    expect(proposals.size).toBe(1);
  });

  it('refuses past pendingMax at once, fails unplaced writes on demand, expires by deadline', async () => {
    const proposals = registry(2);
    const placed = proposals.add(0, 100);
    const unplaced = proposals.add(0, 1_000);
    expect(() => proposals.add(0, 1_000)).toThrow(/2 writes are already pending/);
    proposals.placed(placed.proposalId, at(2));
    proposals.failUnplaced(new DlmError('UNAVAILABLE', 'leader changed'));
    expect(await codeOf(unplaced.applied)).toBe('UNAVAILABLE');
    proposals.expire(100);
    expect(await codeOf(placed.applied)).toBe('DEADLINE_EXCEEDED');
    expect(proposals.size).toBe(0);
  });
});
