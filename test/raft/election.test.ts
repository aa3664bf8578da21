/**
 * Raft paper §5.1 (basics: roles and terms) and §5.2 (leader election).
 * Every test is init / act / check against the real core.
 */
import { describe, expect, it } from 'vitest';
import { Raft } from '../../src/raft/raft.ts';
import type { Message } from '../../src/raft/types.ts';
import { logIndex as idx, term as tm } from '../../src/util/ids.ts';
import { Prng } from '../../src/util/prng.ts';
import {
  drain,
  ids,
  loneRaft,
  makeLeader,
  msg,
  Network,
  ofType,
  storageWithLog,
} from './harness.ts';

const [a, b, c, d, e] = ids('a', 'b', 'c', 'd', 'e');
const T = 10;

describe('§5.1 Raft basics: server states and terms', () => {
  it('every server starts as a follower in the bootstrap term, with no leader and no vote', () => {
    const network = new Network({ prng: new Prng(1), voters: [a, b, c] });

    for (const id of network.ids()) {
      const raft = network.raft(id);
      expect(raft.role).toBe('follower');
      expect(raft.term).toBe(1);
      expect(raft.leaderId).toBeNull();
      expect(raft.votedFor).toBeNull();
      expect(raft.hasReady()).toBe(false);
    }
  });

  it.each<[string, (to: typeof a) => Message, string | null]>([
    ['Heartbeat', (to) => msg.heartbeat(b, to, 5), 'b'],
    [
      'AppendEntries',
      (to) => msg.append(b, to, 5, { prevLogIndex: idx(0), prevLogTerm: tm(0) }),
      'b',
    ],
    ['AppendEntriesResponse', (to) => msg.appendResponse(b, to, 5), null],
    [
      'RequestVote',
      (to) => msg.requestVote(c, to, 5, { lastLogIndex: idx(9), lastLogTerm: tm(4) }),
      null,
    ],
  ])(
    'a leader that sees a %s with a higher term adopts the term and becomes a follower',
    (_, build, leaderId) => {
      // CheckQuorum off, so the leader's lease does not make it ignore the RequestVote.
      const { raft, storage } = loneRaft(a, [a, b, c], new Prng(2), {
        checkQuorum: false,
        preVote: false,
      });
      makeLeader(raft, storage, false);
      expect(raft.role).toBe('leader');
      expect(raft.term).toBe(2);

      raft.step(build(a));

      expect(raft.role).toBe('follower');
      expect(raft.term).toBe(5);
      expect(raft.leaderId).toBe(leaderId);
      const ready = drain(raft, storage);
      expect(ready.hardState?.term).toBe(5);
      expect(ready.mustSync).toBe(true);
    },
  );

  it('a candidate that sees a higher term in a vote response becomes a follower of that term', () => {
    const { raft } = loneRaft(a, [a, b, c], new Prng(3), { preVote: false });
    raft.campaign();
    expect(raft.role).toBe('candidate');

    raft.step(msg.voteResponse(b, a, 7, false));

    expect(raft.role).toBe('follower');
    expect(raft.term).toBe(7);
    expect(raft.votedFor).toBeNull();
  });

  it('a message with a stale term is ignored, and a stale leader is told the newer term', () => {
    const storage = storageWithLog({ voters: [a, b, c] }, [2, 3], { term: 3 });
    const { raft } = loneRaft(a, [a, b, c], new Prng(4), {}, storage);

    raft.step(
      msg.append(b, a, 2, {
        prevLogIndex: idx(3),
        prevLogTerm: tm(3),
        entries: [{ kind: 'noop', index: idx(4), term: tm(2) }],
        leaderCommit: idx(4),
      }),
    );
    raft.step(msg.heartbeat(b, a, 2, { leaderCommit: idx(3) }));
    raft.step(msg.requestVote(c, a, 2, { lastLogIndex: idx(10), lastLogTerm: tm(2) }));

    expect(raft.term).toBe(3);
    expect(raft.log.lastIndex()).toBe(3);
    expect(raft.log.commitIndex).toBe(1);
    expect(raft.votedFor).toBeNull();
    expect(raft.leaderId).toBeNull();
    const ready = drain(raft, storage);
    // Only the two stale leader messages get an answer, carrying our term so the sender steps down.
    expect(ready.messages.map((m) => [m.type, m.to, m.term])).toEqual([
      ['AppendEntriesResponse', b, 3],
      ['AppendEntriesResponse', b, 3],
    ]);
    expect(ofType(ready.messages, 'AppendEntriesResponse').every((m) => !m.success)).toBe(true);
  });

  it('a stale pre-vote is refused with the newer term, and the pre-candidate adopts that term', () => {
    const voterStorage = storageWithLog({ voters: [a, b, c] }, [], { term: 3 });
    const voter = loneRaft(b, [a, b, c], new Prng(21), { preVote: true }, voterStorage);
    const preCandidate = loneRaft(a, [a, b, c], new Prng(22), { preVote: true });
    preCandidate.raft.campaign();
    const [request] = ofType(
      drain(preCandidate.raft, preCandidate.storage).messages,
      'RequestVote',
    );
    expect(request).toMatchObject({ to: b, term: 2, preVote: true });

    voter.raft.step(request ?? msg.requestVote(a, b, 2));
    const [refusal] = ofType(drain(voter.raft, voter.storage).messages, 'RequestVoteResponse');
    expect(refusal).toMatchObject({ to: a, term: 3, preVote: true, granted: false });
    preCandidate.raft.step(refusal ?? msg.voteResponse(b, a, 3, false, true));

    expect(preCandidate.raft.role).toBe('follower');
    expect(preCandidate.raft.term).toBe(3);
  });
});

describe('§5.2 Leader election', () => {
  it('a follower that hears nothing for an election timeout becomes a candidate: term + 1, a vote for itself, RequestVote to every voter (PreVote off)', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(5), { preVote: false });

    for (let tick = 0; tick < T - 1; tick++) raft.tick();
    expect(raft.role).toBe('follower');
    for (let tick = 0; tick < T; tick++) raft.tick();

    expect(raft.role).toBe('candidate');
    expect(raft.term).toBe(2);
    expect(raft.votedFor).toBe(a);
    const ready = drain(raft, storage);
    // The new term and the self-vote are persisted (synced) in the same Ready that sends the requests.
    expect(ready.hardState).toEqual({ term: 2, votedFor: a, commitIndex: 1 });
    expect(ready.mustSync).toBe(true);
    const requests = ofType(ready.messages, 'RequestVote');
    expect(requests.map((m) => m.to).sort()).toEqual([b, c]);
    for (const request of requests) {
      expect(request).toMatchObject({ term: 2, preVote: false, lastLogIndex: 1, lastLogTerm: 1 });
    }
  });

  it('with PreVote on, the node first becomes a pre-candidate that keeps its term and vote and asks about term + 1', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(6), { preVote: true });

    for (let tick = 0; tick < 2 * T; tick++) raft.tick();

    expect(raft.role).toBe('preCandidate');
    expect(raft.term).toBe(1);
    expect(raft.votedFor).toBeNull();
    const ready = drain(raft, storage);
    expect(ready.hardState).toBeNull();
    expect(ready.mustSync).toBe(false);
    const requests = ofType(ready.messages, 'RequestVote');
    expect(requests.map((m) => m.to).sort()).toEqual([b, c]);
    for (const request of requests) expect(request).toMatchObject({ term: 2, preVote: true });
  });

  it('a pre-candidate granted a majority of pre-votes starts the real election in term + 1', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(7), { preVote: true });
    raft.campaign();
    drain(raft, storage);

    raft.step(msg.voteResponse(b, a, 2, true, true));

    expect(raft.role).toBe('candidate');
    expect(raft.term).toBe(2);
    expect(raft.votedFor).toBe(a);
    const requests = ofType(drain(raft, storage).messages, 'RequestVote');
    expect(requests.map((m) => [m.to, m.term, m.preVote])).toEqual([
      [b, 2, false],
      [c, 2, false],
    ]);
  });

  it('election timeouts are randomized in [T, 2T): over many seeds every value in the range occurs and no other', () => {
    const observed = new Set<number>();
    for (let seed = 1; seed <= 300; seed++) {
      const { raft } = loneRaft(a, [a, b, c], new Prng(seed), { electionTimeoutTicks: T });
      let ticks = 0;
      while (raft.role === 'follower') {
        raft.tick();
        ticks++;
        if (ticks > 10 * T) throw new Error('never campaigned');
      }
      observed.add(ticks);
    }
    expect([...observed].sort((x, y) => x - y)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  });

  it('a voter grants at most one vote per term, first come first served', () => {
    const { raft, storage } = loneRaft(c, [a, b, c], new Prng(8), { preVote: false });

    raft.step(msg.requestVote(a, c, 2));
    raft.step(msg.requestVote(b, c, 2));
    raft.step(msg.requestVote(a, c, 2)); // a retried request is granted again

    expect(raft.votedFor).toBe(a);
    const ready = drain(raft, storage);
    expect(ready.hardState).toEqual({ term: 2, votedFor: a, commitIndex: 1 });
    expect(ofType(ready.messages, 'RequestVoteResponse').map((m) => [m.to, m.granted])).toEqual([
      [a, true],
      [b, false],
      [a, true],
    ]);
  });

  it('a follower that already follows a leader of this term votes for no other candidate of that term', () => {
    const { raft, storage } = loneRaft(c, [a, b, c], new Prng(20), {
      preVote: false,
      checkQuorum: false,
    });
    raft.step(msg.heartbeat(a, c, 2)); // leader a of term 2; c never voted in term 2

    raft.step(msg.requestVote(b, c, 2, { lastLogIndex: idx(5), lastLogTerm: tm(1) }));

    expect(raft.votedFor).toBeNull();
    const responses = ofType(drain(raft, storage).messages, 'RequestVoteResponse');
    expect(responses.map((m) => [m.to, m.granted])).toEqual([[b, false]]);
  });

  it('the vote is persisted: after a restart the voter still refuses a second candidate of that term', () => {
    const { raft, storage } = loneRaft(c, [a, b, c], new Prng(9), { preVote: false });
    raft.step(msg.requestVote(a, c, 2));
    drain(raft, storage);

    const restarted = new Raft({ id: c, storage, prng: new Prng(9), options: { preVote: false } });
    restarted.step(msg.requestVote(b, c, 2));

    expect(restarted.votedFor).toBe(a);
    const responses = ofType(drain(restarted, storage).messages, 'RequestVoteResponse');
    expect(responses.map((m) => [m.to, m.granted])).toEqual([[b, false]]);
  });

  it('a candidate that wins votes from a majority becomes leader (3 of 5, two servers down)', () => {
    const network = new Network({
      prng: new Prng(10),
      voters: [a, b, c, d, e],
      options: { preVote: false },
    });
    network.isolate(d);
    network.isolate(e);

    network.raft(a).campaign();
    network.stabilize();

    expect(network.raft(a).role).toBe('leader');
    expect(network.raft(a).term).toBe(2);
    expect(network.raft(b).leaderId).toBe(a);
  });

  it('a candidate with votes from only a minority does not become leader (2 of 5)', () => {
    const network = new Network({
      prng: new Prng(11),
      voters: [a, b, c, d, e],
      options: { preVote: false },
    });
    network.isolate(c);
    network.isolate(d);
    network.isolate(e);

    network.raft(a).campaign();
    network.stabilize();

    expect(network.raft(a).role).toBe('candidate');
    expect(network.leaders()).toEqual([]);
  });

  it('a candidate refused by a majority loses: it returns to follower and keeps its term and vote', () => {
    // b and c hold an entry a lacks, so they refuse it (§5.4.1).
    const storages = {
      b: storageWithLog({ voters: [a, b, c] }, [1], { term: 1 }),
      c: storageWithLog({ voters: [a, b, c] }, [1], { term: 1 }),
    };
    const network = new Network({
      prng: new Prng(12),
      voters: [a, b, c],
      storages,
      options: { preVote: false },
    });

    network.raft(a).campaign();
    network.stabilize();

    const raft = network.raft(a);
    expect(raft.role).toBe('follower');
    expect(raft.term).toBe(2);
    expect(raft.votedFor).toBe(a);
    expect(network.leaders()).toEqual([]);
  });

  it('a split vote elects no one; a later randomized timeout elects a single leader in a newer term', () => {
    const network = new Network({
      prng: new Prng(13),
      voters: [a, b, c, d],
      options: { preVote: false },
    });
    // a reaches c, b reaches d: 2 votes each, 3 needed.
    const removeFilter = network.dropIf(
      (m) =>
        m.type === 'RequestVote' && ((m.from === a && m.to === d) || (m.from === b && m.to === c)),
    );
    network.raft(a).campaign();
    network.raft(b).campaign();
    network.stabilize();

    expect(network.raft(a).role).toBe('candidate');
    expect(network.raft(b).role).toBe('candidate');
    expect(network.raft(c).votedFor).toBe(a);
    expect(network.raft(d).votedFor).toBe(b);
    expect(network.leaders()).toEqual([]);

    removeFilter();
    network.tickUntil(() => network.leaders().length === 1, 10 * T);

    const [leader] = network.leaders();
    expect(leader).toBeDefined();
    expect(network.raft(leader ?? a).term).toBeGreaterThanOrEqual(3);
  });

  it('a candidate that receives AppendEntries from a leader of its own term steps down and follows it', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(14), { preVote: false });
    raft.campaign();
    drain(raft, storage);
    expect(raft.role).toBe('candidate');

    raft.step(msg.append(b, a, 2, { leaderCommit: idx(1) }));

    expect(raft.role).toBe('follower');
    expect(raft.term).toBe(2);
    expect(raft.leaderId).toBe(b);
    const responses = ofType(drain(raft, storage).messages, 'AppendEntriesResponse');
    expect(responses.map((m) => [m.to, m.success])).toEqual([[b, true]]);
  });

  it('a pre-candidate that hears a heartbeat from a leader of its term goes back to following it', () => {
    const { raft, storage } = loneRaft(a, [a, b, c], new Prng(15), { preVote: true });
    raft.campaign();
    drain(raft, storage);
    expect(raft.role).toBe('preCandidate');

    raft.step(msg.heartbeat(b, a, 1));

    expect(raft.role).toBe('follower');
    expect(raft.leaderId).toBe(b);
    expect(raft.term).toBe(1);
  });

  it('a leader heartbeats often enough that no follower times out while it is up', () => {
    const network = new Network({ prng: new Prng(16), voters: [a, b, c] });
    network.elect(a);

    network.tickAll(20 * T);

    expect(network.leaders()).toEqual([a]);
    for (const id of network.ids()) expect(network.raft(id).term).toBe(2);
  });

  it('followers elect a new leader after the leader fails', () => {
    const network = new Network({ prng: new Prng(17), voters: [a, b, c] });
    network.elect(a);
    network.isolate(a);

    network.tickUntil(() => network.leaders().some((id) => id !== a), 10 * T);

    const newLeader = network.leaders().find((id) => id !== a);
    expect(newLeader === b || newLeader === c).toBe(true);
    expect(network.raft(newLeader ?? a).term).toBe(3);
  });

  it('a single-server cluster elects itself after one election timeout and commits alone', () => {
    const network = new Network({ prng: new Prng(18), voters: [a] });

    const rounds = network.tickUntil(() => network.raft(a).role === 'leader', 2 * T);
    expect(rounds).toBeGreaterThanOrEqual(T);
    expect(network.raft(a).term).toBe(2);

    const result = network.propose(a, 'x');
    network.stabilize();

    expect(result.ok).toBe(true);
    expect(network.raft(a).log.commitIndex).toBe(3); // 1 bootstrap, 2 no-op, 3 'x'
    expect(network.state(a)).toEqual(['x']);
  });

  it('a node outside the voter set never campaigns', () => {
    const { raft } = loneRaft(d, [a, b, c], new Prng(19));

    for (let tick = 0; tick < 10 * T; tick++) raft.tick();

    expect(raft.role).toBe('follower');
    expect(raft.term).toBe(1);
    expect(raft.hasReady()).toBe(false);
  });
});
