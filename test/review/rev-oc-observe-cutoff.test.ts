/**
 * Review of 4c4507d (a node that knows no leader ends its Observe streams UNAVAILABLE).
 *
 * The cut-off test is "leaderId === null". A follower that still HEARS the leader but
 * cannot be heard by it (a one-way partition: its outbound link to the leader is down,
 * e.g. a firewall rule or a broken outbound peer connection) keeps its leaderId for ever:
 * the leader's heartbeats reset its election timer, so it never pre-campaigns. The
 * leader's pipeline to it fills (inflightMessagesMax batches, never acknowledged) and
 * stops; heartbeats carry min(matchIndex, commit), which is frozen. So the follower
 * applies nothing more, and its Observe stream stays open and silent: exactly the case
 * the change says it fixes ("a handle observing at a follower cut off from the leader").
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
  await cluster?.stop();
  cluster = null;
});

function address(started: ApiCluster, id: NodeId): string {
  return `127.0.0.1:${started.at(id).server.port}`;
}

function client(endpoints: readonly string[]): DlmClient {
  const made = new DlmClient({ endpoints: [...endpoints], attemptTimeoutMs: 500 });
  clients.push(made);
  return made;
}

describe('4c4507d: a follower cut off one way (it hears the leader, the leader does not hear it)', () => {
  it.each([
    ['no snapshot in the window', 100_000],
    ['harness snapshot threshold', undefined],
  ])(
    'a handle observing there learns that its term ended (FAILED on 4c4507d: the follower keeps its leaderId; %s)',
    async (_, threshold) => {
      const started = await ApiCluster.start(
        {},
        threshold === undefined ? {} : { snapshotEntriesThreshold: threshold },
      );
      cluster = started;
      await eventually(() =>
        [...started.nodes.values()].every(
          (node) => node.locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS,
        ),
      );
      const leaderNode = await started.leaderId();
      const [f1, f2] = IDS.filter((id) => id !== leaderNode) as [NodeId, NodeId];
      const a = client([address(started, f1), address(started, f2)]);
      const other = client([address(started, leaderNode)]);

      const leading = await a.campaign('rev/oc-oneway', 'a:1', { owner: 'a', ttlMs: 3_000 });
      await sleep(300); // the handle's Observe is open at F1
      expect(leading.signal.aborted).toBe(false);

      // F1 can no longer send to the leader; the leader still reaches F1.
      started.network.cut(f1, leaderNode);
      // Ordinary write traffic (here 80 acquire/release pairs) fills the leader's
      // unacknowledged pipeline to F1; from then on F1 gets heartbeats only.
      const busy = await other.openSession({ ttlMs: 10_000 });
      for (let i = 0; i < 80; i++) {
        const held = await busy.acquire('rev/oc-scratch');
        await held.release();
      }
      const revoked = await started.at(leaderNode).cluster.call('RevokeLock', {
        lock: 'rev/oc-oneway',
        reason: 'review',
      });
      expect(revoked.freed).toBe(1);
      const revokedAt = started.nodes.get(leaderNode)?.status().commitIndex ?? 0;

      await sleep(5_000);
      const f1Status = started.nodes.get(f1)?.status();
      // The mechanism: F1 still names the leader, and never applied the Revoke.
      console.log('F1', f1Status, 'revoke committed by', revokedAt);
      expect(f1Status?.leaderId).toBe(leaderNode);
      // A's session lives (its keepalives moved to F2 when F1's forwards failed), nobody
      // holds the election any more...
      expect((await a.describe('rev/oc-oneway')).holders).toEqual([]);
      // ...and its term is over; the handle must say so. FAILED on 4c4507d: F1's stream
      // stayed open and silent, since F1 "knows a leader". Now F1's confirming read (every
      // observeConfirmIntervalMs, failing after proposalTimeoutMs: 2 + 5 s here) ends it,
      // and the handle reopens at F2.
      await eventually(() => leading.signal.aborted, 12_000);
      await busy.close();
    },
    40_000,
  );
});
