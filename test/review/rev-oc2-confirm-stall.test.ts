/**
 * Review of df1b084: the confirming read has no deadline once the leader answered it.
 *
 * EventHub.confirmLeader runs node.read, guarded by `confirming`. node.read's deadline
 * (proposalTimeoutMs, expireReads) covers only the wait for the leader's ReadIndex
 * answer; the wait that follows, for this node to apply up to that index
 * (waitApplied), has none. A follower that still hears the leader's heartbeats (so
 * keeps its leaderId) and whose ReadIndex request is answered, but which gets no
 * entries (here: AppendEntries to it are lost, as an oversized batch or a failing
 * snapshot transfer would be), gets the read index and then waits for ever. `confirming`
 * stays true, no later confirm ever runs, and its Observe streams stay open and silent:
 * a LeadershipHandle observing there never learns that its term was revoked.
 * EventHub's own comment says the read "fails (after runtime.proposalTimeoutMs at most)".
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DlmClient } from '../../src/client/index.ts';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import type { NodeId } from '../../src/util/ids.ts';
import { ApiCluster, eventually, IDS, sleep } from '../api/harness.ts';

let cluster: ApiCluster | null = null;
const clients: DlmClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  cluster?.network.heal();
  cluster?.network.releaseHeld();
  await cluster?.stop();
  cluster = null;
});

function address(started: ApiCluster, id: NodeId): string {
  return `127.0.0.1:${started.at(id).server.port}`;
}

describe('df1b084: confirming read at a follower that hears heartbeats but gets no entries', () => {
  it('a handle observing there learns its term ended (FAILED on df1b084: the confirm read waited for ever in waitApplied)', async () => {
    const started = await ApiCluster.start(
      { observeConfirmIntervalMs: 300 },
      { proposalTimeoutMs: 1_000, snapshotEntriesThreshold: 100_000 },
    );
    cluster = started;
    await eventually(() =>
      [...started.nodes.values()].every(
        (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
      ),
    );
    const leaderNode = await started.leaderId();
    const [f1, f2] = IDS.filter((id) => id !== leaderNode) as [NodeId, NodeId];
    const a = new DlmClient({
      endpoints: [address(started, f1), address(started, f2)],
      attemptTimeoutMs: 500,
    });
    clients.push(a);

    const leading = await a.campaign('rev/oc2-stall', 'a:1', { owner: 'a', ttlMs: 20_000 });
    await sleep(300); // the handle's Observe is open at F1
    expect(leading.signal.aborted).toBe(false);

    // Entries no longer reach F1; heartbeats, read answers and everything else do.
    started.network.hold(
      (message) =>
        message.kind === 'raft' &&
        message.message.to === f1 &&
        (message.message.type === 'AppendEntries' || message.message.type === 'InstallSnapshot'),
    );
    const revoked = await started.at(leaderNode).cluster.call('RevokeLock', {
      lock: 'rev/oc2-stall',
      reason: 'review',
    });
    expect(revoked.freed).toBe(1);
    const revokedAt = started.nodes.get(leaderNode)?.status().commitIndex ?? 0;

    // Interval 300 ms + proposalTimeoutMs 1 s: the doc promises an end within ~1.3 s
    // plus a retry. Give it 8 s.
    const deadline = Date.now() + 8_000;
    while (!leading.signal.aborted && Date.now() < deadline) await sleep(100);
    const f1Status = started.nodes.get(f1)?.status();
    console.log('F1', f1Status?.leaderId, f1Status?.appliedIndex, 'revoke at', revokedAt);
    expect(f1Status?.leaderId).toBe(leaderNode);
    expect(f1Status?.appliedIndex ?? 0).toBeLessThan(revokedAt);
    expect(leading.signal.aborted).toBe(true);
  }, 30_000);
});
