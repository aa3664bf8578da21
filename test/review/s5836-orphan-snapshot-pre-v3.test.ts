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
 * catches up by a snapshot. Failed on 5045ecb as written then (it asked that the
 * listener be told below version 3 too).
 *
 * Below version 3 that cannot be done, and docs/operations.md (Upgrading) says so: "below
 * version 3 such a grant stays with its session until released or the session ends".
 * The snapshot's attempts record no proposal, so the follower cannot tell whether the
 * attempt it shows is its write or a retry of the same request whose caller was told
 * the grant; giving it back by entry index could take it from that caller. So the test
 * now pins what is promised: from version 3 the listener is told (acquire.ts withdraws
 * it); below it the listener is not told, the grant stays with the session, and the
 * node says so: its observers hear of the write (logged by `dlm serve`) and
 * dlm_orphans_unresolved_total{state="orphan"} counts it.
 */
import { afterEach, expect, it } from 'vitest';
import { BEHAVIOUR_BASE, BEHAVIOUR_LATEST, type LockResult } from '../../src/lock/index.ts';
import { NodeMetrics } from '../../src/node/metrics.ts';
import type { DlmNode } from '../../src/node/node.ts';
import { peerRecipient } from '../../src/node/peer-message.ts';
import {
  type AppliedProposal,
  type UnresolvedWrite,
  unresolvedWriteFields,
} from '../../src/node/proposals.ts';
import { BinariesCluster } from '../node/behaviour-cluster.ts';
import { until } from '../node/cluster-harness.ts';

let cluster: BinariesCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

it('from behaviour version 3 the orphan is told of it, and nothing is unresolved', async () => {
  const seen = await orphanCoveredBySnapshot(BEHAVIOUR_LATEST);
  expect(seen.told).toEqual(['Acquired']);
  expect(seen.unresolved).toEqual([]);
  expect(seen.counted).toBe(0);
}, 30_000);

it('below behaviour version 3 the grant stays with its session, and the node reports and counts the write it cannot resolve (runtime seed 5836)', async () => {
  const seen = await orphanCoveredBySnapshot(BEHAVIOUR_BASE);
  // Not told: nothing withdraws it (by entry index it could be a retry's grant).
  expect(seen.told).toEqual([]);
  expect(seen.unresolved).toHaveLength(1);
  const [write] = seen.unresolved as [UnresolvedWrite];
  expect(write.state).toBe('orphan');
  expect(write.command).toMatchObject({ type: 'Acquire', lock: 'b', requestId: 'acquire-b' });
  expect(write.snapshotIndex).toBe(seen.restoredAt);
  expect(write.attemptIndexes).toEqual([seen.acquiredAt]);
  expect(write.now).toMatchObject({ type: 'Acquired', lock: 'b', token: seen.acquiredAt });
  // What `dlm serve` logs: the proposal, the lock and the snapshot's index by name.
  expect(unresolvedWriteFields(write)).toMatchObject({
    proposalId: write.proposalId,
    lock: 'b',
    requestId: 'acquire-b',
    snapshotIndex: seen.restoredAt,
    attemptIndexes: [seen.acquiredAt],
    now: 'Acquired',
    token: seen.acquiredAt,
    state: 'orphan',
  });
  expect(write.proposalId).toMatch(/^n\d\//);
  expect(seen.counted).toBe(1);
}, 30_000);

interface Seen {
  /** What the follower's late-apply listener was told. */
  readonly told: string[];
  /** What the follower's observers heard of writes a snapshot could not resolve. */
  readonly unresolved: UnresolvedWrite[];
  /** dlm_orphans_unresolved_total{state="orphan"} on the follower. */
  readonly counted: number;
  readonly acquiredAt: number;
  readonly restoredAt: number;
}

/** What the follower saw of its orphan, on binaries applying up to `binary`. */
async function orphanCoveredBySnapshot(binary: number): Promise<Seen> {
  const all = new BinariesCluster({ n1: binary, n2: binary, n3: binary });
  cluster = all;
  const leader = await all.leader();
  await until(() => leader.locks.behaviour === binary, "the cluster at its binaries' version");
  const follower = [...all.nodes.values()].find((node) => node !== leader) as DlmNode;
  const metrics = new NodeMetrics(follower);
  const unresolved: UnresolvedWrite[] = [];
  follower.observe({ writeUnresolved: (write) => unresolved.push(write) });
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
  const acquiredAt = leader.locks.holdersOf('b')[0]?.token as number;
  expect(acquiredAt).toBe(leader.status().appliedIndex);

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
  const body = (await metrics.render()).body;
  const line = body.split('\n').find((each) => each.startsWith('dlm_orphans_unresolved_total{'));
  const counted = line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  return {
    told: late.map((applied) => applied.result.type),
    unresolved,
    counted,
    acquiredAt,
    restoredAt: restored[0] as number,
  };
}
