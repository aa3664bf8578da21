/**
 * Raft thesis §3.10 (leadership transfer extension): the leader catches the target up,
 * stops taking proposals, and sends TimeoutNow; the target campaigns at once, skipping
 * PreVote, and its vote requests override leader stickiness.
 */
import { describe, expect, it } from 'vitest';
import { Prng } from '../../src/util/prng.ts';
import { ids, Network } from './harness.ts';

const [a, b, c, d] = ids('a', 'b', 'c', 'd');
const T = 10;

function steadyCluster(seed: number) {
  const network = new Network({ prng: new Prng(seed), voters: [a, b, c], learners: [d] });
  network.elect(a);
  network.propose(a, 'x');
  network.stabilize();
  network.tickAll(1);
  network.clearLogs();
  return network;
}

describe('§3.10 Leadership transfer', () => {
  it('TimeoutNow to an up-to-date follower makes it leader in the next term, without a pre-vote, despite stickiness', () => {
    const network = steadyCluster(110);

    expect(network.raft(a).transferLeadership(b)).toEqual({ ok: true });
    network.processReady(a);
    expect(network.sentOf('TimeoutNow').map((m) => [m.from, m.to, m.term])).toEqual([[a, b, 2]]);

    network.stabilize();

    expect(network.leaders()).toEqual([b]);
    expect(network.raft(b).term).toBe(3);
    expect(network.raft(a).role).toBe('follower');
    expect(network.raft(a).leaderId).toBe(b);
    expect(network.raft(c).votedFor).toBe(b); // c was in a's lease, but a transfer overrides it
    const requests = network.sentOf('RequestVote', { from: b });
    expect(requests.length).toBe(2);
    expect(requests.every((m) => !m.preVote && m.leadershipTransfer && m.term === 3)).toBe(true);
  });

  it('a lagging target is caught up first; TimeoutNow follows its acknowledgement of the leader’s last entry', () => {
    const network = steadyCluster(111);
    network.dropTo(b);
    for (let i = 0; i < 3; i++) network.propose(a, `v${i}`);
    network.stabilize();
    network.heal();
    network.clearLogs();
    const leaderLast = network.raft(a).log.lastIndex();

    network.raft(a).transferLeadership(b);
    network.processReady(a);
    expect(network.sentOf('TimeoutNow')).toEqual([]);
    expect(network.sentOf('AppendEntries', { to: b }).length).toBe(1);

    network.stabilize();

    const catchUp = network.sent.findIndex(
      (m) =>
        m.type === 'AppendEntriesResponse' &&
        m.from === b &&
        m.success &&
        m.matchIndex === leaderLast,
    );
    const timeoutNow = network.sent.findIndex((m) => m.type === 'TimeoutNow');
    expect(catchUp).toBeGreaterThanOrEqual(0);
    expect(timeoutNow).toBeGreaterThan(catchUp);
    expect(network.leaders()).toEqual([b]);
    expect(network.raft(b).term).toBe(3);
    network.tickAll(1);
    expect(network.state(b)).toEqual(['x', 'v0', 'v1', 'v2']);
  });

  it('the leader refuses proposals while a transfer is in progress', () => {
    const network = steadyCluster(112);
    network.isolate(b);

    network.raft(a).transferLeadership(b);

    expect(network.propose(a, 'y')).toEqual({
      ok: false,
      reason: 'transferringLeadership',
      leaderId: a,
    });
    expect(network.raft(a).transferee).toBe(b);
  });

  it('a transfer to an unreachable target is abandoned after an election timeout; the leader stays and takes proposals again', () => {
    const network = steadyCluster(113);
    network.isolate(b);
    network.raft(a).transferLeadership(b);

    network.tickAll(T - 1);
    expect(network.raft(a).transferee).toBe(b);
    network.tickAll(1);

    expect(network.raft(a).transferee).toBeNull();
    expect(network.raft(a).role).toBe('leader');
    expect(network.raft(a).term).toBe(2);
    expect(network.propose(a, 'y').ok).toBe(true);
  });

  it('a transfer to a voter that is removed meanwhile is cancelled', () => {
    const network = steadyCluster(115);
    const holdCommit = network.dropIf((m) => m.type === 'AppendEntries');
    expect(network.raft(a).proposeConfigChange({ type: 'removeNode', nodeId: b }).ok).toBe(true);
    network.raft(a).transferLeadership(b);
    network.isolate(b);
    network.stabilize();
    expect(network.raft(a).transferee).toBe(b);

    holdCommit();
    network.tickAll(1);

    expect(network.raft(a).config.voters).toEqual([a, c]);
    expect(network.raft(a).transferee).toBeNull();
    expect(network.propose(a, 'y').ok).toBe(true);
  });

  it.each([
    { asked: 'of a follower', from: b, to: c, reason: 'notLeader' },
    { asked: 'to the leader itself', from: a, to: a, reason: 'alreadyLeader' },
    { asked: 'to a learner', from: a, to: d, reason: 'notAVoter' },
  ])('refuses a transfer asked $asked ($reason)', ({ from, to, reason }) => {
    const network = steadyCluster(114);

    expect(network.raft(from).transferLeadership(to)).toEqual({ ok: false, reason });
  });
});
