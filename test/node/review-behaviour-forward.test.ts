/**
 * Review of the behaviour version (merge 6089958): write() refuses SetBehaviour ("only
 * the leader raises, on its members' word", 7662c0e), but a forwarded write reaches
 * raft.propose without that check. One forward of SetBehaviour to a version no binary
 * knows, from a member (the forward path admits any member's data that decodes), stops
 * every replica, and again at every restart, since each replays it from the log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BEHAVIOUR_LATEST } from '../../src/lock/index.ts';
import { encodeEntry } from '../../src/node/entry-codec.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { ids, sleep, TestCluster } from './cluster-harness.ts';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll().catch(() => {});
  cluster = null;
});

describe('review: a forwarded SetBehaviour', () => {
  it('is refused by the leader as write() refuses it, not applied by every replica', async () => {
    const failures = new Map<string, string>();
    const c = new TestCluster(undefined, (node) =>
      node.observe({ failed: (error) => failures.set(node.id, error.message) }),
    );
    cluster = c;
    const leader = await c.leader();
    const member = ids.find((id) => id !== leader.id) as NodeId;
    const sender = c.network.connect(nodeId('n9'));
    const proposalId = `${member}/raise`;
    sender.send({
      kind: 'forward',
      from: member,
      to: leader.id,
      proposalId,
      data: encodeEntry({
        proposalId,
        command: { type: 'SetBehaviour', version: BEHAVIOUR_LATEST + 1 },
      }),
    });
    await sleep(500);
    expect([...failures.keys()].sort()).toEqual([]);
  });
});
