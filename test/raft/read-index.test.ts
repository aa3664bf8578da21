/**
 * Raft thesis §6.4 (processing read-only queries more efficiently): ReadIndex. A read is
 * served at the leader's commit index once a heartbeat round has confirmed that the
 * leader still leads, and only after the leader has committed an entry of its own term.
 */
import { describe, expect, it } from 'vitest';
import { Prng } from '../../src/util/prng.ts';
import { ids, Network } from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');
const T = 10;

function steadyCluster(seed: number, options = {}) {
  const network = new Network({ prng: new Prng(seed), voters: [a, b, c], options });
  network.elect(a);
  network.propose(a, 'x');
  network.stabilize();
  network.tickAll(1);
  network.clearLogs();
  return network;
}

describe('§6.4 ReadIndex on the leader', () => {
  it('a read is released only after a heartbeat round confirms leadership, at the commit index of the request', () => {
    const network = steadyCluster(100);
    const commit = network.raft(a).log.commitIndex;

    expect(network.raft(a).readIndex('r1')).toBe(true);
    expect(network.raft(a).readIndex('r2')).toBe(true);
    network.processReady(a);

    expect(network.node(a).readStates).toEqual([]);
    const heartbeats = network.sentOf('Heartbeat', { from: a });
    // Reads taken together share one heartbeat round.
    expect(heartbeats.map((m) => m.to).sort()).toEqual([b, c]);
    expect(Math.max(...heartbeats.map((m) => m.readSequence))).toBeGreaterThan(0);

    network.stabilize();

    expect(network.node(a).readStates).toEqual([
      { context: 'r1', index: commit },
      { context: 'r2', index: commit },
    ]);
  });

  it('the read index is the commit index, not the last index: uncommitted entries are not waited for', () => {
    const network = steadyCluster(110);
    const commit = network.raft(a).log.commitIndex;
    network.dropIf((m) => m.type === 'AppendEntries');
    network.propose(a, 'uncommitted');

    network.raft(a).readIndex('r');
    network.stabilize();

    expect(network.raft(a).log.lastIndex()).toBe(commit + 1);
    expect(network.node(a).readStates).toEqual([{ context: 'r', index: commit }]);
  });

  it('one follower’s confirmation is enough in a cluster of three (a majority with the leader)', () => {
    const network = steadyCluster(101);
    network.dropTo(c);

    network.raft(a).readIndex('r');
    network.stabilize();

    expect(network.node(a).readStates.map((r) => r.context)).toEqual(['r']);
  });

  it('without confirmation from a majority the read is never released', () => {
    const network = steadyCluster(102, { checkQuorum: false });
    network.dropTo(b);
    network.dropTo(c);

    network.raft(a).readIndex('r');
    network.stabilize();
    network.tickAll(3 * T);

    expect(network.raft(a).role).toBe('leader');
    expect(network.node(a).readStates).toEqual([]);
  });

  it('a heartbeat answer from before the read does not confirm it', () => {
    const network = steadyCluster(103);
    // A heartbeat round goes out before the read...
    network.raft(a).tick();
    network.processReady(a);
    const early = network.inFlight.splice(0);
    // ... the read starts, and its own heartbeats are lost ...
    network.raft(a).readIndex('r');
    network.dropIf((m) => m.type === 'Heartbeat');
    network.processReady(a);
    // ... and then the early round is answered.
    for (const message of early) network.raft(message.to).step(message);
    network.stabilize();

    expect(network.sentOf('HeartbeatResponse', { to: a }).length).toBe(2);
    expect(network.node(a).readStates).toEqual([]);
  });

  it('a single-voter leader serves a read at once', () => {
    const network = new Network({ prng: new Prng(104), voters: [a] });
    network.elect(a);

    network.raft(a).readIndex('solo');
    network.processReady(a);

    expect(network.node(a).readStates).toEqual([{ context: 'solo', index: 2 }]);
  });

  it('refuses reads past pendingReadsMax', () => {
    const network = steadyCluster(105, { pendingReadsMax: 2 });
    network.dropTo(b);
    network.dropTo(c);

    const started = [1, 2, 3].map((i) => network.raft(a).readIndex(`r${i}`));

    expect(started).toEqual([true, true, false]);
  });
});

describe('§6.4 a fresh leader', () => {
  it('holds reads until its no-op commits, then confirms and releases them at an index that covers the no-op', () => {
    const network = new Network({
      prng: new Prng(106),
      voters: [a, b, c],
      options: { preVote: false },
    });
    const holdAppends = network.dropIf((m) => m.type === 'AppendEntries');
    network.raft(a).campaign();
    network.stabilize();
    expect(network.raft(a).role).toBe('leader');
    expect(network.raft(a).log.commitIndex).toBe(1);

    expect(network.raft(a).readIndex('early')).toBe(true);
    network.tickAll(3); // heartbeats are answered, but the no-op is not committed
    expect(network.node(a).readStates).toEqual([]);

    holdAppends();
    network.tickAll(2);

    expect(network.raft(a).log.commitIndex).toBe(2);
    expect(network.node(a).readStates).toEqual([{ context: 'early', index: 2 }]);
  });
});

describe('§6.4 ReadIndex through a follower', () => {
  it('a follower forwards the read to the leader and gets a ReadState with the leader’s commit index', () => {
    const network = steadyCluster(107);

    expect(network.raft(b).readIndex('via-b')).toBe(true);
    network.stabilize();

    expect(network.sentOf('ReadIndexRequest').map((m) => [m.from, m.to, m.context])).toEqual([
      [b, a, 'via-b'],
    ]);
    expect(network.node(b).readStates).toEqual([
      { context: 'via-b', index: network.raft(a).log.commitIndex },
    ]);
    expect(network.node(a).readStates).toEqual([]);
  });

  it('a node that cannot serve a forwarded read refuses it, and the asking follower is told it is refused', () => {
    const network = steadyCluster(111, { pendingReadsMax: 1 });
    network.dropTo(c); // reads need b's confirmation; hold c so the first read stays pending
    network.dropIf((m) => m.type === 'Heartbeat' && m.to === b);

    network.raft(b).readIndex('first'); // takes the only pending slot
    network.raft(b).readIndex('second'); // refused by the leader
    network.stabilize();

    const answers = network.sentOf('ReadIndexResponse', { from: a, to: b });
    expect(answers.map((m) => [m.context, m.readIndex, m.notLeader])).toEqual([
      ['second', null, false],
    ]);
    expect(network.node(b).readStates).toEqual([]);
    // The refusal reaches b's host, which fails the read now instead of at its deadline;
    // a busy leader is still the leader.
    expect(network.node(b).refusedReads).toEqual(['second']);
    expect(network.raft(b).leaderId).toBe(a);
  });

  it('a ReadIndexRequest that reaches a follower or a candidate is refused', () => {
    const network = new Network({
      prng: new Prng(112),
      voters: [a, b, c],
      options: { preVote: false },
    });
    network.elect(a);
    network.clearLogs();
    network.raft(c).campaign(); // c becomes a candidate of term 3 (a and b ignore it: stickiness)
    network.processReadies();
    network.inFlight.splice(0);

    for (const to of [b, c]) {
      network.raft(to).step({
        type: 'ReadIndexRequest',
        from: a,
        to,
        term: network.raft(to).term,
        context: `to-${to}`,
      });
    }
    network.processReadies();

    expect(
      network.sentOf('ReadIndexResponse').map((m) => [m.from, m.context, m.readIndex, m.notLeader]),
    ).toEqual([
      [b, 'to-b', null, true],
      [c, 'to-c', null, true],
    ]);
  });

  it('a follower whose leader answers that it no longer leads forgets it (a learner never campaigns)', () => {
    const network = steadyCluster(113);
    expect(network.raft(b).readIndex('asked')).toBe(true);
    network.inFlight.splice(0);
    // a stepped down in the same term (as CheckQuorum makes it) before b's request came.
    network.raft(b).step({
      type: 'ReadIndexResponse',
      from: a,
      to: b,
      term: network.raft(b).term,
      context: 'asked',
      readIndex: null,
      notLeader: true,
    });
    network.processReadies();

    expect(network.node(b).refusedReads).toEqual(['asked']);
    expect(network.raft(b).leaderId).toBeNull();
  });

  it('a follower that knows no leader cannot start a read', () => {
    const network = new Network({ prng: new Prng(108), voters: [a, b, c] });

    expect(network.raft(b).readIndex('nobody')).toBe(false);
    expect(network.raft(b).hasReady()).toBe(false);
  });
});

describe('§6.4 a deposed leader', () => {
  it('a partitioned old leader never releases a read, while the majority elects a new leader and moves on', () => {
    const network = steadyCluster(109);
    network.isolate(a);

    expect(network.raft(a).readIndex('stale')).toBe(true);
    network.tickUntil(() => network.leaders().some((id) => id !== a), 10 * T);
    const newLeader = network.leaders().find((id) => id !== a) ?? b;
    network.propose(newLeader, 'newer');
    network.stabilize();
    network.tickAll(3 * T);
    network.heal();
    network.tickAll(2);

    expect(network.node(a).readStates).toEqual([]);
    // Its host is told the read will never be served, so it fails now, not at its deadline.
    expect(network.node(a).refusedReads).toEqual(['stale']);
    expect(network.raft(a).role).toBe('follower');
    expect(network.state(a)).toEqual(['x', 'newer']);
  });
});
