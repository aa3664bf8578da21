import { afterEach, describe, expect, it } from 'vitest';
import type { LockCommand } from '../../src/lock/index.ts';
import { encodeEntry } from '../../src/node/entry-codec.ts';
import { DlmNode } from '../../src/node/node.ts';
import { continueTrace } from '../../src/node/trace.ts';
import type { Transport } from '../../src/node/transport.ts';
import { MemoryWritableStorage } from '../../src/storage/index.ts';
import { type NodeId, nodeId } from '../../src/util/ids.ts';
import { ids, OPTIONS, sleep, TestCluster, until } from './cluster-harness.ts';

/**
 * Issue 15, item 6: a leader takes forwarded writes only from the members of its config,
 * and only data that decodes as a log entry. Anyone else who gets a message onto the
 * peer port (a stranger with the cluster id, a removed node, a certificate issued for an
 * id never added) would otherwise have the leader propose whatever it sends, under
 * whatever identity, for every replica to apply. A node being added must still have its
 * writes taken from its first one.
 */
const [n1, , n3] = ids as [NodeId, NodeId, NodeId];
const N4 = nodeId('n4');
const N9 = nodeId('n9');

let cluster: TestCluster | null = null;
let extra: DlmNode[] = [];
afterEach(async () => {
  await Promise.all(extra.map((node) => node.stop()));
  extra = [];
  await cluster?.stopAll();
  cluster = null;
});

function openSession(clientName: string): LockCommand {
  return { type: 'OpenSession', ttlMs: 60_000, clientName, requestId: `req-${clientName}` };
}

/** What a peer would send: an OpenSession forwarded in `from`'s name. */
function forge(stranger: Transport, from: NodeId, to: NodeId, clientName: string): void {
  stranger.send({
    kind: 'forward',
    from,
    to,
    proposalId: `${from}/forged/${clientName}`,
    data: encodeEntry({
      proposalId: `${from}/forged/${clientName}`,
      command: openSession(clientName),
    }),
  });
}

function clientNames(node: DlmNode): string[] {
  return node.locks.sessionIds().map((id) => node.locks.session(id)?.clientName ?? '?');
}

describe('forwarded writes the leader takes', () => {
  it('the leader refuses, reports and does not answer a forward from a non-member, or in its own name', async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const refused: { from: string; members: readonly NodeId[] }[] = [];
    leader.observe({ forwardFromNonMember: (from, members) => refused.push({ from, members }) });
    const stranger = c.network.connect(N9);
    const answers: string[] = [];
    stranger.onMessage((message) => answers.push(message.kind));

    forge(stranger, N9, leader.id, 'from-n9');
    forge(stranger, leader.id, leader.id, 'from-itself');
    // A member's forward, sent the same way, goes through: the check is on the sender.
    const member = ids.find((id) => id !== leader.id) as NodeId;
    forge(stranger, member, leader.id, 'from-a-member');
    await until(() => clientNames(leader).includes('from-a-member'), "the member's write applies");
    await sleep(50);

    expect(clientNames(leader)).toEqual(['from-a-member']);
    expect(refused.map((each) => each.from)).toEqual([N9, leader.id]);
    expect([...(refused[0]?.members ?? [])].sort()).toEqual(ids);
    // Nothing came back to the stranger: refused forwards are not answered, and the
    // answer to the member's went to the member.
    expect(answers).toEqual([]);
  });

  it("a member's forward that does not decode as an entry is dropped, not proposed: no replica stops", async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const failures: string[] = [];
    const rejected: string[] = [];
    for (const node of c.nodes.values()) {
      node.observe({ failed: (error) => failures.push(`${node.id}: ${error.message}`) });
    }
    leader.observe({ peerMessageRejected: (_from, problem) => rejected.push(problem) });
    const member = ids.find((id) => id !== leader.id) as NodeId;
    const sender = c.network.connect(member);
    // msgpack nil: every replica threw on it where it applied the entry.
    sender.send({
      kind: 'forward',
      from: member,
      to: leader.id,
      proposalId: 'p/1',
      data: Uint8Array.of(0xc0),
    });
    forge(sender, member, leader.id, 'after-the-bad-one');
    await until(
      () => clientNames(leader).includes('after-the-bad-one') || failures.length > 0,
      'the next write to apply, or a node to stop',
    );
    expect(rejected).toEqual(['forward.data: expected an entry payload { p, c }']);
    expect(failures).toEqual([]);
  });

  it('a removed node is refused once the leader applied its removal', async () => {
    const c = new TestCluster();
    cluster = c;
    let leader = await c.leader();
    if (leader.id === n3) {
      await leader.transferLeadership(n1, { timeoutMs: 5_000 });
      leader = await c.leader();
    }
    const refused: string[] = [];
    leader.observe({ forwardFromNonMember: (from) => refused.push(from) });
    await leader.removeMember(n3, { timeoutMs: 5_000 });
    const stranger = c.network.connect(N9);
    // n3's certificate (or name, on plaintext peers) is still a credential.
    forge(stranger, n3, leader.id, 'from-removed-n3');
    await until(
      () => refused.length > 0 || clientNames(leader).includes('from-removed-n3'),
      'the forward to be refused or applied',
    );
    await sleep(50);
    expect(refused).toEqual([n3]);
    expect(clientNames(leader)).not.toContain('from-removed-n3');
  });

  it('a node being added has its first forwarded write taken, as a learner, before it is promoted', async () => {
    const c = new TestCluster();
    cluster = c;
    const leader = await c.leader();
    const refused: string[] = [];
    // Whether the leader counted n4 a learner, not yet a voter, when its forward arrived.
    const takenAs: string[] = [];
    leader.observe({
      forwardFromNonMember: (from) => refused.push(from),
      forwardedWrite: (_trace, from, outcome) => {
        const { learners } = leader.status();
        takenAs.push(`${from} ${outcome} ${learners.includes(N4) ? 'learner' : 'voter'}`);
        c.network.releaseHeld();
      },
    });
    // n4's Raft answers wait until its forward has arrived: otherwise, on a loaded
    // machine, it can catch up and be promoted first, and the test would not see the
    // learner case it is about. Its forward and the leader's messages to it still pass.
    c.network.hold(
      (message) => message.kind === 'raft' && message.message.from === N4 && takenAs.length === 0,
    );
    const n4 = new DlmNode(N4, MemoryWritableStorage.joining(), c.network.connect(N4), OPTIONS);
    n4.start();
    extra.push(n4);
    const adding = leader.addMember({ id: N4, peerAddress: 'n4', clientAddress: '' });
    // The moment it hears of a leader, it may forward; no retry is allowed here.
    await until(() => n4.status().leaderId !== null, 'n4 hears from the leader');
    const opened = await n4.write(openSession('from-learner-n4'), { trace: continueTrace(null) });
    expect(opened.result.type).toBe('SessionOpened');
    expect(takenAs).toEqual(['n4 proposed learner']);
    expect((await adding).voters).toContain(N4);
    expect(refused).toEqual([]);
  });
});
