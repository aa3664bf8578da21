/**
 * Runtime seed 5836 on 0a70385 (lockSetShare/semaphoreShare/electionShare 0): "Abandoned
 * acquire: c4 gave up b (session 83, request 5000012) ... yet its session holds it
 * through that request with token 112".
 *
 * Every node of that run started on a binary that applies behaviour version 1
 * (behaviourMaxes [1, 1, 1]) and none restarted, so the cluster stayed at version 1.
 * n2 (leader, term 4) placed c4's Acquire at 87, lost its leadership; the write timed
 * out on n2 and became an orphan (lateApply watched). n1 (term 5) committed 87 (Queued,
 * later granted when the holder's session expired, token 112). n2 rejoined behind the
 * leader's compacted log and installed a snapshot at 123; ProposalRegistry.restored
 * asked LockStateMachine.attemptsOf, which finds nothing below version 3
 * (BEHAVIOUR_ATTEMPT_PROPOSALS: no proposal ids recorded), so the orphan was dropped
 * untold, nothing proposed a Withdraw, and the grant stayed with the live session.
 *
 * The same with real DlmNodes, all on version 1 binaries: a follower's forwarded
 * Acquire is placed by the leader, but neither its placement nor the entries reach the
 * follower; the write fails (the leader did not answer) with its fate open, so its
 * late-apply listener is watched. The leader compacts past the entry, the follower
 * catches up by a snapshot. The listener must be told of the attempt (acquire.ts would
 * then withdraw it). Fails on 5045ecb: it is never told.
 */
import { afterEach, expect, it } from 'vitest';
import { BEHAVIOUR_BASE, BEHAVIOUR_LATEST, type LockResult } from '../../src/lock/index.ts';
import type { DlmNode } from '../../src/node/node.ts';
import { peerRecipient } from '../../src/node/peer-message.ts';
import type { AppliedProposal } from '../../src/node/proposals.ts';
import { BinariesCluster } from '../node/behaviour-cluster.ts';
import { until } from '../node/cluster-harness.ts';

let cluster: BinariesCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

it('control: from behaviour version 3 the orphan is told of it (passes)', async () => {
  expect(await orphanCoveredBySnapshot(BEHAVIOUR_LATEST)).toEqual(['Acquired']);
}, 30_000);

it('an orphan whose entry a restored snapshot covers is told of it below behaviour version 3 (runtime seed 5836)', async () => {
  expect(await orphanCoveredBySnapshot(BEHAVIOUR_BASE)).toEqual(['Acquired']);
}, 30_000);

/** What the follower's late-apply listener was told, on binaries applying up to `binary`. */
async function orphanCoveredBySnapshot(binary: number): Promise<string[]> {
  const all = new BinariesCluster({ n1: binary, n2: binary, n3: binary });
  cluster = all;
  const leader = await all.leader();
  await until(() => leader.locks.behaviour === binary, "the cluster at its binaries' version");
  const follower = [...all.nodes.values()].find((node) => node !== leader) as DlmNode;
  const opened = await leader.write({
    type: 'OpenSession',
    ttlMs: 60_000,
    clientName: 'c4',
    requestId: 'open-c4',
  });
  const session = (opened.result as Extract<LockResult, { type: 'SessionOpened' }>).sessionId;
  await until(() => follower.status().appliedIndex >= opened.index, 'the follower has the session');

  // Entries and the placement no longer reach the follower; heartbeats still do, so it
  // keeps its leader and does not campaign.
  all.network.hold(
    (message) =>
      peerRecipient(message) === follower.id &&
      (message.kind === 'forwardAccepted' ||
        (message.kind === 'raft' && message.message.type === 'AppendEntries')),
  );
  const late: AppliedProposal[] = [];
  const acquire = {
    type: 'Acquire' as const,
    lock: 'b',
    sessionId: session,
    mode: 'exclusive' as const,
    waitMs: 0,
    requestId: 'acquire-b',
    owner: 'c4',
    maxHoldMs: 0,
    lockDelayMs: 0,
  };
  const told = await follower.write(acquire, { lateApply: (applied) => late.push(applied) }).then(
    () => 'applied',
    (error: unknown) => String(error),
  );
  // Failed with its fate open: the leader placed it, the follower never heard where.
  expect(told).toMatch(/did not answer|did not apply/);
  await until(
    () => leader.locks.holdersOf('b').some((holder) => holder.sessionId === session),
    'the leader applied the Acquire',
  );
  const acquiredAt = leader.status().appliedIndex;

  // The leader moves on and compacts the log past the Acquire's entry.
  for (let i = 0; i < 40; i++) {
    await leader.write({ type: 'OpenSession', ttlMs: 60_000, clientName: 'x', requestId: `o${i}` });
  }
  const restored: number[] = [];
  follower.onRestored((index) => restored.push(index));
  // Stop holding; what was held is never delivered (the follower needs a snapshot now).
  all.network.hold(() => false);
  const commit = leader.status().commitIndex;
  await until(() => follower.status().appliedIndex >= commit, 'the follower caught up');

  expect(restored.length).toBeGreaterThan(0);
  expect(restored[0]).toBeGreaterThanOrEqual(acquiredAt);
  expect(follower.locks.behaviour).toBe(binary);
  // The caller was told its Acquire failed, and the session holds the lock through it:
  // unless the listener hears of it, nothing gives the grant back.
  expect(follower.locks.holdersOf('b').map((holder) => holder.sessionId)).toEqual([session]);
  return late.map((applied) => applied.result.type);
}
