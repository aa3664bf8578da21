/**
 * Raft thesis §9.6 (preventing disruptions when a server rejoins the cluster): PreVote,
 * CheckQuorum, and the leader stickiness that CheckQuorum enables (etcd-io/raft).
 */
import { describe, expect, it } from 'vitest';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import { drain, ids, loneRaft, msg, Network, ofType, storageWithLog } from './harness.ts';

const [a, b, c] = ids('a', 'b', 'c');
const T = 10;

describe('§9.6 PreVote', () => {
  it('an isolated follower that rejoins neither raises the cluster’s term nor deposes the leader', () => {
    const network = new Network({
      prng: new Prng(90),
      voters: [a, b, c],
      options: { preVote: true },
    });
    network.elect(a);
    network.isolate(c);

    network.tickAll(10 * T);
    expect(network.raft(c).term).toBe(2);
    expect(network.sentOf('RequestVote', { from: c }).every((m) => m.preVote)).toBe(true);
    expect(network.sentOf('RequestVote', { from: c }).length).toBeGreaterThan(0);

    network.heal();
    network.tickAll(3 * T);

    expect(network.leaders()).toEqual([a]);
    for (const id of [a, b, c]) expect(network.raft(id).term).toBe(2);
    expect(network.raft(c).role).toBe('follower');
    expect(network.raft(c).leaderId).toBe(a);
  });

  it('without PreVote the same rejoining follower has raised its term and disrupts the cluster', () => {
    const network = new Network({
      prng: new Prng(91),
      voters: [a, b, c],
      options: { preVote: false },
    });
    network.elect(a);
    network.isolate(c);

    network.tickAll(10 * T);
    const isolatedTerm = network.raft(c).term;
    expect(isolatedTerm).toBeGreaterThan(2);

    network.heal();
    network.tickAll(3 * T);

    // a learned c's newer term (from c's answer to its heartbeat) and lost its leadership.
    for (const id of [a, b, c]) expect(network.raft(id).term).toBeGreaterThanOrEqual(isolatedTerm);
    expect(network.raft(a).term).toBeGreaterThan(2);
  });

  it('a pre-candidate refused by a majority returns to follower without changing its term', () => {
    const storages = {
      a: storageWithLog({ voters: [a, b, c] }, [1], { term: 1 }),
      b: storageWithLog({ voters: [a, b, c] }, [1], { term: 1 }),
    };
    const network = new Network({
      prng: new Prng(92),
      voters: [a, b, c],
      storages,
      options: { preVote: true },
    });

    network.raft(c).campaign();
    network.stabilize();

    expect(network.raft(c).role).toBe('follower');
    for (const id of [a, b, c]) expect(network.raft(id).term).toBe(1);
    expect(network.raft(c).votedFor).toBeNull();
  });
});

describe('§9.6 CheckQuorum', () => {
  it('a leader cut off from a quorum steps down within two election timeouts (and not before one)', () => {
    const network = new Network({
      prng: new Prng(93),
      voters: [a, b, c],
      options: { checkQuorum: true },
    });
    network.elect(a);
    network.tickAll(3); // followers answer some heartbeats
    network.isolate(a);

    network.tickAll(T - 1);
    expect(network.raft(a).role).toBe('leader');
    network.tickAll(T + 1);

    expect(network.raft(a).role).toBe('follower');
    expect(network.raft(a).leaderId).toBeNull();
  });

  it('without CheckQuorum the cut-off leader keeps believing it leads', () => {
    const network = new Network({
      prng: new Prng(94),
      voters: [a, b, c],
      options: { checkQuorum: false, preVote: true },
    });
    network.elect(a);
    network.isolate(a);

    network.tickAll(10 * T);

    expect(network.raft(a).role).toBe('leader');
    expect(network.raft(a).term).toBe(2);
  });

  it('a leader that still hears from a quorum stays leader while one follower is down', () => {
    const network = new Network({
      prng: new Prng(95),
      voters: [a, b, c],
      options: { checkQuorum: true },
    });
    network.elect(a);
    network.isolate(c);

    network.tickAll(10 * T);

    expect(network.raft(a).role).toBe('leader');
  });

  it('a partitioned old leader steps down when it hears the newer term, and its uncommitted entries are replaced', () => {
    const network = new Network({
      prng: new Prng(96),
      voters: [a, b, c],
      options: { checkQuorum: false, preVote: true },
    });
    network.elect(a);
    network.isolate(a);
    network.propose(a, 'lost');
    network.stabilize();
    network.tickUntil(() => network.leaders().some((id) => id !== a), 10 * T);
    const newLeader = network.leaders().find((id) => id !== a) ?? b;
    network.propose(newLeader, 'kept');
    network.stabilize();

    network.heal();
    network.tickAll(2);

    expect(network.leaders()).toEqual([newLeader]);
    expect(network.raft(a).role).toBe('follower');
    expect(network.raft(a).term).toBe(network.raft(newLeader).term);
    expect(network.state(a)).toEqual(['kept']);
  });
});

describe('§9.6 leader stickiness (CheckQuorum)', () => {
  /** Follower b of leader a in term 2, having just heard a heartbeat. */
  function followerOfA(checkQuorum: boolean) {
    const storage = storageWithLog({ voters: [a, b, c] }, [], { term: 2 });
    const lone = loneRaft(b, [a, b, c], new Prng(97), { checkQuorum, preVote: false }, storage);
    lone.raft.step(msg.heartbeat(a, b, 2));
    drain(lone.raft, lone.storage);
    return lone;
  }

  it('a follower that hears from its leader ignores a RequestVote of a higher term', () => {
    const { raft, storage } = followerOfA(true);

    raft.step(msg.requestVote(c, b, 3, { lastLogIndex: idx(5), lastLogTerm: tm(2) }));

    expect(raft.term).toBe(2);
    expect(raft.leaderId).toBe(a);
    expect(raft.votedFor).toBeNull();
    expect(drain(raft, storage).messages).toEqual([]);
  });

  it('without CheckQuorum the same follower adopts the term and grants the vote', () => {
    const { raft, storage } = followerOfA(false);

    raft.step(msg.requestVote(c, b, 3, { lastLogIndex: idx(5), lastLogTerm: tm(2) }));

    expect(raft.term).toBe(3);
    expect(raft.votedFor).toBe(c);
    expect(ofType(drain(raft, storage).messages, 'RequestVoteResponse')).toEqual([
      expect.objectContaining({ to: c, term: 3, granted: true }),
    ]);
  });

  it('once an election timeout passes without the leader, the follower votes again', () => {
    const { raft, storage } = followerOfA(true);
    // The lease is one (unrandomized) election timeout; this seed's own timeout is longer.
    for (let tick = 0; tick < T; tick++) raft.tick();
    expect(raft.role).toBe('follower');

    raft.step(msg.requestVote(c, b, 3, { lastLogIndex: idx(5), lastLogTerm: tm(2) }));

    const votes = ofType(drain(raft, storage).messages, 'RequestVoteResponse');
    expect(votes).toEqual([expect.objectContaining({ to: c, term: 3, granted: true })]);
  });

  it('followers of a live leader refuse pre-votes from a node that was cut off, in the network', () => {
    const network = new Network({ prng: new Prng(98), voters: [a, b, c] });
    network.elect(a);
    network.isolate(c);
    network.tickAll(3 * T);
    network.heal();
    network.clearLogs();

    network.raft(c).campaign();
    network.stabilize();

    // b and a heard the request and did not answer it at all.
    expect(network.sentOf('RequestVote', { from: c }).map((m) => [m.to, m.preVote])).toEqual([
      [a, true],
      [b, true],
    ]);
    expect(network.sentOf('RequestVoteResponse', { to: c })).toEqual([]);
    expect(network.raft(c).role).toBe('preCandidate');
    network.tickAll(1);
    expect(network.raft(c).role).toBe('follower');
    expect(network.leaders()).toEqual([a]);
    expect(network.raft(a).term).toBe(2);
  });
});
