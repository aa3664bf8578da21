/**
 * Review of b45103a (refused-reads): "a confirmation that is refused does not end the
 * streams" is wrong when the refusal comes from a node that NO LONGER LEADS.
 *
 * Interleaving (pre-vote and CheckQuorum on, the defaults):
 *  1. Voters n1..n3, learner n4. The leader L and n4 are cut off from the other two
 *     voters, which elect a new leader in term T+1 and go on committing.
 *  2. L loses its quorum and steps down (CheckQuorum): follower, then pre-candidate,
 *     still in term T. It stops sending heartbeats.
 *  3. n4 is a learner: it never campaigns (isPromotable is false), so it never drops its
 *     leader. Its status names L for ever.
 *  4. Every EventHub confirmation at n4 sends a ReadIndexRequest (term T) to L. L, a
 *     follower/pre-candidate of term T, answers at once with readIndex null. Since
 *     b45103a that is Ready.refusedReads, the read fails UNAVAILABLE, and
 *     EventHub.confirmLeader ignores it ("refused at once says nothing new").
 *  5. So an Observe stream at n4 stays open and silent for ever while the new leader
 *     commits a Campaign of the very election it observes: the stream's promise ("ends
 *     UNAVAILABLE whenever this node may have lost the leader") is broken, and a
 *     LeadershipHandle observing there would never learn its term ended.
 * On main (0a70385) the refusal was dropped, the confirmation ran out of time
 * (proposalTimeoutMs) and the stream ended UNAVAILABLE: this test passes there.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_SEMAPHORES_ELECTIONS } from '../../src/lock/index.ts';
import { DlmNode } from '../../src/node/node.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import {
  eventually,
  type LogEntry,
  NODE_OPTIONS,
  type NodeEndpoints,
  retrying,
  serve,
  sleep,
} from '../api/harness.ts';

const VOTERS = [nodeId('n1'), nodeId('n2'), nodeId('n3')];
const LEARNER = nodeId('n4');
const ALL = [...VOTERS, LEARNER];

const network = new MemoryNetwork();
const nodes = new Map<NodeId, DlmNode>();
const endpoints = new Map<NodeId, NodeEndpoints>();

afterEach(async () => {
  network.heal();
  for (const e of endpoints.values()) {
    e.lock.close();
    e.session.close();
    e.cluster.close();
    e.health.close();
  }
  await Promise.all([...endpoints.values()].map((e) => e.server.close(200)));
  await Promise.all([...nodes.values()].map((node) => node.stop()));
  nodes.clear();
  endpoints.clear();
});

function at(id: NodeId): NodeEndpoints {
  const e = endpoints.get(id);
  if (e === undefined) throw new Error(`no ${id}`);
  return e;
}

function node(id: NodeId): DlmNode {
  const n = nodes.get(id);
  if (n === undefined) throw new Error(`no ${id}`);
  return n;
}

describe('rr: a learner whose leader stepped down keeps its Observe streams for ever', () => {
  it('the learner ends an Observe stream once the leader it names no longer leads', async () => {
    const logs: LogEntry[] = [];
    for (const [position, id] of ALL.entries()) {
      const storage = MemoryWritableStorage.bootstrap({ voters: VOTERS, learners: [LEARNER] });
      const made = new DlmNode(
        id,
        storage,
        network.connect(id),
        { ...NODE_OPTIONS, proposalTimeoutMs: 1_000 },
        undefined,
        position + 1,
      );
      made.start();
      nodes.set(id, made);
      endpoints.set(id, await serve(made, logs, { observeConfirmIntervalMs: 50 }));
    }
    await eventually(() => {
      const views = ALL.map((id) => node(id).status().leaderId);
      return (
        views[0] !== null &&
        views.every((v) => v === views[0]) &&
        ALL.every((id) => node(id).locks.behaviour >= BEHAVIOUR_SEMAPHORES_ELECTIONS)
      );
    });
    const oldLeader = node(LEARNER).status().leaderId as NodeId;
    const majority = VOTERS.filter((id) => id !== oldLeader);

    // {old leader, learner} | {the other two voters}.
    network.isolate(oldLeader, majority);
    network.isolate(LEARNER, majority);
    await eventually(() => {
      const newLeader = node(majority[0] as NodeId).status().leaderId;
      return newLeader !== null && newLeader !== oldLeader;
    });
    // The old leader stepped down (CheckQuorum); the learner still names it.
    await eventually(() => node(oldLeader).status().role !== 'leader');
    await sleep(300);
    expect(node(LEARNER).status().leaderId).toBe(oldLeader);

    // A client observes the election at the learner: it is accepted (a leader is named).
    const election = 'rr/learner';
    const stream = at(LEARNER).lock.stream('Observe', { election });
    const seen: unknown[] = [];
    let endedWith: { code: number; details: string } | null = null;
    stream.on('data', (message: unknown) => seen.push(message));
    stream.on('error', (error: { code: number; details: string }) => {
      endedWith = error;
    });
    await eventually(() => seen.length >= 1 || endedWith !== null);

    // The new leader elects someone in that very election.
    const newLeader = node(majority[0] as NodeId).status().leaderId as NodeId;
    const opened = await retrying(() =>
      at(newLeader).lock.call('OpenSession', {
        ttl_ms: '10000',
        client_name: 'rr',
        request_id: '9001',
      }),
    );
    const elected = await at(newLeader).lock.call('Campaign', {
      election,
      value: 'v',
      session_id: opened.session_id,
      request_id: '9002',
      owner: 'rr-candidate',
    });
    expect(elected.elected).toBe(true);

    // Several confirmation rounds and more than three proposalTimeoutMs later.
    for (let i = 0; i < 80 && endedWith === null; i++) await sleep(50);
    const learnerView = node(LEARNER).status();
    console.log(
      'learner',
      learnerView.leaderId,
      learnerView.appliedIndex,
      'old leader',
      oldLeader,
      node(oldLeader).status().role,
      'new leader',
      newLeader,
      node(newLeader).status().commitIndex,
      'seen',
      seen.length,
      'ended',
      endedWith,
    );
    // Failed on b45103a: the stream was still open (endedWith null), it showed only its
    // CURRENT, and the election it observes has a leader it will never report.
    stream.cancel();
    expect(endedWith).not.toBeNull();
    expect((endedWith as unknown as { code: number }).code).toBe(grpc.status.UNAVAILABLE);
  }, 30_000);
});
